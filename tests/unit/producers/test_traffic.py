"""Traffic scenarios: reproducible, drift in exactly one feature, delayed and noisy labels."""

from __future__ import annotations

import numpy as np
import pytest

from irisflow.errors import ConfigError
from irisflow.settings import Settings
from producers.samples import load_samples
from producers.traffic import Scenario, plan_traffic

SAMPLES = load_samples(Settings())


def test_the_same_seed_plans_the_same_traffic() -> None:
    first = list(plan_traffic(SAMPLES, Scenario(count=50, seed=3, feedback_rate=0.5)))
    again = list(plan_traffic(SAMPLES, Scenario(count=50, seed=3, feedback_rate=0.5)))
    assert first == again
    assert first != list(plan_traffic(SAMPLES, Scenario(count=50, seed=4, feedback_rate=0.5)))


def test_drift_shifts_one_feature_from_the_given_request_on() -> None:
    plain = list(plan_traffic(SAMPLES, Scenario(count=200, seed=1)))
    drifted = list(
        plan_traffic(
            SAMPLES,
            Scenario(
                count=200, seed=1, drift_feature="petal_length", drift_shift=3.0, drift_after=100
            ),
        )
    )
    std = float(SAMPLES.rows[:, 2].std())
    for before, after in zip(plain, drifted, strict=True):
        delta = after.features["petal_length"] - before.features["petal_length"]
        assert delta == pytest.approx(3.0 * std if before.index >= 100 else 0.0)
        assert after.features["sepal_width"] == before.features["sepal_width"]
    assert sum(p.drifted for p in drifted) == 100


def test_noisy_feedback_mislabels_about_the_requested_share() -> None:
    planned = list(
        plan_traffic(SAMPLES, Scenario(count=4000, seed=2, feedback_rate=1.0, label_noise=0.2))
    )
    wrong = np.mean([p.feedback_label != p.true_label for p in planned])
    assert 0.17 < wrong < 0.23


def test_feedback_rate_controls_how_many_requests_get_a_label() -> None:
    planned = list(plan_traffic(SAMPLES, Scenario(count=2000, seed=5, feedback_rate=0.25)))
    share = np.mean([p.feedback_label is not None for p in planned])
    assert 0.22 < share < 0.28


def test_an_unknown_drift_feature_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"colour.*sepal_length"):
        list(plan_traffic(SAMPLES, Scenario(count=1, drift_feature="colour")))
