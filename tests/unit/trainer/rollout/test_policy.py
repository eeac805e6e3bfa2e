"""The rollout policy: rollback thresholds, promotion thresholds, evidence and time, budget."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from irisflow.schemas import RolloutStage, RolloutState, VersionReading
from irisflow.settings import RolloutSettings
from tests.conftest import ROOT
from tests.factories import model_update
from trainer.rollout.policy import error_rate, judge

POLICY = RolloutSettings(
    min_samples=100,
    min_labels=20,
    min_stage_seconds=10,
    max_duration_seconds=600,
    canary_budget=300,
    canary_share=0.2,
)
NOW = 1_000_000.0


def _state(stage: RolloutStage = RolloutStage.SHADOW, **changes: Any) -> RolloutState:
    values: dict[str, Any] = {
        "model_name": "iris",
        "rollout_id": "iris-v2-test",
        "stage": stage,
        "candidate_version": 2,
        "champion_version": 1,
        "share": 1.0,
        "started_at": NOW - 100,
        "candidate": model_update(2),
    }
    return RolloutState(**(values | changes))


def _champion(**changes: Any) -> VersionReading:
    values: dict[str, Any] = {
        "version": 1,
        "role": "champion",
        "scored": 500,
        "agreement": 1.0,
        "estimated_accuracy": 0.95,
    }
    return VersionReading(**(values | changes))


def _candidate(**changes: Any) -> VersionReading:
    values: dict[str, Any] = {
        "version": 2,
        "role": "candidate",
        "scored": 500,
        "agreement": 0.95,
        "class_psi": 0.01,
        "estimated_accuracy": 0.95,
    }
    return VersionReading(**(values | changes))


def _judge(state: RolloutState, candidate: VersionReading, **kw: Any) -> Any:
    champion = kw.pop("champion", _champion())
    return judge(
        state,
        champion,
        candidate,
        kw.pop("policy", POLICY),
        now=kw.pop("now", NOW),
        stage_started_at=kw.pop("stage_started_at", NOW - 60),
    )


def test_a_good_shadow_enters_canary_at_the_policy_share() -> None:
    verdict = _judge(_state(), _candidate())
    assert verdict.stage == RolloutStage.CANARY
    assert verdict.share == POLICY.canary_share
    assert verdict.numbers["agreement"] == 0.95


def test_a_good_canary_is_promoted_once_it_served_enough_answers() -> None:
    state = _state(RolloutStage.CANARY)
    assert _judge(state, _candidate(served=99)) is None
    assert _judge(state, _candidate(served=100)).stage == RolloutStage.PROMOTED


def test_no_step_before_enough_samples_or_time() -> None:
    assert _judge(_state(), _candidate(scored=99)) is None
    assert _judge(_state(), _candidate(), stage_started_at=NOW - 9) is None


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"errors": 10, "scored": 490}, "error rate"),
        ({"agreement": 0.5}, "agreement"),
        ({"class_psi": 0.9}, "PSI"),
        ({"estimated_accuracy": 0.89}, "estimated accuracy"),
    ],
)
def test_a_candidate_crossing_a_rollback_threshold_is_rolled_back(
    changes: dict[str, Any], words: str
) -> None:
    verdict = _judge(_state(RolloutStage.CANARY), _candidate(served=50, **changes))
    assert verdict.stage == RolloutStage.ROLLED_BACK
    assert words in verdict.reason


def test_labels_decide_over_the_estimate_once_there_are_enough() -> None:
    worse = _candidate(labeled=20, accuracy=0.80, estimated_accuracy=0.99)
    champion = _champion(labeled=20, accuracy=0.96)
    verdict = _judge(_state(), worse, champion=champion)
    assert verdict.stage == RolloutStage.ROLLED_BACK
    assert verdict.reason.startswith("accuracy 0.800")
    few = _candidate(labeled=19, accuracy=0.80, estimated_accuracy=0.95)
    assert _judge(_state(), few, champion=champion).stage == RolloutStage.CANARY


def test_with_labels_agreement_is_not_required_to_pass() -> None:
    better = _candidate(labeled=30, accuracy=0.97, agreement=0.8)
    champion = _champion(labeled=30, accuracy=0.90)
    assert _judge(_state(), better, champion=champion).stage == RolloutStage.CANARY
    unlabeled = _candidate(agreement=0.8)
    assert _judge(_state(), unlabeled) is None


def test_the_estimate_within_tolerance_passes_and_below_it_waits() -> None:
    assert _judge(_state(), _candidate(estimated_accuracy=0.93)).stage == RolloutStage.CANARY
    assert _judge(_state(), _candidate(estimated_accuracy=0.92)) is None


def test_a_canary_that_spent_its_budget_without_a_verdict_is_rolled_back() -> None:
    undecided = _candidate(served=300, agreement=0.8)
    verdict = _judge(_state(RolloutStage.CANARY), undecided, stage_started_at=NOW)
    assert verdict.stage == RolloutStage.ROLLED_BACK
    assert "budget of 300" in verdict.reason


def test_the_budget_is_checked_before_min_samples_and_stage_time() -> None:
    policy = POLICY.model_copy(update={"min_samples": 1000})
    bad = _candidate(served=300, scored=300, agreement=0.3)
    verdict = _judge(_state(RolloutStage.CANARY), bad, policy=policy, stage_started_at=NOW)
    assert verdict.stage == RolloutStage.ROLLED_BACK
    assert "agreement" in verdict.reason


def test_a_rollout_that_outlives_its_maximum_duration_is_rolled_back() -> None:
    verdict = _judge(_state(started_at=NOW - 601), _candidate(scored=1))
    assert verdict.stage == RolloutStage.ROLLED_BACK
    assert "max_duration_seconds" in verdict.reason


def test_a_manual_rollout_is_left_alone_until_its_maximum_duration() -> None:
    bad = _candidate(agreement=0.1)
    assert _judge(_state(automatic=False), bad) is None
    late = _judge(_state(automatic=False, started_at=NOW - 601), bad)
    assert late.stage == RolloutStage.ROLLED_BACK


def test_an_ended_rollout_is_not_judged() -> None:
    ended = _state(RolloutStage.ROLLED_BACK, candidate=None)
    assert _judge(ended, _candidate(agreement=0.1)) is None


def test_error_rate_counts_refusals_per_request_seen() -> None:
    assert error_rate(_candidate(errors=1, scored=99)) == pytest.approx(0.01)
    assert error_rate(_candidate(errors=0, scored=0)) == 0.0


def test_the_readme_states_every_policy_threshold_with_its_real_default() -> None:
    """README, "The policy": each ``name`` (value) it quotes is the default of RolloutSettings
    and the value params.yaml ships, and every threshold the policy reads is quoted."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### The policy", 1)[1].split("\n### ", 1)[0]
    quoted = {
        name: float(value)
        for name, value in re.findall(r"`(?:rollout\.)?([a-z_]+)` \(([0-9.]+)[ )]", section)
    }
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())["rollout"]
    defaults = RolloutSettings()
    for name, value in quoted.items():
        assert getattr(defaults, name) == value, name
        assert shipped[name] == value, name
    read_by_the_policy = set(RolloutSettings.model_fields) - {
        "challenger_entry",
        "shadow_share",
        "canary_share",
    }
    assert read_by_the_policy <= set(quoted), sorted(read_by_the_policy - set(quoted))
