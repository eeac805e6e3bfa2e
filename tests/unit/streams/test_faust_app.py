"""The workers' Faust app is configured as the README promises (no broker needed to read it)."""

from __future__ import annotations

from irisflow.settings import Settings
from streams.faust_app import faust_app
from tests.conftest import SettingsFactory


def test_answers_wait_for_every_in_sync_replica_and_leave_without_linger(
    make_settings: SettingsFactory,
) -> None:
    settings: Settings = make_settings()
    conf = faust_app(settings).conf
    assert conf.producer_acks == -1
    assert conf.producer_linger == 0.0


def test_a_dead_workers_partitions_move_within_its_session_and_one_heartbeat(
    make_settings: SettingsFactory,
) -> None:
    settings: Settings = make_settings(**{"streams.session_timeout_seconds": 6})
    conf = faust_app(settings).conf
    assert conf.broker_session_timeout == 6
    assert conf.broker_heartbeat_interval == 1.0


async def test_the_workers_producer_is_idempotent_and_bounds_one_request_like_every_producer(
    make_settings: SettingsFactory,
) -> None:
    """Faust makes its producer idempotent only inside transactions; the worker's app adds
    the delivery policy, so answers, labeled samples and join-table changes retried across a
    leader election are not written twice."""
    app = faust_app(make_settings())
    producer = app.producer._new_producer()
    try:
        assert producer._sender._acks == -1
        assert producer._txn_manager is not None
        assert producer._txn_manager.transactional_id is None
        assert producer._sender._request_timeout_ms == 40_000  # Faust's own default: 20 min
    finally:
        await producer.stop()


def test_the_worker_processes_at_least_once_without_transactions(
    make_settings: SettingsFactory,
) -> None:
    conf = faust_app(make_settings()).conf
    assert conf.processing_guarantee.value == "at_least_once"
