"""Labeled samples sent to the real broker, for the trainer's integration tests."""

from __future__ import annotations

from collections.abc import Iterable

from irisflow.kafka.clients import make_producer
from irisflow.schemas import LabeledSample
from irisflow.settings import KafkaSettings
from irisflow.topics import Topics

__all__ = ["send_labeled"]


async def send_labeled(kafka: KafkaSettings, samples: Iterable[LabeledSample]) -> None:
    """Produce ``samples`` to the labeled topic, keyed as the streams join keys them."""
    topic = Topics.of(kafka).labeled
    producer = make_producer(kafka)
    await producer.start()
    try:
        for sample in samples:
            record = topic.record(sample)
            await producer.send(record.topic, key=record.key, value=record.value)
        await producer.flush()
    finally:
        await producer.stop()
