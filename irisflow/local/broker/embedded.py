"""The embedded broker as configured by :class:`~irisflow.settings.Settings`."""

from __future__ import annotations

import asyncio

from irisflow.errors import KafkaRuntimeError
from irisflow.kafka.admin import ensure_topics
from irisflow.local.broker.runtime import BrokerStatus, EmbeddedKafka, ensure_kafka_jars
from irisflow.settings import Settings

__all__ = ["embedded_broker", "start_embedded"]


def embedded_broker(settings: Settings) -> EmbeddedKafka:
    kafka = settings.kafka
    return EmbeddedKafka(
        libs=ensure_kafka_jars(settings.cache_dir),
        data_dir=settings.home / "kafka",
        port=kafka.embedded_port,
        controller_port=kafka.embedded_controller_port,
        heap=kafka.embedded_heap,
        max_message_bytes=kafka.max_message_bytes,
    )


def start_embedded(settings: Settings) -> BrokerStatus:
    """Start the local broker (if not running) and create the topics."""
    if not settings.kafka.embedded:
        raise KafkaRuntimeError(
            f"IRISFLOW_KAFKA_BOOTSTRAP={settings.kafka.bootstrap} points at an existing cluster; "
            "unset it to use the embedded broker"
        )
    status = embedded_broker(settings).start()
    asyncio.run(ensure_topics(settings.kafka))
    return status
