"""What the audit feed stores from each of its four topics, and how its loop runs and reconnects.

README, "Audit trail": every request, answer, feedback and drift alarm is written to the audit
store, each to its place; a record that cannot be used costs one dead letter and is counted under
its stream; the hop stamps of the request, the answer and the gateway itself are kept; the feed
consumes in its own group per database, commits after writing and, when the broker goes away,
reconnects. Here the feed runs on SQLite with scripted consumers and producers (``make_consumer``
and ``make_producer`` replaced in the module), so every step is seen without a broker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError
from sqlalchemy.exc import IntegrityError

from gateway.audit import feed as feed_module
from gateway.audit.feed import AuditFeed, audit_group_id
from gateway.audit.store import AuditBatch, AuditStore
from irisflow.schemas import (
    BatchPrediction,
    BatchPredictionRequest,
    DeadLetter,
    DriftEvent,
    Feedback,
    InstancePrediction,
    Prediction,
    PredictionRequest,
)
from irisflow.settings import KafkaSettings
from irisflow.topics import Incoming, Topics
from irisflow.tracing import hop_header
from tests.factories import SETOSA, VIRGINICA
from tests.postgres import AuditDatabases

PROBS = {"setosa": 0.9, "versicolor": 0.05, "virginica": 0.05}


class _Stop(Exception):
    """Ends the feed's endless loop once a scripted consumer's polls are used up."""


@pytest.fixture
def kafka() -> KafkaSettings:
    return KafkaSettings()


@pytest.fixture
def store(audit_db: AuditDatabases) -> Iterator[AuditStore]:
    made = AuditStore(audit_db.new())
    yield made
    made.close()


def _incoming(kafka: KafkaSettings, topic: str, message: Any, offset: int = 0, **kw: Any) -> Any:
    """The record the topic's own codec produces for ``message``, as the feed receives it."""
    record = getattr(Topics.of(kafka), topic).record(message)
    return Incoming(record.value, record.key, 0, offset, record.topic, kw.get("headers", ()))


def _prediction(rid: str) -> Prediction:
    return Prediction(
        request_id=rid, label="setosa", probabilities=PROBS, model_version=3, scored_at=101.0
    )


def test_each_topic_is_stored_in_its_place_with_what_it_says(
    kafka: KafkaSettings, store: AuditStore
) -> None:
    written: list[tuple[str, int]] = []
    feed = AuditFeed(kafka, store, on_written=lambda stream, n: written.append((stream, n)))
    single = PredictionRequest(request_id="s1", features=SETOSA, sent_at=100.0)
    batch = BatchPredictionRequest(request_id="b1", instances=[SETOSA, VIRGINICA], sent_at=100.0)
    batch_answer = BatchPrediction(
        request_id="b1",
        model_version=3,
        predictions=[InstancePrediction(label="setosa", probabilities=PROBS)] * 2,
    )
    drift = DriftEvent(
        model_name="iris",
        model_version=3,
        feature="petal_length",
        detector="ks",
        statistic=0.5,
        threshold=0.1,
        window=10,
        detected_at=102.0,
    )
    records = [
        _incoming(kafka, "requests", single, 0),
        _incoming(kafka, "requests", batch, 1),
        _incoming(kafka, "predictions", _prediction("s1"), 0),
        _incoming(kafka, "predictions", batch_answer, 1),
        _incoming(kafka, "feedback", Feedback(request_id="s1", label="setosa"), 0),
        _incoming(kafka, "drift_events", drift, 0),
    ]
    outcome = feed.process(records)
    assert outcome.letters == []
    assert outcome.written == {"requests": 2, "predictions": 2, "feedback": 1, "drift": 1}
    one, many = store.get("s1"), store.get("b1")
    assert one is not None
    assert many is not None
    assert (one.kind, one.n_instances, one.label, one.probabilities) == (
        "single",
        1,
        "setosa",
        PROBS,
    )
    assert one.feedback is not None
    assert one.feedback.label == "setosa"
    assert (many.kind, many.n_instances, many.label, many.probabilities) == ("batch", 2, None, None)
    assert many.predictions is not None
    assert len(many.predictions) == 2
    alarms = store.drift_alarms(0.0)
    assert [(a.feature, a.model_version, a.statistic) for a in alarms] == [("petal_length", 3, 0.5)]


def test_each_message_alone_says_its_kind_and_count(
    kafka: KafkaSettings, store: AuditStore
) -> None:
    """A batch not answered yet, an answer or a label seen before its request: each row says
    by itself what it is, not only once the other half arrives."""
    feed = AuditFeed(kafka, store)
    batch = BatchPredictionRequest(request_id="b1", instances=[SETOSA] * 3, sent_at=100.0)
    feed.process(
        [
            _incoming(kafka, "requests", batch),
            _incoming(kafka, "predictions", _prediction("p1")),
            _incoming(kafka, "feedback", Feedback(request_id="f1", label="setosa")),
        ]
    )
    pending, answered, labeled = store.get("b1"), store.get("p1"), store.get("f1")
    assert pending is not None
    assert answered is not None
    assert labeled is not None
    assert (pending.status, pending.kind, pending.n_instances) == ("pending", "batch", 3)
    assert (answered.n_instances, answered.probabilities) == (1, PROBS)
    assert (labeled.status, labeled.n_instances) == ("unrequested", 1)


def test_a_record_that_cannot_be_used_is_counted_under_its_stream_with_a_letter_saying_why(
    kafka: KafkaSettings, store: AuditStore, caplog: pytest.LogCaptureFixture
) -> None:
    skipped: list[str] = []
    feed = AuditFeed(kafka, store, on_skipped=skipped.append)
    topics = Topics.of(kafka)
    records = [
        Incoming(b"not json", b"r1", 2, 7, topics.requests.name),
        Incoming(b"{}", b"f1", 0, 3, topics.feedback.name),
    ]
    with caplog.at_level(logging.WARNING, logger="gateway.audit.feed"):
        outcome = feed.process(records)
    assert skipped == ["requests", "feedback"]
    value = outcome.letters[0].value
    assert value is not None
    letter = DeadLetter.model_validate(orjson.loads(value))
    assert (letter.source_topic, letter.partition, letter.offset) == (topics.requests.name, 2, 7)
    assert "not" in letter.error.lower()
    assert "json" in letter.error.lower()
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.audit.feed"]
    assert logged[0].startswith(f"audit: {topics.requests.name}[2] offset 7 dead-lettered (")
    assert letter.reason in logged[0]
    assert logged[0].endswith(f"): {letter.error}")


class _Refusing(AuditStore):
    """Refuses any batch holding the prediction ``bad`` (a constraint the database enforces),
    and, when ``no_hops``, any batch of hop stamps."""

    no_hops = False

    def write(self, batch: AuditBatch) -> None:
        if any(row["request_id"] == "bad" for row in batch.predictions):
            raise IntegrityError("INSERT", {}, Exception("CHECK constraint failed"))
        if self.no_hops and batch.hops:
            raise IntegrityError("INSERT", {}, Exception("hops refused"))
        super().write(batch)


def test_a_row_the_database_refuses_is_lettered_under_its_stream_and_the_stamps_still_kept(
    kafka: KafkaSettings, audit_db: AuditDatabases
) -> None:
    store = _Refusing(audit_db.new())
    skipped: list[str] = []
    feed = AuditFeed(kafka, store, on_skipped=skipped.append)
    stamped = (hop_header("worker_fetched", 3.0),)
    records = [
        _incoming(kafka, "predictions", _prediction("good"), 0, headers=stamped),
        _incoming(kafka, "predictions", _prediction("bad"), 1),
    ]
    outcome = feed.process(records, [{"request_id": "good", "gateway_answered": 6.0}])
    assert outcome.written == {"predictions": 1}
    assert skipped == ["predictions"]
    assert len(outcome.letters) == 1
    good = store.get("good")
    assert good is not None
    assert good.hops == {"worker_fetched": 3.0, "gateway_answered": 6.0}
    store.close()


def test_hop_stamps_the_database_refuses_are_dropped_and_logged_not_lettered(
    kafka: KafkaSettings, audit_db: AuditDatabases, caplog: pytest.LogCaptureFixture
) -> None:
    store = _Refusing(audit_db.new())
    store.no_hops = True
    feed = AuditFeed(kafka, store)
    records = [
        _incoming(kafka, "predictions", _prediction("good"), 0),
        _incoming(kafka, "predictions", _prediction("bad"), 1),
    ]
    with caplog.at_level(logging.WARNING, logger="gateway.audit.feed"):
        outcome = feed.process(records, [{"request_id": "good", "gateway_answered": 6.0}])
    assert outcome.written == {"predictions": 1}
    assert len(outcome.letters) == 1  # the refused row, not the stamps
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.audit.feed"]
    assert any(m.startswith("audit: a batch of 2 rows failed (IntegrityError(") for m in logged)
    assert any(m.startswith("audit: 1 hop stamps dropped (IntegrityError(") for m in logged)
    store.close()


class _Consumer:
    """Scripted polls (a list of records each, empty for a quiet second), then :class:`_Stop`;
    ``fail_start`` makes ``start`` raise as an unreachable broker does."""

    def __init__(self, polls: list[list[Any]], *, fail_start: bool = False) -> None:
        self.polls = polls
        self.fail_start = fail_start
        self.log: list[str] = []
        self.timeouts: list[Any] = []

    async def start(self) -> None:
        self.log.append("start")
        if self.fail_start:
            raise KafkaConnectionError("no broker")

    async def getmany(self, timeout_ms: Any = None) -> dict[str, list[Any]]:
        self.timeouts.append(timeout_ms)
        if not self.polls:
            raise _Stop
        poll = self.polls.pop(0)
        return {"tp": poll} if poll else {}

    async def commit(self) -> None:
        self.log.append("commit")

    async def stop(self) -> None:
        self.log.append("stop")


class _Producer:
    def __init__(self) -> None:
        self.log: list[str] = []

    async def start(self) -> None:
        self.log.append("start")

    async def send_and_wait(self, topic: str, **_: Any) -> None:
        self.log.append(f"send {topic}")

    async def stop(self) -> None:
        self.log.append("stop")


async def test_the_feed_reconnects_after_a_broker_error_and_keeps_polling_through_quiet_seconds(
    kafka: KafkaSettings,
    store: AuditStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first connection fails (logged, everything stopped, a pause); the second consumes a
    poll, an empty one and another poll: both polls stored and committed, the unusable record's
    letter sent with the connection's producer, the gateway's own hop stamps stored with them,
    each stream's count reported."""
    request = PredictionRequest(request_id="r1", features=SETOSA, sent_at=100.0)
    consumers = [
        _Consumer([], fail_start=True),
        _Consumer(
            [
                [
                    _incoming(kafka, "requests", request),
                    Incoming(b"not json", b"junk", 0, 1, kafka.topics.requests),
                ],
                [],
                [_incoming(kafka, "predictions", _prediction("r1"))],
            ]
        ),
    ]
    producers = [_Producer(), _Producer()]
    made: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def make_consumer(*args: Any, **kwargs: Any) -> _Consumer:
        made.append((args, kwargs))
        return consumers[len(made) - 1]

    producer_settings: list[Any] = []

    def make_producer(settings: Any) -> _Producer:
        producer_settings.append(settings)
        return producers[len(producer_settings) - 1]

    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(feed_module, "make_consumer", make_consumer)
    monkeypatch.setattr(feed_module, "make_producer", make_producer)
    monkeypatch.setattr("gateway.audit.feed.asyncio.sleep", pause)  # no real pause
    written: list[tuple[str, int]] = []
    hops = [[{"request_id": "r1", "gateway_published": 2.0}], []]
    feed = AuditFeed(
        kafka,
        store,
        on_written=lambda stream, n: written.append((stream, n)),
        gateway_hops=lambda: hops.pop(0) if hops else [],
    )
    with caplog.at_level(logging.WARNING, logger="gateway.audit.feed"), pytest.raises(_Stop):
        await feed.run()

    assert len(made) == 2
    for args, kwargs in made:
        assert args[0] is kafka
        assert set(args[1:]) == {
            kafka.topics.requests,
            kafka.topics.predictions,
            kafka.topics.feedback,
            kafka.topics.drift_events,
        }
        assert kwargs["group_id"] == audit_group_id(kafka.app_id, store.url)
        assert kwargs["fetch_max_bytes"] == feed_module.POLL_BYTES <= 4 * 1024 * 1024
    assert producer_settings == [kafka, kafka]
    assert consumers[0].log == ["start", "stop"]
    assert producers[0].log == ["stop"]
    assert len(pauses) == 1
    assert pauses[0] > 0
    reconnecting = [r.getMessage() for r in caplog.records if r.name == "gateway.audit.feed"]
    assert reconnecting[0].startswith("audit feed: KafkaConnectionError(")
    assert reconnecting[0].endswith("; reconnecting")
    assert consumers[1].log == ["start", "commit", "commit", "stop"]
    assert producers[1].log == ["start", f"send {kafka.topics.dead_letters}", "stop"]
    assert all(isinstance(t, int) and t > 0 for t in consumers[1].timeouts)
    assert written == [("requests", 1), ("predictions", 1)]
    record = store.get("r1")
    assert record is not None
    assert (record.status, record.hops) == ("answered", {"gateway_published": 2.0})
