"""A version's deployment history: the rollout topic's steps and the registry's log, merged."""

from __future__ import annotations

from pathlib import Path

from irisflow.deployments import deployment_history
from irisflow.registry import LocalRegistry
from irisflow.schemas import RolloutStage
from tests.rollout_samples import rollout_state, step


def _registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "registry")


def test_a_step_in_both_places_is_shown_once_with_both_sources(tmp_path: Path) -> None:
    shadow = step(RolloutStage.SHADOW, at=100.0)
    registry = _registry(tmp_path)
    registry.append_decision({"kind": "rollout", **shadow.model_dump(mode="json")})
    found = deployment_history(2, rollout_state(steps=[shadow]), registry)
    assert [(s["stage"], s["sources"]) for s in found] == [("shadow", ["kafka", "registry"])]
    assert "kind" not in found[0]


def test_history_is_oldest_first_across_rollouts_and_the_retraining(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    registry.append_decision({"version": 2, "outcome": "promoted", "at": 50.0, "trigger": "drift"})
    earlier = step(RolloutStage.ROLLED_BACK, at=70.0, rollout_id="rollout-2-old")
    now = [step(RolloutStage.SHADOW, at=200.0), step(RolloutStage.CANARY, at=300.0)]
    state = rollout_state(steps=list(reversed(now)), history=[earlier])
    found = deployment_history(2, state, registry)
    assert [s["stage"] for s in found] == ["live", "rolled_back", "shadow", "canary"]
    assert found[0]["trigger"] == "drift"


def test_only_the_versions_own_steps_are_shown(tmp_path: Path) -> None:
    other = step(RolloutStage.ABORTED, version=3, at=10.0, rollout_id="rollout-3-x")
    state = rollout_state(steps=[step(RolloutStage.SHADOW, at=20.0)], history=[other])
    assert [s["stage"] for s in deployment_history(3, state, None)] == ["aborted"]
    assert [s["stage"] for s in deployment_history(2, state, None)] == ["shadow"]


def test_without_the_topic_or_the_registry_each_other_source_still_answers(
    tmp_path: Path,
) -> None:
    registry = _registry(tmp_path)
    registry.append_decision({"version": 2, "outcome": "promoted", "at": 5.0})
    assert [s["sources"] for s in deployment_history(2, None, registry)] == [["registry"]]
    assert deployment_history(2, None, None) == []


def test_an_unreadable_decisions_log_or_entry_costs_only_itself(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    registry.append_decision({"kind": "rollout", "version": 2, "stage": "shadow"})  # no time
    state = rollout_state(steps=[step(RolloutStage.SHADOW, at=20.0)])
    assert [s["sources"] for s in deployment_history(2, state, registry)] == [["kafka"]]
    registry.decisions_path.write_text("{not json\n")
    assert [s["sources"] for s in deployment_history(2, state, registry)] == [["kafka"]]
