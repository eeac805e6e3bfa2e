"""The champion/challenger gate."""

from __future__ import annotations

import numpy as np

from tests.factories import fitted_pipeline, iris_xy
from trainer.gate import MIN_HOLDOUT, judge, split_recent


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
