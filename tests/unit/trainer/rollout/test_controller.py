"""The rollout controller without Kafka: commands, verdicts, promotions and what is recorded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from irisflow.registry import LocalRegistry
from irisflow.schemas import (
    LabeledSample,
    ModelUpdate,
    RolloutCommand,
    RolloutMode,
    RolloutStage,
    RolloutState,
    ShadowPrediction,
)
from irisflow.settings import Settings
from tests.conftest import SettingsFactory
from tests.factories import SETOSA, model_update
from trainer.metrics import TrainerMetrics
from trainer.rollout.controller import RolloutController, RolloutRefused


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(
        **{
            "rollout.min_samples": 20,
            "rollout.min_labels": 10,
            "rollout.min_stage_seconds": 5,
            "rollout.canary_share": 0.25,
        }
    )


@pytest.fixture
def published() -> list[ModelUpdate]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def controller(settings: Settings, published: list[ModelUpdate], clock: Clock) -> RolloutController:
    async def publish(update: ModelUpdate) -> None:
        published.append(update)

    registry = LocalRegistry(settings.registry_dir)
    for version, kind in ((1, "logistic_regression"), (2, "naive_bayes")):
        registry.save(model_update(version, kind=kind))
    made = RolloutController(
        settings, metrics=TrainerMetrics.create(), publish=publish, clock=clock
    )
    made.on_champion(registry.metadata(1))
    return made


def _command(action: str, **changes: Any) -> RolloutCommand:
    values: dict[str, Any] = {"model_name": "iris", "command_id": f"c-{action}", "action": action}
    return RolloutCommand(**(values | changes))


def _start(controller: RolloutController, mode: RolloutMode = RolloutMode.SHADOW) -> RolloutState:
    controller.handle(_command("start", version=2, mode=mode))
    assert controller.state is not None
    return controller.state


def _pair(controller: RolloutController, n: int, *, agree: bool = True, start: int = 0) -> None:
    state = controller.state
    assert state is not None
    assert state.rollout_id is not None
    canary = state.stage == RolloutStage.CANARY
    for i in range(start, start + n):
        label = "setosa" if agree else "virginica"
        controller.add(
            ShadowPrediction(
                request_id=f"r{i}",
                rollout_id=state.rollout_id,
                mode=RolloutMode.CANARY if canary else RolloutMode.SHADOW,
                version=1 if canary else 2,
                served_version=2 if canary else 1,
                labels=["setosa" if canary else label],
                served_labels=[label if canary else "setosa"],
                confidences=[0.95],
                served_confidences=[0.95],
            )
        )


async def _flush(controller: RolloutController) -> list[Any]:
    sent: list[Any] = []

    class Producer:
        async def send_and_wait(self, topic: str, **kw: Any) -> Any:
            sent.append((topic, kw))
            return None

    await controller.flush(Producer())
    return sent


def test_a_start_command_begins_a_shadow_with_the_candidate_bytes(
    controller: RolloutController, settings: Settings
) -> None:
    state = _start(controller)
    assert state.stage == RolloutStage.SHADOW
    assert (state.candidate_version, state.champion_version) == (2, 1)
    assert state.share == settings.rollout.shadow_share
    assert state.candidate is not None
    assert state.candidate.version == 2
    assert state.last_command is not None
    assert (state.last_command.command_id, state.last_command.status) == ("c-start", 200)
    assert [step.stage for step in state.steps] == [RolloutStage.SHADOW]


@pytest.mark.parametrize(
    ("command", "status", "words"),
    [
        ({"version": 9, "mode": RolloutMode.SHADOW}, 404, "not in the registry"),
        ({"version": 1, "mode": RolloutMode.CANARY}, 409, "already live"),
    ],
)
def test_a_start_that_cannot_be_carried_out_says_why_with_its_status(
    controller: RolloutController, command: dict[str, Any], status: int, words: str
) -> None:
    controller.handle(_command("start", **command))
    state = controller.state
    assert state is not None
    assert state.last_command is not None
    assert state.last_command.accepted is False
    assert state.last_command.status == status
    assert words in (state.last_command.error or "")
    assert not state.active


def test_a_second_start_during_a_rollout_is_a_conflict(controller: RolloutController) -> None:
    first = _start(controller)
    controller.handle(_command("start", command_id="again", version=2, mode=RolloutMode.CANARY))
    state = controller.state
    assert state is not None
    assert state.rollout_id == first.rollout_id
    assert state.last_command is not None
    assert state.last_command.status == 409


def test_promote_or_abort_without_a_rollout_is_a_conflict(controller: RolloutController) -> None:
    for action in ("promote", "abort"):
        controller.handle(_command(action))
        assert controller.state is not None
        assert controller.state.last_command is not None
        assert controller.state.last_command.status == 409


def test_the_policy_moves_a_good_candidate_from_shadow_to_canary_to_live(
    controller: RolloutController, clock: Clock, published: list[ModelUpdate], settings: Settings
) -> None:
    _start(controller)
    _pair(controller, 19)
    clock.now += 10
    assert controller.tick() is None
    _pair(controller, 1, start=19)
    verdict = controller.tick()
    assert verdict is not None
    assert verdict.stage == RolloutStage.CANARY
    assert controller.state is not None
    assert controller.state.share == 0.25
    _pair(controller, 20, start=100)
    clock.now += 4
    assert controller.tick() is None  # min_stage_seconds: the canary must last 5 s
    clock.now += 1
    verdict = controller.tick()
    assert verdict is not None
    assert verdict.stage == RolloutStage.PROMOTED
    state = controller.state
    assert state is not None
    assert state.candidate is None
    assert [s.stage for s in state.steps] == ["shadow", "canary", "promoted"]
    assert [s.decided_by for s in state.steps] == ["cli", "policy", "policy"]
    asyncio.run(_flush(controller))
    assert [u.version for u in published] == [2]
    history = LocalRegistry(settings.registry_dir).deployments(2)
    assert [entry["stage"] for entry in history] == ["shadow", "canary", "promoted"]


def test_a_bad_canary_is_rolled_back_with_the_numbers_that_decided(
    controller: RolloutController, published: list[ModelUpdate]
) -> None:
    _start(controller, RolloutMode.CANARY)
    _pair(controller, 20, agree=False)
    verdict = controller.tick()
    assert verdict is not None
    assert verdict.stage == RolloutStage.ROLLED_BACK
    assert verdict.numbers["agreement"] == 0.0
    state = controller.state
    assert state is not None
    assert not state.active
    assert state.steps[-1].decided_by == "policy"
    asyncio.run(_flush(controller))
    assert published == []


def test_the_live_version_changing_under_a_rollout_aborts_it(
    controller: RolloutController, settings: Settings
) -> None:
    _start(controller)
    other = model_update(3)
    controller.on_champion(other.metadata())
    state = controller.state
    assert state is not None
    assert state.stage == RolloutStage.ABORTED
    assert "changed from 1 to 3" in state.steps[-1].reason


def test_an_abort_by_hand_ends_it_and_keeps_the_history_for_the_next(
    controller: RolloutController,
) -> None:
    first = _start(controller)
    controller.handle(_command("abort", requested_by="cli", reason="not today"))
    state = controller.state
    assert state is not None
    assert state.stage == RolloutStage.ABORTED
    assert state.steps[-1].reason == "not today"
    assert state.steps[-1].decided_by == "cli"
    second = _start(controller)
    assert second.rollout_id != first.rollout_id
    assert [s.stage for s in second.history] == ["shadow", "aborted"]


def test_labels_reach_the_readings(controller: RolloutController) -> None:
    state = _start(controller)
    _pair(controller, 1)
    controller.add(
        LabeledSample(
            request_id="r0",
            features=SETOSA,
            true_label="setosa",
            predicted_label="setosa",
            model_version=1,
            shadow_version=2,
            shadow_label="setosa",
        )
    )
    controller.tick()
    assert controller.state is not None
    champion, candidate = controller.state.readings
    assert (champion.labeled, candidate.labeled, candidate.accuracy) == (1, 1, 1.0)
    assert state.rollout_id == controller.state.rollout_id


def test_the_newest_state_is_what_is_published_and_gauges_follow_it(
    controller: RolloutController,
) -> None:
    _start(controller)
    controller.tick()
    sent = asyncio.run(_flush(controller))
    assert len(sent) == 1
    assert controller.metrics.rollout_active._value.get() == 1
    assert controller.metrics.rollout_candidate._value.get() == 2


def test_a_candidate_that_would_not_load_is_refused(
    controller: RolloutController, settings: Settings
) -> None:
    broken = model_update(5, artifact=b"not a zip", sha256="0" * 64)
    with pytest.raises(RolloutRefused) as refused:
        controller.start(broken, RolloutMode.SHADOW)
    assert refused.value.status == 422
