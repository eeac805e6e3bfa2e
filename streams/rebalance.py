"""Rebalances: say when a worker is really ready, and re-read partitions nobody committed yet.

After a rebalance Faust resumes the stream partitions, then seeks them to their committed
offsets. A partition with no committed offset yet (a new group, or one that never had a
message) is not sought (aiokafka seeks only to offsets > 0), so records fetched in between,
while the flow is still paused, are skipped and never fetched again. That lost requests in
tests that sent traffic while two fresh workers were still rebalancing. After each rebalance
this sensor seeks such partitions to their beginning, which is what
``consumer_auto_offset_reset="earliest"`` promises anyway; at worst a few requests are
answered twice (consumers deduplicate by request id). The seek goes through Faust's
``seek_wait``, which runs in the consumer's thread (a plain ``seek`` from the event loop races
the fetcher and crashed it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import faust
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from irisflow.kafka.admin import admin_client
from irisflow.settings import KafkaSettings

__all__ = ["Rebalances"]

log = logging.getLogger(__name__)


class Rebalances(faust.Sensor):
    """Tracks whether a rebalance (including table recovery) is under way."""

    def __init__(self, app: faust.App, *, topics: Iterable[str], kafka: KafkaSettings) -> None:
        super().__init__()
        self.app = app
        self.topics = set(topics)
        self.kafka = kafka
        self.settled = False
        self._rewinds: set[asyncio.Task[None]] = set()

    def on_rebalance_start(self, app: Any) -> dict[str, Any]:
        self.settled = False
        return {}

    def on_rebalance_end(self, app: Any, state: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self._rewind_uncommitted())
        self._rewinds.add(task)
        task.add_done_callback(self._rewinds.discard)

    async def _rewind_uncommitted(self) -> None:
        try:
            assigned = [tp for tp in self.app.consumer.assignment() if tp.topic in self.topics]
            fresh = {tp: 0 for tp in await self._uncommitted(assigned)}
            if fresh:
                log.info("no committed offset yet, reading from the start: %s", sorted(fresh))
                # in the consumer's own thread, and resets Faust's read offsets too
                await self.app.consumer.seek_wait(fresh)
        except KafkaError as exc:  # the next rebalance tries again; meanwhile keep scoring
            log.warning("could not check committed offsets after a rebalance: %r", exc)
        finally:
            self.settled = True

    async def _uncommitted(self, assigned: list[Any]) -> list[Any]:
        if not assigned:
            return []
        admin = admin_client(self.kafka)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(
                self.app.conf.id, partitions=[TopicPartition(*tp) for tp in assigned]
            )
        finally:
            await admin.close()
        return [
            tp for tp in assigned if getattr(committed.get(TopicPartition(*tp)), "offset", -1) <= 0
        ]
