"""aiokafka producers and consumers configured once for irisflow's message sizes and delivery.

Producers wait for every in-sync replica (``acks=all``) and are idempotent: an accepted request,
feedback, admin command or dead letter survives a leader failover and is not duplicated by the
producer's own retries (docs/architecture.md, delivery policy).
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from irisflow.settings import KafkaSettings
from irisflow.topics import Outgoing

__all__ = ["make_consumer", "make_producer", "send"]


def make_producer(kafka: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that can carry model artifacts: ``acks=all``, idempotent."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "max_request_size": kafka.max_message_bytes,
        "acks": "all",
        "linger_ms": 1,
        "enable_idempotence": True,
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


async def send(producer: AIOKafkaProducer, record: Outgoing) -> None:
    """Produce one record (with its headers) and wait for the broker's acknowledgement."""
    await producer.send_and_wait(
        record.topic,
        value=record.value,
        key=record.key,
        partition=record.partition,
        headers=list(record.headers) or None,
    )
