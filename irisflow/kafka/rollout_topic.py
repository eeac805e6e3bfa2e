"""The compacted ``rollouts`` topic and its command topic: follow the rollout, ask it to change.

Every worker and gateway follows the newest :class:`~irisflow.schemas.RolloutState` of its model
with :class:`RolloutFollower` (no consumer group, all partitions, from the beginning), so they all
agree on the stage, the share and the candidate without shared disk, and a restarted process
resumes the rollout from the newest record alone. Only the rollout controller (in the trainer)
writes states (:func:`publish_state`); everybody else sends a
:class:`~irisflow.schemas.RolloutCommand` (:func:`send_command`) and reads the outcome back from
the state's ``last_command``.

A record that fails the codec (or whose key is not its model name) is logged and counted; live
(after catch-up) it is also dead-lettered with the follower's name, like the model feed does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiokafka import AIOKafkaProducer, TopicPartition

from irisflow.kafka.clients import LetterBox, assign_all, behind, make_consumer, make_producer, send
from irisflow.schemas import RolloutCommand, RolloutState
from irisflow.settings import KafkaSettings
from irisflow.topics import Refused, Topics

__all__ = [
    "RolloutFollower",
    "following",
    "publish_state",
    "read_rollout_state",
    "send_command",
]

log = logging.getLogger(__name__)

OnState = Callable[[RolloutState], Awaitable[None]]


class RolloutFollower:
    """Offers ``on_state`` the newest state of ``model_name`` after catch-up, then each new one.

    ``current`` is the newest state offered (``None`` before the first rollout)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        model_name: str,
        on_state: OnState | None = None,
        *,
        consumer: str = "rollout-follower",
        on_letter: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self._kafka = kafka
        self._topic = Topics.of(kafka).rollouts
        self._model_name = model_name
        self._on_state = on_state
        self._box = LetterBox(kafka, consumer, on_letter=on_letter)
        self.consumer_name = consumer
        self.current: RolloutState | None = None
        self.refused_records = 0
        self.caught_up = asyncio.Event()
        self.changed = asyncio.Condition()
        """Notified after each state is offered (gateways wait on it for a command's outcome)."""
        self._run: asyncio.Task[None] | None = None
        """The task running :meth:`run` when :func:`following` started it."""

    def _decode(self, record: object) -> RolloutState | Refused | None:
        value = getattr(record, "value", None)
        key = getattr(record, "key", None)
        try:
            state = self._topic.decode(value, key)
        except Refused as exc:
            self.refused_records += 1
            log.error(
                "%s: unreadable rollout state at offset %s (%s): %s",
                self.consumer_name,
                getattr(record, "offset", "?"),
                exc.reason,
                exc,
            )
            return exc
        return state if state.model_name == self._model_name else None

    async def _offer(self, state: RolloutState) -> None:
        self.current = state
        if self._on_state is not None:
            try:
                await self._on_state(state)
            except Exception:  # a state the owner cannot apply must not stop the follower
                log.exception(
                    "%s: applying rollout %s (%s) failed",
                    self.consumer_name,
                    state.rollout_id,
                    state.stage,
                )
        async with self.changed:
            self.changed.notify_all()

    async def run(self) -> None:
        consumer = make_consumer(self._kafka, group_id=None)
        await consumer.start()
        try:
            tps = await assign_all(consumer, self._topic.name, start="beginning")
            end = await consumer.end_offsets(tps)
            newest: RolloutState | None = None
            while await behind(consumer, end):
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        if record.offset >= end[TopicPartition(record.topic, record.partition)]:
                            continue  # arrived after catch-up began: read again live
                        found = self._decode(record)
                        if isinstance(found, RolloutState):
                            newest = found
            # Catch-up stops at the end offsets; what came after is read again live.
            for tp in tps:
                consumer.seek(tp, end[tp])
            if newest is not None:
                await self._offer(newest)
            self.caught_up.set()
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        found = self._decode(record)
                        if isinstance(found, Refused):
                            await self._box.refused(record, found)
                        elif found is not None:
                            await self._offer(found)
        finally:
            await consumer.stop()
            await self._box.close()

    async def wait_for(
        self, accept: Callable[[RolloutState], bool], *, timeout: float
    ) -> RolloutState | None:
        """The first state (the current one included) ``accept`` takes, or ``None`` after
        ``timeout`` seconds."""

        async def first() -> RolloutState:
            async with self.changed:
                while self.current is None or not accept(self.current):
                    await self.changed.wait()
                return self.current

        waiter = asyncio.create_task(asyncio.wait_for(first(), timeout))
        try:
            if self._run is not None:
                await asyncio.wait({waiter, self._run}, return_when=asyncio.FIRST_COMPLETED)
                if not waiter.done() and self._run.done():
                    self._run.result()  # the follower stopped: its error, not a silent timeout
            return await waiter
        except TimeoutError:
            return None
        finally:
            waiter.cancel()


async def publish_state(
    producer: AIOKafkaProducer, kafka: KafkaSettings, state: RolloutState
) -> None:
    """Send ``state`` and wait for every in-sync replica (the controller's only write)."""
    await send(producer, Topics.of(kafka).rollouts.record(state))


async def send_command(kafka: KafkaSettings, command: RolloutCommand) -> None:
    """Send one command to the rollout controller and wait for the broker's acknowledgement."""
    producer = make_producer(kafka)
    await producer.start()
    try:
        await send(producer, Topics.of(kafka).rollout_commands.record(command))
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def following(
    kafka: KafkaSettings, model_name: str, *, consumer: str, timeout: float = 30.0
) -> AsyncIterator[RolloutFollower]:
    """A follower running for the block, read to the topic's end before the block starts (for
    one-shot readers: the CLI, the controller's resume). Raises the follower's own error if it
    stops, and ``TimeoutError`` if catching up takes longer than ``timeout`` seconds; its
    ``wait_for`` raises the follower's error too instead of waiting out its timeout."""
    follower = RolloutFollower(kafka, model_name, consumer=consumer)
    task = asyncio.create_task(follower.run())
    follower._run = task
    try:
        waiter = asyncio.create_task(follower.caught_up.wait())
        done, _ = await asyncio.wait(
            {task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            waiter.cancel()
            task.result()
        if waiter not in done:
            waiter.cancel()
            raise TimeoutError(f"reading {kafka.topics.rollouts} took longer than {timeout:.0f}s")
        yield follower
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def read_rollout_state(
    kafka: KafkaSettings, model_name: str, *, timeout: float = 30.0
) -> RolloutState | None:
    """The newest rollout state of ``model_name`` (``None`` before the first rollout)."""
    async with following(kafka, model_name, consumer="rollout-reader", timeout=timeout) as f:
        return f.current
