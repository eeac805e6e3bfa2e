"""The dead letters on the real broker, for the integration tests of followers that write them."""

from __future__ import annotations

import asyncio

from irisflow.kafka.clients import make_consumer
from irisflow.schemas import DeadLetter
from irisflow.settings import Settings

__all__ = ["dead_letters"]


async def dead_letters(settings: Settings, count: int, timeout: float = 20.0) -> list[DeadLetter]:
    """The letters from the start of the dead-letter topic once ``count`` have come (fails
    when fewer come within ``timeout``, or more than ``count`` are there already)."""
    consumer = make_consumer(settings.kafka, settings.kafka.topics.dead_letters, group_id=None)
    await consumer.start()
    found: list[DeadLetter] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < count and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [DeadLetter.from_bytes(r.value) for r in records]
    finally:
        await consumer.stop()
    assert len(found) == count, found
    return found
