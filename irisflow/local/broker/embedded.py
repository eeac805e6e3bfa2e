"""The embedded broker, or cluster of brokers, as the settings configure it."""

from __future__ import annotations

import asyncio

from irisflow.errors import KafkaRuntimeError
from irisflow.kafka.admin import ensure_topics
from irisflow.local.broker.cluster import ClusterStatus, KafkaCluster
from irisflow.local.broker.runtime import ensure_kafka_jars
from irisflow.settings import Settings

__all__ = ["embedded_cluster", "start_embedded"]


def embedded_cluster(settings: Settings) -> KafkaCluster:
    """``kafka.embedded_brokers`` nodes; one node is the single broker irisflow always ran."""
    kafka = settings.kafka
    return KafkaCluster(
        libs=ensure_kafka_jars(settings.cache_dir),
        data_dir=settings.home / "kafka",
        brokers=kafka.embedded_brokers,
        port=kafka.embedded_port,
        controller_port=kafka.embedded_controller_port,
        heap=kafka.embedded_heap,
        max_message_bytes=kafka.max_message_bytes,
    )


def start_embedded(settings: Settings) -> ClusterStatus:
    """Start the local broker(s) (those not running) and create the topics."""
    if not settings.kafka.embedded:
        raise KafkaRuntimeError(
            f"IRISFLOW_KAFKA_BOOTSTRAP={settings.kafka.bootstrap} points at an existing cluster; "
            "unset it to use the embedded broker"
        )
    status = embedded_cluster(settings).start()
    asyncio.run(ensure_topics(settings.kafka))
    return status
