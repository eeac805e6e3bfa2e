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
