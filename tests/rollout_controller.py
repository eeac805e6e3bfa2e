"""A test playing the rollout controller on the real broker, for the interfaces' tests.

The controller (in ``irisflow trainer``) is the only writer of rollout states; the gateway and the
CLI send it commands and read its outcome back from the state. :class:`PlayedController` stands in
for it: it reads every command that arrives on ``irisflow.rollout-commands`` exactly as the
controller does (the topic's codec, the model name as key) and publishes the state its
``respond`` returns to ``irisflow.rollouts`` (or nothing, as a controller that is not running).
It runs in a thread with its own event loop, so synchronous tests (HTTP calls, click's runner,
a browser) can use it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from types import TracebackType

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from irisflow.kafka.clients import assign_all, make_consumer, make_producer
from irisflow.kafka.rollout_topic import publish_state
from irisflow.schemas import RolloutCommand, RolloutState
from irisflow.settings import KafkaSettings
from irisflow.topics import Topics

__all__ = ["PlayedController", "publish_states"]

Respond = Callable[[RolloutCommand], RolloutState | None]


def publish_states(kafka: KafkaSettings, *states: RolloutState) -> None:
    """Publish ``states`` to the rollouts topic, in order, as the controller would (in a thread
    of its own, so a caller whose thread runs an event loop, such as Playwright's, can too)."""

    async def publish() -> None:
        producer = make_producer(kafka)
        await producer.start()
        try:
            for state in states:
                await publish_state(producer, kafka, state)
        finally:
            await producer.stop()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, publish()).result(timeout=60)


class PlayedController:
    """Answers each command with ``respond(command)``; ``commands`` is every one read."""

    def __init__(self, kafka: KafkaSettings, respond: Respond) -> None:
        self.kafka = kafka
        self.respond = respond
        self.commands: list[RolloutCommand] = []
        self.failure: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="played-controller", daemon=True)

    def __enter__(self) -> PlayedController:
        self._thread.start()
        if not self._ready.wait(60):
            raise AssertionError(f"the played controller could not follow {self._topic}")
        if self.failure is not None:
            raise AssertionError("the played controller failed to start") from self.failure
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.failure is not None and error is None:
            raise AssertionError("the played controller failed") from self.failure

    @property
    def _topic(self) -> str:
        return self.kafka.topics.rollout_commands

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported to the test by __enter__ / __exit__
            self.failure = exc
            self._ready.set()

    async def _run(self) -> None:
        consumer: AIOKafkaConsumer = make_consumer(self.kafka, group_id=None)
        producer: AIOKafkaProducer = make_producer(self.kafka)
        await consumer.start()
        await producer.start()
        try:
            await assign_all(consumer, self._topic, start="end")
            self._ready.set()
            codec = Topics.of(self.kafka).rollout_commands
            while not self._stop.is_set():
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        command = codec.decode(record.value, record.key)
                        self.commands.append(command)
                        state = self.respond(command)
                        if state is not None:
                            await publish_state(producer, self.kafka, state)
        finally:
            await consumer.stop()
            await producer.stop()
