"""Live accuracy and macro-F1 over a rolling window agree with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from streams.quality import LiveQuality, RollingScore


def test_rolling_scores_match_sklearn_on_the_last_window_of_samples() -> None:
    rng = np.random.default_rng(0)
    labels = np.array(["a", "b", "c", "d"])
    true = labels[rng.integers(4, size=1000)]
    predicted = np.where(rng.random(1000) < 0.7, true, labels[rng.integers(4, size=1000)])
    score = RollingScore(200)
    for t, p in zip(true, predicted, strict=True):
        score.update(str(t), str(p))
    assert len(score) == 200
    assert score.accuracy == pytest.approx(accuracy_score(true[-200:], predicted[-200:]))
    assert score.f1_macro == pytest.approx(f1_score(true[-200:], predicted[-200:], average="macro"))


def test_an_empty_window_scores_zero() -> None:
    assert (RollingScore(10).accuracy, RollingScore(10).f1_macro) == (0.0, 0.0)


def test_each_model_version_has_its_own_window_and_old_ones_are_dropped() -> None:
    quality = LiveQuality(window=10, versions=2)
    assert quality.update(1, "a", "a") == []
    assert quality.update(2, "a", "b") == []
    assert quality.update(1, "a", "a") == []  # version 1 is now the most recently labeled
    assert quality.update(3, "a", "a") == [2]
    assert quality.scores[1].accuracy == 1.0
    assert set(quality.scores) == {1, 3}
