"""Labeled samples sent to the real broker, and the trainer's service running, for the trainer's
integration tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

from irisflow.kafka.clients import make_producer
from irisflow.schemas import LabeledSample
from irisflow.settings import KafkaSettings
from irisflow.topics import Topics
from trainer.service import RetrainingService

__all__ = ["running", "send_labeled"]


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


@contextlib.asynccontextmanager
async def running(service: RetrainingService) -> AsyncIterator[RetrainingService]:
    """The trainer's service running in this loop, once it is ready; cancelled on exit."""
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 60)
        yield service
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
