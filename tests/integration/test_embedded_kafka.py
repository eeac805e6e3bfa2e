"""The embedded broker: real Apache Kafka from Maven jars, started, found, stopped, restarted."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from irisflow.errors import KafkaRuntimeError
from irisflow.kafka.admin import ensure_topics
from irisflow.local.broker.runtime import EmbeddedKafka, ensure_kafka_jars, free_port
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.kafka

CACHE = Path(os.environ.get("IRISFLOW_CACHE_DIR", Path.home() / ".cache" / "irisflow"))


def _broker(tmp_path: Path, port: int | None = None) -> EmbeddedKafka:
    return EmbeddedKafka(
        libs=ensure_kafka_jars(CACHE),
        data_dir=tmp_path / "kafka",
        port=port or free_port(),
        controller_port=free_port(),
    )


def test_the_broker_starts_reports_its_status_stops_and_restarts_on_its_data(
    tmp_path: Path,
) -> None:
    broker = _broker(tmp_path)
    status = broker.start()
    try:
        assert status.running
        assert status.pid is not None
        assert b"Kafka Server started" in broker.log_path.read_bytes()
        assert broker.start().pid == status.pid  # already running: found, not started twice
    finally:
        assert broker.stop()
    assert not broker.status().running
    assert not broker.stop()
    meta = (tmp_path / "kafka" / "logs" / "meta.properties").read_text()
    broker.start()
    try:
        assert (tmp_path / "kafka" / "logs" / "meta.properties").read_text() == meta
    finally:
        broker.stop()


def test_a_taken_port_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(KafkaRuntimeError, match=f"port {port} .* taken.*IRISFLOW_KAFKA_PORT"):
            _broker(tmp_path, port).start()


def test_a_missing_java_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KafkaRuntimeError, match=r"java not found.*openjdk"):
        _broker(tmp_path).start()


def test_topics_are_created_with_their_partitions_and_configs(
    kafka_settings: SettingsFactory,
) -> None:
    settings = kafka_settings(**{"kafka.partitions": 3})

    async def check() -> None:
        created = await ensure_topics(settings.kafka)
        assert sorted(created) == sorted(settings.kafka.topics.model_dump().values())
        assert await ensure_topics(settings.kafka) == []  # idempotent
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
        await admin.start()
        try:
            names = settings.kafka.topics
            described = await admin.describe_topics(
                [
                    names.requests,
                    names.shadow_predictions,
                    names.model_updates,
                    names.rollouts,
                    names.rollout_commands,
                ]
            )
            partitions = {t["topic"]: len(t["partitions"]) for t in described}
            # Shadow answers are co-partitioned with requests; the state and command topics
            # are one ordered log each.
            assert partitions == {
                names.requests: 3,
                names.shadow_predictions: 3,
                names.model_updates: 1,
                names.rollouts: 1,
                names.rollout_commands: 1,
            }
            for compacted in (names.model_updates, names.rollouts):
                (response,) = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, compacted)]
                )
                configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
                assert configs["cleanup.policy"] == "compact", compacted
                assert configs["max.message.bytes"] == str(settings.kafka.max_message_bytes)
            # Every topic takes the largest record: a dead letter must never be too big to send.
            (response,) = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, names.dead_letters)]
            )
            configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
            assert configs["max.message.bytes"] == str(settings.kafka.max_message_bytes)
        finally:
            await admin.close()

    asyncio.run(check())
