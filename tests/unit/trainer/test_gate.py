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
