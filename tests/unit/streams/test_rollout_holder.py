"""The worker's model holder during a rollout: one champion, at most one candidate.

The candidate comes from the rollout state (its bytes ride in the state) and passes every check
a live version passes; one that fails leaves the champion serving alone.
"""

from __future__ import annotations

from functools import cache

import pytest

from irisflow.registry import deserialize_model
from irisflow.schemas import ModelUpdate, RolloutStage, RolloutState
from streams.intake import LiveModel
from streams.metrics import WorkerMetrics
from streams.model_updates import ModelHolder
from tests.factories import forged_update, model_update


@cache
def _update(version: int) -> ModelUpdate:
    return model_update(version)


def _state(
    stage: RolloutStage = RolloutStage.SHADOW,
    candidate: ModelUpdate | None = None,
    *,
    share: float = 0.2,
    rollout_id: str = "r-1",
) -> RolloutState:
    update = candidate if candidate is not None else _update(2)
    active = stage in (RolloutStage.SHADOW, RolloutStage.CANARY)
    return RolloutState(
        model_name="iris",
        rollout_id=rollout_id,
        stage=stage,
        candidate_version=update.version,
        champion_version=1,
        share=share,
        candidate=update if active else None,
    )


@pytest.fixture
def metrics() -> WorkerMetrics:
    return WorkerMetrics.create()


@pytest.fixture
def holder(metrics: WorkerMetrics) -> ModelHolder:
    holder = ModelHolder(
        on_swap=metrics.on_swap,
        on_candidate=metrics.on_candidate,
        on_candidate_refused=metrics.on_candidate_refused,
    )
    update = _update(1)
    holder.current = LiveModel(
        update.metadata(), deserialize_model(update.artifact, sha256=update.sha256)
    )
    return holder


def _gauge(metrics: WorkerMetrics) -> float | None:
    return metrics.registry.get_sample_value("irisflow_candidate_model_version", {})


def _refusals(metrics: WorkerMetrics) -> float | None:
    return metrics.registry.get_sample_value("irisflow_candidate_refusals_total", {})


async def test_an_active_state_loads_its_candidate_beside_the_champion(
    holder: ModelHolder, metrics: WorkerMetrics
) -> None:
    state = _state()
    await holder.follow(state)
    assert holder.rollout is not None
    assert holder.rollout.state is state
    assert holder.rollout.candidate.version == 2
    assert holder.rollout.candidate.classes == ["setosa", "versicolor", "virginica"]
    assert holder.current is not None
    assert holder.current.version == 1
    assert _gauge(metrics) == 2


async def test_a_new_state_of_the_same_candidate_keeps_the_loaded_model(
    holder: ModelHolder,
) -> None:
    await holder.follow(_state())
    assert holder.rollout is not None
    loaded = holder.rollout.candidate
    canary = _state(RolloutStage.CANARY, share=0.5)
    await holder.follow(canary)
    assert holder.rollout is not None
    assert holder.rollout.candidate is loaded, "not loaded again"
    assert holder.rollout.state is canary


@pytest.mark.parametrize("how", ["checksum", "zip_bomb", "wrong_features"])
async def test_a_candidate_that_fails_its_checks_leaves_the_champion_serving_alone(
    holder: ModelHolder, metrics: WorkerMetrics, how: str
) -> None:
    state = _state(RolloutStage.CANARY, forged_update(3, how))
    await holder.follow(state)
    assert holder.rollout is None
    assert holder.rollout_state is state, "the state stays known"
    assert holder.candidate_refused is not None
    assert holder.candidate_refused[0] == 3
    assert holder.current is not None
    assert holder.current.version == 1
    assert _refusals(metrics) == 1
    assert _gauge(metrics) in (None, 0.0)
    await holder.follow(state.model_copy(update={"share": 0.3}))  # republished: same bytes
    assert _refusals(metrics) == 1, "the same bytes are not tried again"


async def test_a_refused_candidate_replaces_a_loaded_one_and_the_champion_serves(
    holder: ModelHolder,
) -> None:
    await holder.follow(_state())
    await holder.follow(_state(candidate=forged_update(3, "checksum"), rollout_id="r-2"))
    assert holder.rollout is None


async def test_a_state_whose_candidate_is_another_models_or_version_is_refused(
    holder: ModelHolder,
) -> None:
    other = _update(2).model_copy(update={"model_name": "wine"})
    await holder.follow(_state(candidate=other))
    assert holder.rollout is None
    mislabeled = _state().model_copy(update={"candidate_version": 5})
    await holder.follow(mislabeled)
    assert holder.rollout is None
    assert holder.candidate_refused is not None
    assert "names candidate version 5" in holder.candidate_refused[1]


@pytest.mark.parametrize(
    "stage", [RolloutStage.PROMOTED, RolloutStage.ROLLED_BACK, RolloutStage.ABORTED]
)
async def test_a_terminal_state_unloads_the_candidate(
    holder: ModelHolder, metrics: WorkerMetrics, stage: RolloutStage
) -> None:
    await holder.follow(_state())
    ended = _state(stage).model_copy(update={"candidate": _update(2)})  # even with its bytes
    await holder.follow(ended)
    assert holder.rollout is None
    assert holder.rollout_state is ended
    assert _gauge(metrics) == 0


async def test_a_promotion_unloads_the_candidate_once_its_update_goes_live(
    holder: ModelHolder, metrics: WorkerMetrics
) -> None:
    """The controller publishes the candidate's model update first, then ``promoted``."""
    active = _state(RolloutStage.CANARY)
    await holder.follow(active)
    assert await holder.apply(_update(2))
    assert holder.rollout is None
    assert holder.current is not None
    assert holder.current.version == 2
    await holder.follow(active)  # an active state published before the promotion, read late
    assert holder.rollout is None, "the live version is never its own candidate"
    assert _gauge(metrics) == 0
