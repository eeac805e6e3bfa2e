"""The audit feed turns one poll into stored rows and dead letters; no record stops it.

Findings 5 and the codec requirement of issue #10: NaN and Infinity timestamps, a NaN drift
statistic, values that are not JSON, keys that are not the value's id, and rows the database
refuses each cost one dead letter (consumer ``gateway.audit``), and every other record of the
poll is stored. These run the feed's decode-and-store step on SQLite and on PostgreSQL
(``audit_db``), without a broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from gateway.audit.feed import CONSUMER, AuditFeed
from gateway.audit.store import AuditBatch, AuditStore
from irisflow.schemas import DeadLetter, DriftEvent, Feedback, PredictionRequest
from irisflow.settings import Settings
from irisflow.topics import HEADER_PREFIX, Incoming
from tests.conftest import SettingsFactory
from tests.factories import SETOSA
from tests.postgres import AuditDatabases

Letter = tuple[str, str, str]


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture
def store(audit_db: AuditDatabases) -> Iterator[AuditStore]:
    made = AuditStore(audit_db.new())
    yield made
    made.close()


def _feed(settings: Settings, store: AuditStore, counted: list[Letter]) -> AuditFeed:
    return AuditFeed(
        settings.kafka,
        store,
        on_letter=lambda topic, reason, consumer: counted.append((topic, reason, consumer)),
    )


def _record(topic: str, value: bytes | None, key: str | bytes | None, offset: int) -> Incoming:
    raw_key = key.encode() if isinstance(key, str) else key
    return Incoming(value, raw_key, 0, offset, topic)


def _request(rid: str) -> bytes:
    return PredictionRequest(request_id=rid, features=SETOSA, sent_at=100.0).to_bytes()


def _letter(outgoing: Any) -> DeadLetter:
    return DeadLetter.model_validate_json(outgoing.value)


def test_nan_and_infinite_timestamps_are_dead_lettered_and_the_rest_is_stored(
    settings: Settings, store: AuditStore
) -> None:
    names = settings.kafka.topics
    counted: list[Letter] = []
    feed = _feed(settings, store, counted)
    drift = DriftEvent(
        model_name="iris", feature="x", detector="ks", statistic=0.5, threshold=0.1, window=10
    ).model_dump(mode="json")
    records = [
        _record(names.requests, _request("good-1"), "good-1", 0),
        _record(
            names.feedback,
            b'{"request_id":"victim-1","label":"setosa","labeled_at":NaN}',
            "victim-1",
            1,
        ),
        _record(names.requests, _request("good-2").replace(b"100.0", b"Infinity"), "good-2", 2),
        _record(names.drift_events, orjson.dumps({**drift, "statistic": "NaN"}), "x/ks", 3),
        _record(names.feedback, b"not json", "victim-2", 4),
        _record(names.feedback, Feedback(request_id="r9", label="setosa").to_bytes(), "r8", 5),
        _record(names.requests, _request("good-3"), "good-3", 6),
    ]
    outcome = feed.process(records)
    assert outcome.written == {"requests": 2}
    assert [r.request_id for r in store.page(since=None, until=None, limit=10, order="asc")] == [
        "good-1",
        "good-3",
    ]
    letters = [_letter(o) for o in outcome.letters]
    assert [(x.offset, x.reason, x.consumer) for x in letters] == [
        (1, "undecodable", CONSUMER),  # NaN and Infinity are not JSON
        (2, "undecodable", CONSUMER),
        (3, "invalid", CONSUMER),  # "NaN" as a string is not a finite float
        (4, "undecodable", CONSUMER),
        (5, "bad_key", CONSUMER),
    ]
    assert letters[0].original == records[1].value
    assert letters[0].source_topic == names.feedback
    headers = dict(outcome.letters[0].headers)
    assert headers[HEADER_PREFIX + "consumer"] == CONSUMER.encode()
    assert outcome.letters[0].topic == names.dead_letters
    assert [c[1] for c in counted] == [
        "undecodable",
        "undecodable",
        "invalid",
        "undecodable",
        "bad_key",
    ]
    assert {c[2] for c in counted} == {CONSUMER}


class _Picky(AuditStore):
    """A database that refuses any write containing ``poison`` (a constraint violation)."""

    def write(self, batch: AuditBatch) -> None:
        if any(row["request_id"] == "poison" for row in batch.requests):
            raise IntegrityError("INSERT", {}, Exception("NOT NULL constraint failed"))
        super().write(batch)


def test_a_row_the_database_refuses_costs_one_letter_not_the_batch(
    settings: Settings, audit_db: AuditDatabases
) -> None:
    store = _Picky(audit_db.new())
    counted: list[Letter] = []
    feed = _feed(settings, store, counted)
    topic = settings.kafka.topics.requests
    records = [_record(topic, _request(rid), rid, i) for i, rid in enumerate(["a", "poison", "b"])]
    outcome = feed.process(records)
    assert outcome.written == {"requests": 2}
    assert store.get("a") is not None
    assert store.get("b") is not None
    (letter,) = [_letter(o) for o in outcome.letters]
    assert (letter.offset, letter.reason, letter.consumer) == (1, "processing_failed", CONSUMER)
    assert "NOT NULL" in letter.error
    assert counted == [(topic, "processing_failed", CONSUMER)]


class _Down(AuditStore):
    def write(self, batch: AuditBatch) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))


def test_an_unreachable_database_stops_the_poll_without_letters(
    settings: Settings, audit_db: AuditDatabases
) -> None:
    """Nothing is committed then; the supervisor re-reads the poll once the database is back."""
    counted: list[Letter] = []
    feed = _feed(settings, _Down(audit_db.new()), counted)
    topic = settings.kafka.topics.requests
    with pytest.raises(OperationalError):
        feed.process([_record(topic, _request("a"), "a", 0)])
    assert counted == []
