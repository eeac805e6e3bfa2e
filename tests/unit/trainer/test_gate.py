"""The champion/challenger gate."""

from __future__ import annotations

import numpy as np
import pytest

from tests.factories import fitted_pipeline, iris_xy
from trainer.gate import MIN_HOLDOUT, GateDecision, judge, split_recent


class Constant:
    """A model that always answers the same label (a bad challenger)."""

    def __init__(self, label: str) -> None:
        self.label = label

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.label)


def test_a_challenger_no_worse_than_the_champion_is_promoted() -> None:
    x, y = iris_xy()
    decision = judge(fitted_pipeline(), fitted_pipeline("naive_bayes"), x, y, tolerance=0.05)
    assert decision.promoted
    assert decision.challenger_score is not None
    assert decision.champion_score is not None
    assert decision.challenger_score >= decision.champion_score - 0.05


def test_a_worse_challenger_is_rejected_with_its_numbers() -> None:
    x, y = iris_xy()
    decision = judge(Constant("setosa"), fitted_pipeline(), x, y, tolerance=0.02)
    assert not decision.promoted
    assert decision.champion_score is not None
    assert decision.champion_score > 0.9
    assert "<" in decision.reason


def test_with_no_live_model_the_challenger_is_promoted() -> None:
    x, y = iris_xy()
    assert judge(Constant("setosa"), None, x, y, tolerance=0.0).promoted


def test_too_few_held_out_labels_cannot_replace_a_champion_unless_asked_by_a_person() -> None:
    x, y = iris_xy()
    few_x, few_y = x[: MIN_HOLDOUT - 1], y[: MIN_HOLDOUT - 1]
    assert not judge(fitted_pipeline(), fitted_pipeline(), few_x, few_y, tolerance=0.0).promoted
    assert judge(
        fitted_pipeline(), fitted_pipeline(), few_x, few_y, tolerance=0.0, manual=True
    ).promoted


def test_the_recent_window_split_is_seeded_and_disjoint() -> None:
    train, held = split_recent(100, holdout_fraction=0.3, random_state=1)
    again_train, again_held = split_recent(100, holdout_fraction=0.3, random_state=1)
    assert len(held) == 30
    assert len(train) == 70
    assert not set(train) & set(held)
    assert (held == again_held).all()
    assert (train == again_train).all()


# ------------------------------------------------------------------------- the tolerance

# Sixteen held-out labels; ``SCRIPTED_075`` gets 6 of 8 right in each class, so its macro-F1
# is exactly 0.75 (precision = recall = 3/4 per class; every step is exact in binary floating
# point), against a perfect champion's 1.0: it is worse by exactly 0.25.
HELD_Y = np.array(["a"] * 8 + ["b"] * 8)
HELD_X = np.arange(16, dtype=np.float64).reshape(-1, 1)
SCRIPTED_075 = np.array(["a"] * 6 + ["b"] * 2 + ["b"] * 6 + ["a"] * 2)


class Scripted:
    """Answers ``answers`` for the held-out rows, and remembers which rows it was asked about."""

    def __init__(self, answers: np.ndarray) -> None:
        self.answers = answers
        self.asked: list[np.ndarray] = []

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.asked.append(x.copy())
        return self.answers[x[:, 0].astype(int)]


def _judge(tolerance: float) -> GateDecision:
    return judge(Scripted(SCRIPTED_075), Scripted(HELD_Y), HELD_X, HELD_Y, tolerance=tolerance)


def test_the_scripted_challenger_is_worse_than_the_champion_by_exactly_a_quarter() -> None:
    decision = _judge(0.0)
    assert (decision.challenger_score, decision.champion_score) == (0.75, 1.0)


@pytest.mark.parametrize(
    ("tolerance", "promoted"),
    [
        (0.0, False),
        (0.2, False),  # worse by more than the tolerance
        (0.249, False),
        (0.25, True),  # worse by exactly the tolerance: "not worse by more than tolerance"
        (0.3, True),  # worse by less than the tolerance
    ],
)
def test_a_challenger_goes_live_only_if_not_worse_than_the_champion_by_more_than_tolerance(
    tolerance: float, promoted: bool
) -> None:
    decision = _judge(tolerance)
    assert decision.promoted is promoted, decision.reason
    assert decision.tolerance == tolerance
    assert (decision.challenger_score, decision.champion_score) == (0.75, 1.0)


def test_challenger_and_champion_are_scored_on_the_same_held_out_rows() -> None:
    challenger, champion = Scripted(SCRIPTED_075), Scripted(HELD_Y)
    judge(challenger, champion, HELD_X, HELD_Y, tolerance=0.02)
    (asked_challenger,) = challenger.asked
    (asked_champion,) = champion.asked
    assert asked_challenger.tolist() == asked_champion.tolist() == HELD_X.tolist()


# ------------------------------------------------------------------ what a decision records

# A decision is appended to the registry's decision log with every field of GateDecision (see
# trainer/decisions.py): an operator reads there why a version went live or did not, with the
# numbers. So each way out of ``judge`` must carry its reason, its scores, the tolerance it
# applied and the number of held-out labels it had.


def test_with_no_live_model_the_decision_records_the_challengers_score_and_why() -> None:
    decision = judge(Scripted(SCRIPTED_075), None, HELD_X, HELD_Y, tolerance=0.02)
    assert decision == GateDecision(
        promoted=True,
        reason="no model is live yet",
        challenger_score=0.75,  # scored on the holdout even with nothing to compare against
        champion_score=None,
        tolerance=0.02,
        holdout_size=16,
    )


def test_with_no_live_model_and_no_held_out_labels_there_is_no_score_to_record() -> None:
    challenger = Scripted(SCRIPTED_075)
    empty_x, empty_y = HELD_X[:0], HELD_Y[:0]
    decision = judge(challenger, None, empty_x, empty_y, tolerance=0.02)
    assert (decision.promoted, decision.challenger_score, decision.holdout_size) == (True, None, 0)
    assert challenger.asked == []


def test_a_holdout_of_exactly_the_minimum_is_enough_to_compare() -> None:
    """``MIN_HOLDOUT`` labels can tell two models apart: fewer cannot ("fewer than this")."""
    x, y = HELD_X[3 : 3 + MIN_HOLDOUT], HELD_Y[3 : 3 + MIN_HOLDOUT]
    decision = judge(Scripted(SCRIPTED_075), Scripted(HELD_Y), x, y, tolerance=0.0)
    assert decision.holdout_size == MIN_HOLDOUT
    assert decision.challenger_score is not None
    assert decision.champion_score == 1.0
    assert "held-out labels" not in decision.reason


def test_too_few_held_out_labels_are_a_refusal_that_says_how_many_it_had_and_needed() -> None:
    few = MIN_HOLDOUT - 1
    challenger, champion = Scripted(SCRIPTED_075), Scripted(HELD_Y)
    decision = judge(challenger, champion, HELD_X[:few], HELD_Y[:few], tolerance=0.05)
    assert decision == GateDecision(
        promoted=False,
        reason=f"only {few} held-out labels (need {MIN_HOLDOUT}) to compare",
        challenger_score=None,
        champion_score=None,
        tolerance=0.05,
        holdout_size=few,
    )
    assert decision.promoted is False
    assert challenger.asked == champion.asked == []  # not scored: too few to mean anything


def test_a_manual_promotion_over_too_few_labels_says_so_in_its_reason() -> None:
    few = MIN_HOLDOUT - 1
    decision = judge(
        Scripted(SCRIPTED_075),
        Scripted(HELD_Y),
        HELD_X[:few],
        HELD_Y[:few],
        tolerance=0.05,
        manual=True,
    )
    assert decision == GateDecision(
        promoted=True,
        reason=(
            f"only {few} held-out labels (need {MIN_HOLDOUT}) to compare; "
            "promoted on manual request"
        ),
        challenger_score=None,
        champion_score=None,
        tolerance=0.05,
        holdout_size=few,
    )


@pytest.mark.parametrize(
    ("tolerance", "promoted", "reason"),
    [
        (0.25, True, "challenger macro-F1 0.7500 >= champion 1.0000 - 0.25"),
        (0.1, False, "challenger macro-F1 0.7500 < champion 1.0000 - 0.1"),
    ],
)
def test_a_compared_decision_states_both_scores_and_the_tolerance_in_its_reason(
    tolerance: float, promoted: bool, reason: str
) -> None:
    assert _judge(tolerance) == GateDecision(
        promoted=promoted,
        reason=reason,
        challenger_score=0.75,
        champion_score=1.0,
        tolerance=tolerance,
        holdout_size=16,
    )


def test_a_decision_is_recorded_as_a_plain_dict_of_its_fields() -> None:
    assert _judge(0.25).as_dict() == {
        "promoted": True,
        "reason": "challenger macro-F1 0.7500 >= champion 1.0000 - 0.25",
        "challenger_score": 0.75,
        "champion_score": 1.0,
        "tolerance": 0.25,
        "holdout_size": 16,
    }
