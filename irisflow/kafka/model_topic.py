"""The compacted ``model-updates`` topic: publish a version; read what is live and each change.

Every scoring worker and every gateway replica must see every update, so this reader uses no
consumer group: it assigns itself all partitions and reads from the beginning. On start it
catches up to the end and hands over only the last update per model name (the live one), so a
worker does not load every historical version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from irisflow.errors import KafkaUnavailable, SchemaError
from irisflow.kafka.clients import make_consumer, make_producer
from irisflow.schemas import ModelUpdate
from irisflow.settings import KafkaSettings

__all__ = ["ModelFeed", "publish_update", "read_live_update"]

log = logging.getLogger(__name__)

UpdateHandler = Callable[[ModelUpdate], Awaitable[object]]


async def _assign_all(
    consumer: AIOKafkaConsumer, topic: str, timeout: float
) -> list[TopicPartition]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            return tps
        if asyncio.get_running_loop().time() > deadline:
            raise KafkaUnavailable(
                f"topic {topic} does not exist at {consumer._client._bootstrap_servers}: "
                "create the topics with `irisflow kafka topics`"
            )
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)


async def _behind(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], end: dict[TopicPartition, int]
) -> bool:
    for tp in tps:
        if await consumer.position(tp) < end[tp]:
            return True
    return False


def _decode(raw: bytes | None, where: str) -> ModelUpdate | None:
    try:
        return ModelUpdate.from_bytes(raw)
    except SchemaError as exc:
        log.error("model-updates %s: skipped an unreadable update: %s", where, exc)
        return None


class ModelFeed:
    """Calls ``on_update`` with the live update after catch-up, then with each new one."""

    def __init__(self, kafka: KafkaSettings, model_name: str, on_update: UpdateHandler) -> None:
        self._kafka = kafka
        self._model_name = model_name
        self._on_update = on_update
        self.caught_up = asyncio.Event()

    async def run(self) -> None:
        topic = self._kafka.topics.model_updates
        consumer = make_consumer(self._kafka, group_id=None)
        await consumer.start()
        try:
            tps = await _assign_all(consumer, topic, timeout=30.0)
            end = await consumer.end_offsets(tps)
            latest = await self._catch_up(consumer, tps, end)
            if latest is not None:
                await self._on_update(latest)
            self.caught_up.set()
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        if record.key is not None and record.key.decode() != self._model_name:
                            continue
                        where = f"[{record.partition}] offset {record.offset}"
                        update = _decode(record.value, where)
                        if update is not None:
                            await self._on_update(update)
        finally:
            await consumer.stop()

    async def _catch_up(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], end: dict[TopicPartition, int]
    ) -> ModelUpdate | None:
        latest: tuple[float, ModelUpdate] | None = None
        while await _behind(consumer, tps, end):
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    if record.offset >= end[TopicPartition(record.topic, record.partition)]:
                        continue  # arrived after catch-up began: will be seen live
                    if record.key is not None and record.key.decode() != self._model_name:
                        continue
                    update = _decode(record.value, f"[{record.partition}] offset {record.offset}")
                    if update is not None and (latest is None or record.timestamp >= latest[0]):
                        latest = (record.timestamp, update)
        return latest[1] if latest else None


async def read_live_update(
    kafka: KafkaSettings, model_name: str, *, timeout: float = 30.0
) -> ModelUpdate | None:
    """The update that is live now (``None`` when nothing was ever published)."""
    found: list[ModelUpdate] = []

    async def keep(update: ModelUpdate) -> None:
        found.append(update)

    feed = ModelFeed(kafka, model_name, keep)
    task = asyncio.create_task(feed.run())
    try:
        waiter = asyncio.create_task(feed.caught_up.wait())
        done, _ = await asyncio.wait(
            {task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            task.result()  # re-raise the reader's error
        if waiter not in done:
            waiter.cancel()
            raise TimeoutError(
                f"reading {kafka.topics.model_updates} took longer than {timeout:.0f}s"
            )
        return found[-1] if found else None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def publish_update(kafka: KafkaSettings, update: ModelUpdate) -> None:
    """Send one version to the compacted topic and wait until every in-sync replica has it."""
    producer = make_producer(kafka, acks="all", compression_type="gzip")
    await producer.start()
    try:
        await producer.send_and_wait(
            kafka.topics.model_updates, key=update.model_name.encode(), value=update.to_bytes()
        )
    finally:
        await producer.stop()
    log.info(
        "published %s version %d to %s",
        update.model_name,
        update.version,
        kafka.topics.model_updates,
    )
