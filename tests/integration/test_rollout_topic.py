"""The rollout state travels in its compacted topic: every follower sees the newest state and
each change, and a record it cannot read costs a dead letter, never the follower."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiokafka.errors import KafkaError

from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.clients import make_producer
from irisflow.kafka.rollout_topic import (
    RolloutFollower,
    following,
    publish_state,
    read_rollout_state,
)
from irisflow.local.broker.runtime import free_port
from irisflow.schemas import RolloutStage, RolloutState
from irisflow.settings import Settings
from tests.conftest import SettingsFactory
from tests.integration.letters import dead_letters
from tests.rollout_samples import rollout_state

pytestmark = pytest.mark.kafka


async def _publish(settings: Settings, *states: RolloutState) -> None:
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        for state in states:
            await publish_state(producer, settings.kafka, state)
    finally:
        await producer.stop()


def test_the_newest_state_of_this_model_is_read_and_other_models_are_ignored(
    kafka_settings: SettingsFactory,
) -> None:
    settings = kafka_settings()

    async def check() -> None:
        await ensure_topics(settings.kafka)
        assert await read_rollout_state(settings.kafka, settings.model_name) is None
        await _publish(
            settings,
            rollout_state(RolloutStage.SHADOW, model_name=settings.model_name),
            rollout_state(RolloutStage.CANARY, model_name=settings.model_name, share=0.3),
            rollout_state(RolloutStage.SHADOW, model_name="another-model"),
        )
        state = await read_rollout_state(settings.kafka, settings.model_name)
        assert state is not None
        assert (state.stage, state.share) == (RolloutStage.CANARY, 0.3)

    asyncio.run(check())


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"iris", b"{not json", "undecodable"),
        (b"\xff\xfe", b"good", "bad_key"),
        (b"iris", b'{"model_name": "iris", "stage": "sideways"}', "invalid"),
    ],
)
def test_an_unreadable_state_is_dead_lettered_and_the_follower_goes_on(
    kafka_settings: SettingsFactory, key: bytes, value: bytes, reason: str
) -> None:
    settings = kafka_settings()
    good = rollout_state(RolloutStage.SHADOW, model_name=settings.model_name)
    later = rollout_state(RolloutStage.CANARY, model_name=settings.model_name, share=0.2)

    async def check() -> None:
        await ensure_topics(settings.kafka)
        await _publish(settings, good)
        offered: list[RolloutState] = []

        async def on_state(state: RolloutState) -> None:
            offered.append(state)

        follower = RolloutFollower(
            settings.kafka, settings.model_name, on_state, consumer="test.rollout-follower"
        )
        task = asyncio.create_task(follower.run())
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            await asyncio.wait_for(follower.caught_up.wait(), 30)
            raw = good.to_bytes() if value == b"good" else value
            await producer.send_and_wait(settings.kafka.topics.rollouts, raw, key=key)
            (letter,) = await dead_letters(settings, 1)
            assert (letter.reason, letter.consumer) == (reason, "test.rollout-follower")
            assert letter.source_topic == settings.kafka.topics.rollouts
            await _publish(settings, later)
            seen = await follower.wait_for(lambda s: s.stage == RolloutStage.CANARY, timeout=20)
            assert seen == later
            assert [s.stage for s in offered] == [RolloutStage.SHADOW, RolloutStage.CANARY]
            assert follower.current == later
            assert follower.refused_records == 1
            assert not task.done()
        finally:
            await producer.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(check())


def test_a_one_shot_reader_fails_with_the_follower_s_error_when_no_broker_answers(
    kafka_settings: SettingsFactory,
) -> None:
    """The CLI reads through ``following``: a dead broker must be an error it can explain, not a
    state of "no rollout yet"."""
    settings = kafka_settings(**{"kafka.bootstrap": f"127.0.0.1:{free_port()}"})

    async def check() -> None:
        with pytest.raises((KafkaError, OSError, TimeoutError)):
            async with following(
                settings.kafka, settings.model_name, consumer="test.reader", timeout=10
            ):
                pytest.fail("the block ran without a broker")

    asyncio.run(check())
