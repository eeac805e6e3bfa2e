"""The rollout controller on the real broker: commands in, states out, the policy's steps taken
from shadow predictions read off Kafka, a promotion through model-updates, a restart resumed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.clients import assign_all, make_consumer, make_producer, send
from irisflow.kafka.model_topic import read_live_update
from irisflow.kafka.rollout_topic import RolloutFollower, send_command
from irisflow.registry import LocalRegistry
from irisflow.schemas import (
    DeadLetter,
    RolloutCommand,
    RolloutMode,
    RolloutStage,
    RolloutState,
    ShadowPrediction,
)
from irisflow.settings import Settings
from irisflow.topics import Topics
from tests.conftest import SettingsFactory
from tests.factories import model_update
from trainer.metrics import TrainerMetrics
from trainer.rollout.controller import RolloutController

pytestmark = pytest.mark.kafka

DEADLINE = 30.0


@pytest.fixture
def settings(kafka_settings: SettingsFactory) -> Settings:
    settings = kafka_settings(
        **{
            "rollout.min_samples": 20,
            "rollout.min_stage_seconds": 0,
            "rollout.evaluate_interval_seconds": 0.2,
            "rollout.canary_share": 0.5,
        }
    )
    registry = LocalRegistry(settings.registry_dir)
    for version, kind in ((1, "logistic_regression"), (2, "naive_bayes"), (3, "naive_bayes")):
        registry.save(model_update(version, kind=kind))
    return settings


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[RolloutController]:
    controller = RolloutController(settings, metrics=TrainerMetrics.create())
    controller.on_champion(LocalRegistry(settings.registry_dir).metadata(1))
    task = asyncio.create_task(controller.run())
    try:
        ready = asyncio.create_task(controller.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=DEADLINE, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()
        assert ready in done, "the controller did not get ready"
        yield controller
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def following(settings: Settings) -> AsyncIterator[RolloutFollower]:
    follower = RolloutFollower(settings.kafka, settings.model_name)
    task = asyncio.create_task(follower.run())
    try:
        await asyncio.wait_for(follower.caught_up.wait(), DEADLINE)
        yield follower
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _command(
    settings: Settings, follower: RolloutFollower, action: str, **fields: Any
) -> RolloutState:
    command = RolloutCommand(
        model_name=settings.model_name,
        command_id=uuid.uuid4().hex,
        action=action,
        **fields,
    )
    await send_command(settings.kafka, command)
    state = await follower.wait_for(
        lambda s: s.last_command is not None and s.last_command.command_id == command.command_id,
        timeout=DEADLINE,
    )
    assert state is not None, f"no outcome for the {action} command"
    return state


async def _shadows(settings: Settings, state: RolloutState, count: int, *, start: int) -> None:
    """What workers would write: ``count`` paired requests on which both versions agree."""
    assert state.rollout_id is not None
    assert state.candidate_version is not None
    assert state.champion_version is not None
    canary = state.stage == RolloutStage.CANARY
    topic = Topics.of(settings.kafka).shadow_predictions
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        for i in range(start, start + count):
            record = ShadowPrediction(
                request_id=f"req-{i}",
                rollout_id=state.rollout_id,
                mode=RolloutMode.CANARY if canary else RolloutMode.SHADOW,
                version=state.champion_version if canary else state.candidate_version,
                served_version=state.candidate_version if canary else state.champion_version,
                labels=["setosa"],
                served_labels=["setosa"],
                confidences=[0.97],
                served_confidences=[0.97],
            )
            await send(producer, topic.record(record))
    finally:
        await producer.stop()


def test_a_good_candidate_is_moved_to_live_by_the_policy_from_records_on_kafka(
    settings: Settings,
) -> None:
    async def scenario() -> None:
        await ensure_topics(settings.kafka)
        async with running(settings), following(settings) as follower:
            state = await _command(settings, follower, "start", version=2, mode="shadow")
            assert state.stage == RolloutStage.SHADOW
            assert state.last_command is not None
            assert state.last_command.status == 200
            await _shadows(settings, state, 20, start=0)
            canary = await follower.wait_for(
                lambda s: s.stage == RolloutStage.CANARY, timeout=DEADLINE
            )
            assert canary is not None
            assert canary.share == 0.5
            await _shadows(settings, canary, 20, start=100)
            promoted = await follower.wait_for(
                lambda s: s.stage == RolloutStage.PROMOTED, timeout=DEADLINE
            )
            assert promoted is not None
            assert promoted.candidate is None
            assert [step.decided_by for step in promoted.steps] == ["cli", "policy", "policy"]
            live = await read_live_update(settings.kafka, settings.model_name)
            assert live is not None
            assert live.version == 2
        history = LocalRegistry(settings.registry_dir).deployments(2)
        assert [entry["stage"] for entry in history] == ["shadow", "canary", "promoted"]

    asyncio.run(scenario())


def test_conflicts_are_answered_with_their_status_and_reason(settings: Settings) -> None:
    async def scenario() -> None:
        await ensure_topics(settings.kafka)
        async with running(settings), following(settings) as follower:
            missing = await _command(settings, follower, "start", version=42, mode="canary")
            assert missing.last_command is not None
            assert missing.last_command.status == 404
            nothing = await _command(settings, follower, "promote")
            assert nothing.last_command is not None
            assert nothing.last_command.status == 409
            await _command(settings, follower, "start", version=3, mode="canary", share=0.2)
            aborted = await _command(settings, follower, "abort", reason="by hand")
            assert aborted.stage == RolloutStage.ABORTED
            assert aborted.steps[-1].reason == "by hand"

    asyncio.run(scenario())


def test_a_restarted_controller_resumes_the_rollout_and_rebuilds_its_readings(
    settings: Settings,
) -> None:
    async def scenario() -> None:
        await ensure_topics(settings.kafka)
        async with following(settings) as follower:
            async with running(settings):
                state = await _command(
                    settings, follower, "start", version=3, mode="shadow", automatic=False
                )
                await _shadows(settings, state, 7, start=0)
                counted = await follower.wait_for(
                    lambda s: bool(s.readings) and s.readings[1].scored == 7, timeout=DEADLINE
                )
                assert counted is not None
            async with running(settings) as again:
                assert again.state is not None
                assert again.state.rollout_id == state.rollout_id
                await _shadows(settings, state, 3, start=7)
                resumed = await follower.wait_for(
                    lambda s: bool(s.readings) and s.readings[1].scored == 10, timeout=DEADLINE
                )
                assert resumed is not None
                assert resumed.stage == RolloutStage.SHADOW

    asyncio.run(scenario())


def test_a_malformed_command_is_dead_lettered_and_the_next_one_is_carried_out(
    settings: Settings,
) -> None:
    async def scenario() -> None:
        await ensure_topics(settings.kafka)
        topics = Topics.of(settings.kafka)
        letters = make_consumer(settings.kafka, group_id=None)
        await letters.start()
        try:
            await assign_all(letters, topics.dead_letters.name, start="end")
            async with running(settings), following(settings) as follower:
                producer = make_producer(settings.kafka)
                await producer.start()
                try:
                    await producer.send_and_wait(
                        topics.rollout_commands.name, key=b"iris", value=b'{"action": "start"'
                    )
                finally:
                    await producer.stop()
                state = await _command(settings, follower, "start", version=2, mode="shadow")
                assert state.stage == RolloutStage.SHADOW
            found: list[DeadLetter] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + DEADLINE
            while not found and loop.time() < deadline:
                for records in (await letters.getmany(timeout_ms=500)).values():
                    found += [topics.dead_letters.decode(r.value, r.key) for r in records]
            assert [(f.consumer, f.reason) for f in found] == [("trainer.rollout", "undecodable")]
        finally:
            await letters.stop()

    asyncio.run(scenario())
