"""The compacted ``model-updates`` topic: publish a version; read what is live and each change.

Every scoring worker, gateway replica and trainer must see every update, so this reader uses no
consumer group: it assigns itself all partitions and reads from the beginning. On start it
catches up to the end and offers the newest update to ``accept``; if that one is refused (bad
checksum, too large, untrusted types, wrong estimator contract) it offers the one before, and so
on, so a fresh worker serves the newest version that loads instead of nothing. The fallback
reaches the newest :data:`CATCH_UP_CANDIDATES` records of the model that are still in the log:
compaction keeps only the newest record per model name once the log cleaner has processed a
segment, after which there is nothing older to fall back on. After catch-up
each new update is offered as it comes; a refused one leaves the current version serving.

Records go through the topic's codec. One that cannot be decoded, or whose key is not its model
name, is logged and counted; if it arrives live (after catch-up) it is also dead-lettered, once
per follower, with the follower's name. During catch-up it is not (every restart would repeat
the letter; it was dead-lettered when it arrived).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from irisflow.kafka.clients import LetterBox, assign_all, behind, make_consumer, make_producer
from irisflow.schemas import ModelUpdate
from irisflow.settings import KafkaSettings
from irisflow.topics import Incoming, Reason, Refused, Topics

__all__ = ["CATCH_UP_CANDIDATES", "ModelFeed", "publish_update", "read_live_update"]

log = logging.getLogger(__name__)

Accept = Callable[[ModelUpdate], Awaitable[bool]]
"""Make an update live; ``False`` when it is refused (the feed then tries an older one)."""

CATCH_UP_CANDIDATES = 8
"""Newest updates kept during catch-up to fall back on (each holds an artifact in memory)."""


class ModelFeed:
    """Offers ``accept`` the newest loadable update after catch-up, then each new one."""

    def __init__(
        self,
        kafka: KafkaSettings,
        model_name: str,
        accept: Accept,
        *,
        consumer: str = "model-feed",
        on_seen: Callable[[ModelUpdate], None] | None = None,
        on_letter: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self._kafka = kafka
        self._topic = Topics.of(kafka).model_updates
        self._model_name = model_name
        self._accept = accept
        self._on_seen = on_seen or (lambda update: None)
        self._box = LetterBox(kafka, consumer, on_letter=on_letter)
        self.consumer_name = consumer
        self.refused_records = 0
        self._offered: tuple[ModelUpdate, Incoming] | None = None
        """The live update being offered to ``accept`` and the record it came in."""
        self.caught_up = asyncio.Event()

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> ModelUpdate | Refused | None:
        """The update if it is ours; the refusal if it is unreadable; ``None`` if another
        model's."""
        try:
            update = self._topic.decode(record.value, record.key)
        except Refused as exc:
            self.refused_records += 1
            log.error(
                "%s[%d] offset %d: unreadable model update (%s): %s",
                record.topic,
                record.partition,
                record.offset,
                exc.reason,
                exc,
            )
            return exc
        return update if update.model_name == self._model_name else None

    async def run(self) -> None:
        topic = self._kafka.topics.model_updates
        consumer = make_consumer(self._kafka, group_id=None)
        await consumer.start()
        try:
            tps = await assign_all(consumer, topic, start="beginning")
            end = await consumer.end_offsets(tps)
            candidates = await self._catch_up(consumer, end)
            for update in reversed(candidates):
                if await self._accept(update):
                    break
                log.warning(
                    "%s: version %d refused; falling back to the one before it",
                    self.consumer_name,
                    update.version,
                )
            self.caught_up.set()
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        found = self._decode(record)
                        if isinstance(found, Refused):
                            await self._box.refused(record, found)
                        elif found is not None:
                            self._on_seen(found)
                            self._offered = (found, Incoming.of(record))
                            try:
                                await self._accept(found)
                            finally:
                                self._offered = None
        finally:
            await consumer.stop()
            await self._box.close()

    async def refuse(self, update: ModelUpdate, reason: str) -> None:
        """Dead-letter an update that decoded but could not be loaded (called by ``accept``'s
        owner for live updates, so a refused version is visible in ``irisflow dlq``). The
        letter carries the record it came in (partition, offset, original bytes) when called
        while that record is being offered."""
        offered = self._offered
        record = (
            offered[1]
            if offered is not None and offered[0] is update
            else Incoming(update.to_bytes(), update.model_name.encode())
        )
        await self._box.post(
            record,
            source_topic=self._kafka.topics.model_updates,
            reason=Reason.REFUSED_MODEL,
            error=f"version {update.version}: {reason}",
            what=f"version {update.version}",
        )

    async def _catch_up(
        self, consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]
    ) -> list[ModelUpdate]:
        """The newest updates of this model up to the end offsets, oldest first."""
        candidates: deque[ModelUpdate] = deque(maxlen=CATCH_UP_CANDIDATES)
        while await behind(consumer, end):
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    if record.offset >= end[TopicPartition(record.topic, record.partition)]:
                        continue  # arrived after catch-up began: will be seen live
                    found = self._decode(record)
                    if isinstance(found, ModelUpdate):
                        self._on_seen(found)
                        candidates.append(found)
        return list(candidates)


async def read_live_update(
    kafka: KafkaSettings, model_name: str, *, timeout: float = 30.0
) -> ModelUpdate | None:
    """The update that is live now (``None`` when nothing was ever published)."""
    found: list[ModelUpdate] = []

    async def keep(update: ModelUpdate) -> bool:
        found.append(update)
        return True

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
    producer = make_producer(kafka, compression_type="gzip")
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
