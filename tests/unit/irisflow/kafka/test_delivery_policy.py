"""The delivery policy is one place in code and every client of irisflow is built from it.

docs/architecture.md, "Delivery policy": every producer ``acks=all`` and idempotent, every
consumer committing by hand and reading uncommitted data (no transactions), timeouts that let
a retry ride through a leader election. These tests pin the settings of the clients the policy
builds and that nothing in the code builds a Kafka client around it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from irisflow.kafka.clients import (
    CONSUMER_POLICY,
    PRODUCER_POLICY,
    make_consumer,
    make_producer,
)
from irisflow.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[4]
PACKAGES = ("irisflow", "streams", "gateway", "trainer", "producers")
CLIENTS = "irisflow/kafka/clients.py"


async def test_a_producer_waits_for_every_in_sync_replica_and_is_idempotent() -> None:
    producer = make_producer(KafkaSettings())
    try:
        assert producer._sender._acks == -1
        assert producer._txn_manager is not None  # sequence numbers: a retry cannot duplicate
        assert producer._txn_manager.transactional_id is None  # and no transactions
        assert producer._sender._request_timeout_ms == 40_000
        assert producer._sender._retry_backoff == 0.1
        assert producer.client._metadata_max_age_ms == 300_000
    finally:
        await producer.stop()


async def test_a_producer_may_change_its_timeouts_and_compression_but_keeps_the_policy() -> None:
    producer = make_producer(KafkaSettings(), request_timeout_ms=5000, compression_type="gzip")
    try:
        assert producer._sender._request_timeout_ms == 5000
        assert (producer._sender._acks, producer._txn_manager is not None) == (-1, True)
    finally:
        await producer.stop()


@pytest.mark.parametrize("weaker", [{"acks": 1}, {"enable_idempotence": False}])
def test_no_producer_can_weaken_acks_or_idempotence(weaker: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="delivery policy"):
        make_producer(KafkaSettings(), **weaker)


async def test_a_consumer_commits_by_hand_and_reads_uncommitted_data() -> None:
    consumer = make_consumer(KafkaSettings(), group_id="g")
    try:
        assert consumer._isolation_level == "read_uncommitted"  # no transactions anywhere
        assert consumer._enable_auto_commit is False
        assert consumer._client._request_timeout_ms == 40_000
        assert consumer._client._retry_backoff == 0.1
        assert consumer._client._metadata_max_age_ms == 300_000
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    "weaker", [{"isolation_level": "read_committed"}, {"enable_auto_commit": True}]
)
def test_no_consumer_can_change_its_isolation_or_commit_by_itself(
    weaker: dict[str, object],
) -> None:
    with pytest.raises(ValueError, match="delivery policy"):
        make_consumer(KafkaSettings(), **weaker)


def test_the_policy_is_what_the_architecture_states() -> None:
    """The table in docs/architecture.md is written from these values."""
    assert {k: PRODUCER_POLICY[k] for k in ("acks", "enable_idempotence", "linger_ms")} == {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 0,
    }
    assert CONSUMER_POLICY["isolation_level"] == "read_uncommitted"
    assert CONSUMER_POLICY["enable_auto_commit"] is False


def _client_calls(tree: ast.Module) -> list[str]:
    """Names of aiokafka producer/consumer classes constructed in ``tree``."""
    wanted = {"AIOKafkaProducer", "AIOKafkaConsumer"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in wanted:
                found.append(f"{name} (line {node.lineno})")
    return found


def test_every_producer_and_consumer_in_the_code_is_built_by_the_policy() -> None:
    """The gateway's producer, reply reader and audit feed, the scoring lane, the model feeds,
    the trainer, the dead-letter producers, ``irisflow retrain``/``models promote``/``dlq``
    and the traffic producers all go through ``make_producer``/``make_consumer``; the worker's
    Faust producer through ``faust_producer_class`` (tests/unit/streams/test_faust_app.py)."""
    outside = {
        str(path.relative_to(ROOT)): calls
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if str(path.relative_to(ROOT)) != CLIENTS
        and (calls := _client_calls(ast.parse(path.read_text())))
    }
    assert outside == {}
    assert _client_calls(ast.parse((ROOT / CLIENTS).read_text())) != []  # the check sees them
