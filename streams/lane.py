"""The scoring lane: requests in, answers out, with one aiokafka consumer and no per-message Faust.

Why not a Faust stream: on this machine a Faust agent that only counts drains ~5.8k messages/s
from the real broker (every message crosses the consumer thread, a pair of tasks in
``wait_first``, a queue and an ack), while ``getmany`` plus one prebuilt produce batch plus a
commit moves ~44k/s (docs/benchmarks.md). The lane hands each fetch, up to ``batch_size``
records, straight to :meth:`streams.pipeline.Pipeline.score`. It does not linger for a fuller
batch: aiokafka prefetches in the background, so batches fill by themselves under load and a
quiet stream is answered at once.

Which partitions: the lane follows Faust (:mod:`streams.handover`). ``requests``, ``feedback``
and the join table's changelog have the same partition count and are keyed by request id, so
partition *n* of each holds the same requests; Faust assigns co-partitioned topics to one
worker, and the app hands the lane the feedback partitions Faust gave this worker once table
recovery is over. A prediction is therefore remembered by the worker that receives its feedback.

Delivery is at-least-once. Offsets live in their own consumer group (no members, commits
only) and a source offset is committed only after the broker acknowledged every answer of the
records below it. :meth:`release` (called from Faust's partitions-revoked signal, which Kafka
waits for) finishes the batch in hand, waits for its answers, commits and lets go. After a
``kill -9`` the next owner resumes from the last commit, so up to ``commit_interval_seconds``
of requests are answered twice; consumers drop duplicates by request id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from irisflow.kafka.clients import make_consumer
from irisflow.settings import Settings
from irisflow.topics import Incoming, Outgoing

__all__ = ["ScoringLane", "partition_lags", "scoring_lane"]

log = logging.getLogger(__name__)

Score = Callable[[Sequence[Incoming]], list[Outgoing]]
Send = Callable[[Sequence[Outgoing]], Awaitable[Sequence["asyncio.Future[Any]"]]]

_IDLE_WAIT_MS = 100
"""How long an empty fetch waits: bounds how soon a revoke or a due commit gets its turn."""


@dataclass
class _InFlight:
    """Answers of one fetch on their way to the broker, and the offsets they will let us commit."""

    delivered: asyncio.Future[Any]
    offsets: dict[TopicPartition, int]


class ScoringLane:
    """Reads the request partitions it is given, scores each fetch, commits what was answered."""

    def __init__(
        self,
        consumer_factory: Callable[[], AIOKafkaConsumer],
        *,
        topic: str,
        score: Score,
        send: Send,
        batch_size: int,
        commit_interval_seconds: float,
        finish_timeout_seconds: float = 30.0,
        commit_timeout_seconds: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = consumer_factory
        self.topic = topic
        self._score = score
        self._send = send
        self._batch_size = batch_size
        self._commit_interval = commit_interval_seconds
        self._finish_timeout = finish_timeout_seconds
        # aiokafka retries a commit while the coordinator is away; a revoke must not wait on it
        self._commit_timeout = commit_timeout_seconds
        self._monotonic = monotonic
        self._consumer: AIOKafkaConsumer | None = None
        self._wanted: list[TopicPartition] = []
        self._active = asyncio.Event()
        self._lock = asyncio.Lock()
        self._in_flight: deque[_InFlight] = deque()
        self._answered: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._last_commit = monotonic()

    @property
    def partitions(self) -> set[int]:
        """The request partitions this lane reads now (empty while a rebalance is under way)."""
        return {tp.partition for tp in self._wanted}

    async def run(self, ready: Awaitable[Any] | None = None) -> None:
        """Start the consumer, then score until cancelled; commit what was answered on the way out.

        ``ready`` is awaited before the first fetch (the worker waits to know the live model,
        so the first batch is not answered ``no_model`` while a model is on its way).
        """
        consumer = self._factory()
        await consumer.start()
        async with self._lock:
            consumer.assign(self._wanted)  # what Faust handed over while we were starting
            self._consumer = consumer
        try:
            if ready is not None:
                await ready
            while True:
                await self._active.wait()
                async with self._lock:
                    if self._active.is_set():  # a release may have come while we waited
                        await self._step(consumer)
        finally:
            await asyncio.shield(self._shutdown(consumer))

    async def assign(self, partitions: Iterable[int]) -> None:
        """Read these request partitions from their committed offsets (earliest when none).

        Never waits for the lane to start: Faust calls this from its rebalance, which may come
        before the app's tasks run; the partitions are then picked up when :meth:`run` starts.
        """
        wanted = sorted(set(partitions))
        async with self._lock:
            self._wanted = [TopicPartition(self.topic, p) for p in wanted]
            if wanted:
                self._active.set()
            else:
                self._active.clear()
            if self._consumer is not None:
                try:
                    if self._consumer.assignment() - set(self._wanted):
                        await self._finish()  # what is let go is committed first
                finally:  # even when an answer failed: what is let go is gone either way
                    self._consumer.assign(self._wanted)
                    self._forget_unassigned()
        log.info("scoring lane reads %s partitions %s", self.topic, wanted)

    async def release(self) -> None:
        """Let every partition go: finish the batch in hand, wait for its answers, commit."""
        self._active.clear()  # no further fetch once the batch in hand is done
        await self.assign([])

    async def lags(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records not yet read) for every partition the lane reads."""
        if self._consumer is None:
            return []
        return await partition_lags(self._consumer, self._consumer.assignment())

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        fetched = await consumer.getmany(timeout_ms=_IDLE_WAIT_MS, max_records=self._batch_size)
        if fetched:
            records = [
                Incoming(r.value, r.key, r.partition, r.offset, headers=tuple(r.headers))
                for batch in fetched.values()
                for r in batch
            ]
            futures = await self._send(self._score(records))
            self._in_flight.append(
                _InFlight(
                    delivered=_all_of(futures),
                    offsets={tp: batch[-1].offset + 1 for tp, batch in fetched.items() if batch},
                )
            )
        self._settle()
        if self._monotonic() - self._last_commit >= self._commit_interval:
            await self._commit()

    def _settle(self) -> None:
        """Move offsets whose answers are all on the broker to the committable set, in order.

        A batch whose answers failed stays at the head and raises again at every call, so no
        later batch can ever be committed past it (the worker stops; its successor re-reads).
        """
        while self._in_flight and self._in_flight[0].delivered.done():
            self._in_flight[0].delivered.result()  # a lost answer stops the worker
            self._answered.update(self._in_flight.popleft().offsets)

    def _forget_unassigned(self) -> None:
        """Drop bookkeeping of partitions let go; batches still in flight keep their order."""
        assigned = self._consumer.assignment() if self._consumer is not None else set()
        self._answered = {tp: o for tp, o in self._answered.items() if tp in assigned}
        self._committed = {tp: o for tp, o in self._committed.items() if tp in assigned}

    async def _commit(self) -> None:
        self._last_commit = self._monotonic()
        if self._consumer is None:
            return
        assigned = self._consumer.assignment()
        due = {
            tp: o
            for tp, o in self._answered.items()
            if tp in assigned and self._committed.get(tp) != o
        }
        if not due:
            return
        try:
            await asyncio.wait_for(self._consumer.commit(due), self._commit_timeout)
        except (KafkaError, TimeoutError) as exc:  # retried later; meanwhile at worst duplicates
            log.warning("could not commit request offsets %s: %r", _brief(due), exc)
            return
        self._committed.update(due)

    async def _finish(self) -> None:
        """Commit everything answered; answers still unconfirmed after the timeout stay uncommitted
        (their requests will be answered again by the next owner, never lost)."""
        if self._in_flight:
            pending = [f.delivered for f in self._in_flight]
            _, late = await asyncio.wait(pending, timeout=self._finish_timeout)
            if late:
                log.warning(
                    "%d batches of answers unconfirmed after %.0f s; their requests stay "
                    "uncommitted and will be answered again",
                    len(late),
                    self._finish_timeout,
                )
        self._settle()
        await self._commit()

    async def _shutdown(self, consumer: AIOKafkaConsumer) -> None:
        try:
            await self.release()
        except Exception as exc:  # stopping anyway; the next owner re-reads from the last commit
            log.warning("scoring lane stopped without its last commit: %r", exc)
        finally:
            self._consumer = None
            await consumer.stop()


def scoring_lane(settings: Settings, *, score: Score, send: Send) -> ScoringLane:
    """A worker's lane: request offsets in their own consumer group (commits only, no members)."""
    kafka = settings.kafka

    def consumer() -> AIOKafkaConsumer:
        return make_consumer(
            kafka,
            group_id=f"{kafka.app_id}-streams-scoring",
            client_id=f"{kafka.app_id}-scoring-lane",
        )

    return ScoringLane(
        consumer,
        topic=kafka.topics.requests,
        score=score,
        send=send,
        batch_size=settings.scoring.batch_size,
        commit_interval_seconds=settings.scoring.commit_interval_seconds,
    )


async def partition_lags(consumer: Any, partitions: Iterable[Any]) -> list[tuple[str, int, int]]:
    """(topic, partition, records not yet read) of a consumer, aiokafka's or Faust's.

    A partition whose position or highwater is not known yet (its committed offset is still
    being fetched, or it was revoked while we asked) is left out rather than waited for.
    """
    lags = []
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        try:
            position = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
        except (KafkaError, AssertionError, TimeoutError):
            continue
        if position is not None:
            lags.append((tp.topic, tp.partition, max(0, highwater - position)))
    return lags


def _all_of(futures: Sequence[asyncio.Future[Any]]) -> asyncio.Future[Any]:
    if not futures:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done
    if len(futures) == 1:
        return futures[0]
    return asyncio.gather(*futures)


def _brief(offsets: dict[TopicPartition, int]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]@{o}" for tp, o in sorted(offsets.items()))
