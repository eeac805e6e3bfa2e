"""The audit feed's promises that need no broker: its consumer group, and when it commits.

README, "Audit trail": offsets are committed after the write (a gateway that dies re-reads and
the upserts make the second write a no-op), and the consumer group is derived from the database
(for SQLite also the host name, since the file is local to its host). The feed's poll loop runs
here against a scripted consumer and producer that log what they are asked to do, so the order
of write, dead letters and commit is seen directly.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from gateway.audit.feed import AuditFeed, audit_group_id
from gateway.audit.store import AuditBatch, AuditStore
from irisflow.schemas import PredictionRequest
from irisflow.settings import KafkaSettings
from tests.factories import SETOSA
from tests.postgres import AuditDatabases


class _Stop(Exception):
    """Ends the feed's endless poll loop once the scripted polls are used up."""


class _Consumer:
    """Hands out the scripted polls, then stops the loop; logs every commit."""

    def __init__(self, log: list[str], polls: list[list[Any]]) -> None:
        self.log = log
        self.polls = polls

    async def getmany(self, timeout_ms: int = 0) -> dict[str, list[Any]]:
        if not self.polls:
            raise _Stop
        return {"tp": self.polls.pop(0)}

    async def commit(self) -> None:
        self.log.append("commit")


class _Producer:
    """Acknowledges every send at once; logs the topic of each (dead letters here)."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def send_and_wait(self, topic: str, **_: Any) -> None:
        self.log.append(f"send {topic}")


class _Store(AuditStore):
    """A SQLite store that logs each write (and fails it, once ``down``)."""

    def __init__(self, url: str, log: list[str]) -> None:
        super().__init__(url)
        self.log = log
        self.down = False

    def write(self, batch: AuditBatch) -> None:
        self.log.append("write")
        if self.down:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        super().write(batch)


def _record(topic: str, rid: str, offset: int, value: bytes | None = None) -> SimpleNamespace:
    if value is None:
        value = PredictionRequest(request_id=rid, features=SETOSA, sent_at=100.0).to_bytes()
    return SimpleNamespace(topic=topic, key=rid.encode(), value=value, partition=0, offset=offset)


@pytest.fixture
def kafka() -> KafkaSettings:
    return KafkaSettings()


@pytest.fixture
def log() -> list[str]:
    return []


@pytest.fixture
def store(audit_db: AuditDatabases, log: list[str]) -> Iterator[_Store]:
    made = _Store(audit_db.new(), log)
    yield made
    made.close()


async def test_offsets_are_committed_only_after_the_poll_and_its_letters_are_stored(
    kafka: KafkaSettings, store: _Store, log: list[str]
) -> None:
    topic = kafka.topics.requests
    poll = [_record(topic, "a", 0), _record(topic, "bad", 1, b"not json"), _record(topic, "b", 2)]
    feed = AuditFeed(kafka, store)
    with pytest.raises(_Stop):
        await feed._consume(_Consumer(log, [poll]), _Producer(log))
    assert log == ["write", f"send {kafka.topics.dead_letters}", "commit"]
    assert store.get("a") is not None
    assert store.get("b") is not None


async def test_nothing_is_committed_when_the_database_refuses_the_write(
    kafka: KafkaSettings, store: _Store, log: list[str]
) -> None:
    """The database down or locked: the poll is re-read when the feed is restarted."""
    store.down = True
    feed = AuditFeed(kafka, store)
    consumer = _Consumer(log, [[_record(kafka.topics.requests, "a", 0)]])
    with pytest.raises(OperationalError):
        await feed._consume(consumer, _Producer(log))
    assert "commit" not in log
    assert log == ["write"]


def test_gateways_with_their_own_sqlite_file_on_different_hosts_get_different_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same SQLite path on two hosts is two databases, so each must read everything."""
    url = "sqlite:////srv/irisflow/audit.db"
    host = ["host-a"]  # one function whose answer changes: the host name, not the function
    monkeypatch.setattr(socket, "gethostname", lambda: host[0])
    on_a = audit_group_id("irisflow", url)
    host[0] = "host-b"
    on_b = audit_group_id("irisflow", url)
    assert on_a != on_b
    assert on_b == audit_group_id("irisflow", url)  # stable on one host


def test_gateways_sharing_a_database_server_share_one_group_whatever_their_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "postgresql+psycopg://alice:secret@db.internal/irisflow"
    host = ["host-a"]
    monkeypatch.setattr(socket, "gethostname", lambda: host[0])
    on_a = audit_group_id("irisflow", url)
    host[0] = "host-b"
    assert audit_group_id("irisflow", url) == on_a
    assert "secret" not in on_a
    assert on_a.startswith("irisflow-gateway-audit-")
