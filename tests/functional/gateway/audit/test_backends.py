"""What the audit must do the same on SQLite and PostgreSQL, where the two databases differ.

README, "Audit trail": PostgreSQL works by changing the URL, and gateways sharing one database
split the work. PostgreSQL enforces what SQLite lets pass (text lengths, 32-bit integers, no NUL
character in text), takes row locks that two writers can deadlock on, and drops connections a
pooled engine still holds; two gateways starting at once on an empty database race to create
the tables on either. Each test here runs on both backends (``audit_db``) unless it is about
PostgreSQL alone (``postgresql_server``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from gateway.audit.feed import AuditFeed, prediction_row, request_row
from gateway.audit.store import AuditBatch, AuditStore
from irisflow.schemas import DriftEvent, Feedback, Prediction, PredictionRequest
from irisflow.settings import KafkaSettings
from irisflow.topics import Incoming, Topics
from tests.factories import SETOSA
from tests.postgres import AuditDatabases, RunningServer

LONGEST_NAME = 256  # irisflow.schemas.Name
LONGEST_TEXT = 4096  # irisflow.schemas.Text
BIG_VERSION = 2**62  # model versions have no upper bound in the schemas


@pytest.fixture
def kafka() -> KafkaSettings:
    return KafkaSettings()


@pytest.fixture
def store(audit_db: AuditDatabases) -> Iterator[AuditStore]:
    made = AuditStore(audit_db.new())
    yield made
    made.close()


def _incoming(kafka: KafkaSettings, topic: str, message: Any, offset: int) -> Incoming:
    """``message`` as its topic's codec puts it on the wire, as the feed receives it."""
    record = getattr(Topics.of(kafka), topic).record(message)
    return Incoming(record.value, record.key, 0, offset, record.topic)


def test_every_value_the_schemas_allow_is_stored_whole(
    kafka: KafkaSettings, store: AuditStore
) -> None:
    """Names of 256 characters, texts of 4,096 and versions past 32 bits are valid on the wire,
    so the audit keeps them, never dead-letters them as too long for a column."""
    name = "n" * LONGEST_NAME
    label = "L" * LONGEST_NAME
    messages = [
        ("requests", PredictionRequest(request_id="r1", features=SETOSA, reply_to=name)),
        (
            "predictions",
            Prediction(
                request_id="r1",
                label=label,
                probabilities={label: 1.0},
                model_version=BIG_VERSION,
                reply_to=name,
            ),
        ),
        ("feedback", Feedback(request_id="r1", label=label)),
        (
            "predictions",
            Prediction(request_id="r2", error="e" * LONGEST_TEXT, error_code="invalid_request"),
        ),
        (
            "drift_events",
            DriftEvent(
                model_name=name,
                model_version=BIG_VERSION,
                feature=name,
                detector="d" * LONGEST_NAME,
                statistic=0.5,
                threshold=0.1,
                window=BIG_VERSION,
            ),
        ),
    ]
    records = [_incoming(kafka, t, m, i) for i, (t, m) in enumerate(messages)]
    outcome = AuditFeed(kafka, store).process(records)
    assert outcome.letters == []
    assert outcome.written == {"requests": 1, "predictions": 2, "feedback": 1, "drift": 1}
    answered, failed = store.get("r1"), store.get("r2")
    assert answered is not None
    assert failed is not None
    assert (answered.reply_to, answered.label, answered.model_version) == (
        name,
        label,
        BIG_VERSION,
    )
    assert answered.feedback is not None
    assert (answered.feedback.label, answered.feedback.correct) == (label, True)
    assert failed.error == "e" * LONGEST_TEXT
    (alarm,) = store.drift_alarms(0.0)
    assert (alarm.feature, alarm.detector, alarm.model_version) == (
        name,
        "d" * LONGEST_NAME,
        BIG_VERSION,
    )


def test_a_nul_character_in_a_text_keeps_its_row(
    kafka: KafkaSettings, store: AuditStore, audit_db: AuditDatabases
) -> None:
    """PostgreSQL's text cannot hold U+0000, which the schemas allow in a label: the row is kept
    all the same, the NUL stored as U+FFFD there (as it came on SQLite). A row lost instead would
    leave its request ``pending`` in the audit for good, and a retry of it through another
    gateway would wait for an answer already given."""
    label = "set\x00osa"
    messages = [
        ("requests", PredictionRequest(request_id="r1", features=SETOSA, reply_to="gw\x00")),
        (
            "predictions",
            Prediction(request_id="r1", label=label, probabilities={label: 1.0}, model_version=1),
        ),
        ("feedback", Feedback(request_id="r1", label=label)),
    ]
    records = [_incoming(kafka, t, m, i) for i, (t, m) in enumerate(messages)]
    outcome = AuditFeed(kafka, store).process(records)
    assert outcome.letters == []
    record = store.get("r1")
    assert record is not None
    stored = label if audit_db.backend == "sqlite" else "set\ufffdosa"
    assert (record.status, record.label) == ("answered", stored)
    assert record.reply_to == ("gw\x00" if audit_db.backend == "sqlite" else "gw\ufffd")
    assert record.feedback is not None
    assert (record.feedback.label, record.feedback.correct) == (stored, True)
    assert record.probabilities == {label: 1.0}  # JSON keeps it escaped on both


def test_gateways_opening_an_empty_database_at_once_all_open_it(
    audit_db: AuditDatabases,
) -> None:
    """Two gateways started together on a new database both find no tables and both create
    them; the one that loses the race must open the database all the same, not exit."""
    for _ in range(3):
        url = audit_db.new()
        barrier = threading.Barrier(4)
        failures: list[BaseException] = []

        def open_store(
            url: str = url,
            barrier: threading.Barrier = barrier,
            failures: list[BaseException] = failures,
        ) -> None:
            barrier.wait()
            try:
                AuditStore(url).close()
            except Exception as exc:
                failures.append(exc)

        threads = [threading.Thread(target=open_store) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        opened = AuditStore(url)
        opened.write(
            AuditBatch(requests=[request_row(PredictionRequest(request_id="r1", features=SETOSA))])
        )
        assert opened.get("r1") is not None
        opened.close()


def _admin(server_url: str) -> str:
    """A libpq connection string for ``server_url`` (psycopg takes no SQLAlchemy driver name)."""
    return server_url.replace("postgresql+psycopg://", "postgresql://")


def _locks_waited(conninfo: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
    assert row is not None
    return int(row[0])


def test_a_write_that_deadlocks_with_another_writer_is_written_again(
    postgresql_server: RunningServer,
) -> None:
    """Two gateways on one PostgreSQL each write a transaction of several rows; when they lock
    the same two rows in opposite orders, PostgreSQL aborts one of them (deadlock detected).
    The aborted batch is written again at once, not thrown back at the feed (which would
    restart, rejoin its group and re-read its partitions)."""
    url = postgresql_server.create_database()
    store = AuditStore(url)
    first = PredictionRequest(request_id="a", features=SETOSA, sent_at=1.0)
    second = PredictionRequest(request_id="b", features=SETOSA, sent_at=1.0)
    store.write(AuditBatch(requests=[request_row(first), request_row(second)]))
    answer = Prediction(
        request_id="b", label="setosa", probabilities={"setosa": 1.0}, model_version=1
    )
    other = psycopg.connect(_admin(url))  # the other gateway, in a transaction
    other.execute("SET deadlock_timeout = '60s'")  # so that the writer is the one aborted
    other.execute("UPDATE audit_records SET label = 'other' WHERE request_id = 'b'")
    failures: list[BaseException] = []

    def write() -> None:  # locks row a (the request), then waits for row b (the answer)
        try:
            store.write(
                AuditBatch(requests=[request_row(first)], predictions=[prediction_row(answer)])
            )
        except Exception as exc:
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + 10
    while _locks_waited(_admin(url)) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    # the other now waits for row a: a cycle, which PostgreSQL breaks by aborting the writer
    # (its deadlock_timeout, one second, runs out long before the other's)
    other.execute("UPDATE audit_records SET label = 'other' WHERE request_id = 'a'")
    other.commit()
    other.close()
    writer.join(30)
    assert failures == []
    record = store.get("b")
    assert record is not None
    assert (record.status, record.label) == ("answered", "setosa")
    store.close()


def test_connections_the_server_dropped_are_replaced_before_use(
    postgresql_server: RunningServer,
) -> None:
    """A database restart or an idle timeout kills the pooled connections; the next write and
    read must not fail on one of them (the gateway would answer 500 and the feed restart)."""
    url = postgresql_server.create_database()
    store = AuditStore(url)
    store.write(
        AuditBatch(requests=[request_row(PredictionRequest(request_id="r1", features=SETOSA))])
    )
    assert store.get("r1") is not None
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(_admin(url), autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
    assert killed is not None
    assert killed[0] >= 1
    store.write(
        AuditBatch(requests=[request_row(PredictionRequest(request_id="r2", features=SETOSA))])
    )
    assert store.get("r2") is not None
    store.close()
