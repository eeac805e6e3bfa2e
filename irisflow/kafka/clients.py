"""aiokafka producers and consumers configured once for irisflow's message sizes."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from irisflow.settings import KafkaSettings

__all__ = ["make_consumer", "make_producer"]


def make_producer(kafka: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that can carry model artifacts and waits for the leader's acknowledgement."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "max_request_size": kafka.max_message_bytes,
        "acks": 1,
        "linger_ms": 1,
        "enable_idempotence": False,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(kafka: KafkaSettings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer whose fetch limits fit the largest message the topics accept."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "max_partition_fetch_bytes": kafka.max_message_bytes,
        "fetch_max_bytes": max(52428800, kafka.max_message_bytes),
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)
