"""The label-free accuracy estimate tracks realised accuracy under drift, on Iris and wine.

Models and calibrations are the trainer's (``train_on`` with each example's params, narrowed
to one algorithm); traffic is the boundary shift of tests/label_free.py (a covariate shift
that keeps P(y|x), stronger and stronger toward the boundary between classes); rows are
streamed in micro-batches through the window a worker keeps (``drift.estimate_window`` = 500
rows), and each full window's estimate is compared with the accuracy of those same rows.

Stated tolerance (README, "Label-free performance estimate"), over every window of every
strength while the realised accuracy falls from ~0.97 to ~0.82 (Iris) and ~0.99 to ~0.90
(wine): mean absolute error at most 0.04 and no window off by more than 0.10. Measured at these
seeds: mean 0.013-0.016 per model, worst window 0.030-0.065; over nine seeds of the traffic
(three pools, three draws each) per model: mean at most 0.021, worst window 0.068.

Outside that range the estimate overstates accuracy (known limits, pinned below): traffic
far into regions the training rows barely cover, and inputs pushed where the model is
confidently wrong (a feature biased by several standard deviations, the project's own
``irisflow produce --drift-shift`` scenario), which changes P(y|x) itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from irisflow.estimation import CV_ACCURACY, AccuracyEstimate
from irisflow.settings import DriftSettings, load_settings
from producers.samples import load_samples
from producers.traffic import Scenario, plan_traffic
from streams.estimate import LabelFreeMonitor
from streams.monitor import Alarm
from tests.label_free import (
    EXAMPLES,
    BoundaryShift,
    Window,
    boundary_shift,
    stream,
    train_example,
)
from trainer.publish import build_update
from trainer.training import TrainingOutcome

WINDOW = DriftSettings().estimate_window
STRENGTHS = {"iris": [0.0, 1.0, 2.0, 3.0, 4.0], "wine": [0.0, 2.0, 4.0, 6.0]}
"""Per example, up to the shift at which the realised accuracy has fallen by about 0.1-0.15."""
MEAN_TOLERANCE = 0.04
WINDOW_TOLERANCE = 0.10


@pytest.fixture(params=["iris", "wine"])
def shift(request: pytest.FixtureRequest) -> tuple[str, BoundaryShift]:
    example = str(request.param)
    return example, boundary_shift(example)


@pytest.mark.parametrize("algorithm", ["logistic_regression", "random_forest"])
def test_the_estimate_tracks_realised_accuracy_under_a_shift_toward_the_class_boundary(
    shift: tuple[str, BoundaryShift], algorithm: str
) -> None:
    example, traffic = shift
    outcome = train_example(example, algorithm)
    strengths = STRENGTHS[example]
    windows = stream(outcome, traffic, strengths, windows=4, window_rows=WINDOW)

    def mean(values: list[Window], strength: float, field: str) -> float:
        return float(np.mean([getattr(w, field) for w in values if w.strength == strength]))

    errors = np.abs([w.error for w in windows])
    detail = [(w.strength, round(w.estimate, 3), round(w.realised, 3)) for w in windows]
    # The scenario is a real drift: accuracy falls, and the estimate falls with it (a constant
    # estimate could pass the tolerances on wine, whose accuracy falls by only ~0.09). It
    # falls by 0.8-1.05 of the realised drop for Iris logistic regression, 0.6-0.75 for Iris
    # random forest, 0.3-0.8 on wine (measured over nine seeds): it lags, hence a quarter.
    realised_drop = mean(windows, strengths[0], "realised") - mean(
        windows, strengths[-1], "realised"
    )
    estimate_drop = mean(windows, strengths[0], "estimate") - mean(
        windows, strengths[-1], "estimate"
    )
    assert realised_drop > 0.05, detail
    assert estimate_drop > realised_drop / 4, detail
    assert errors.mean() <= MEAN_TOLERANCE, detail
    assert errors.max() <= WINDOW_TOLERANCE, detail


def test_far_into_regions_the_training_rows_barely_cover_the_estimate_overstates() -> None:
    """A known limit, not a success: the calibration holds where the training rows were. Wine's
    classes are far apart, so the rows near its class boundaries are few; a shift strong
    enough to bring the accuracy to ~0.8 leaves the estimate near 0.9."""
    outcome = train_example("wine", "logistic_regression")
    windows = stream(outcome, boundary_shift("wine"), [8.0], windows=4, window_rows=WINDOW)
    realised = np.mean([w.realised for w in windows])
    estimate = np.mean([w.estimate for w in windows])
    assert realised < 0.85
    assert estimate - realised > 0.05


@pytest.fixture
def iris_logistic() -> TrainingOutcome:
    return train_example("iris", "logistic_regression")


def test_the_published_version_alarms_on_the_shift_and_not_on_steady_traffic(
    iris_logistic: TrainingOutcome,
) -> None:
    """The worker's monitor on the metadata the trainer publishes (calibration and
    cv_accuracy), with the default drift settings: 5,000 rows of unshifted traffic raise
    nothing; once traffic moves toward the boundary (realised accuracy ~0.75) it alarms."""
    update = build_update(iris_logistic, model_name="iris", version=1, parent=None, trigger="t")
    monitor = LabelFreeMonitor(update, DriftSettings())
    traffic = boundary_shift("iris")
    rng = np.random.default_rng(3)

    def feed(strength: float, rows: int) -> list[Alarm]:
        x, _ = traffic.draw(rows, strength, rng)
        confidences = iris_logistic.model.predict_proba(x).max(axis=1)
        return [
            a
            for start in range(0, rows, 50)
            for a in monitor.update(confidences[start : start + 50])
        ]

    assert feed(0.0, 5000) == []
    assert monitor.estimate is not None
    assert monitor.threshold is not None
    assert monitor.estimate > monitor.threshold + 0.05
    alarms = feed(5.0, 2 * WINDOW)
    assert [(a.feature, a.detector) for a in alarms] == [("accuracy", "cbpe")]


def test_a_feature_biased_by_three_stds_is_invisible_to_the_estimate(
    iris_logistic: TrainingOutcome,
) -> None:
    """A known limit, not a success: ``irisflow produce --drift-feature petal_width`` moves
    one feature by three standard deviations and keeps each row's label, which changes P(y|x):
    the model answers "virginica" with high confidence for setosa and versicolor rows, so the
    estimate stays near its baseline (no label-free alarm) while the realised accuracy falls.
    The feature detectors and, once labels arrive, the measured accuracy are what see it."""
    samples = load_samples(load_settings(EXAMPLES["iris"], environ={}))
    planned = list(
        plan_traffic(
            samples,
            Scenario(count=WINDOW, seed=5, drift_feature="petal_width", drift_shift=3.0),
        )
    )
    x = np.array([[r.features[name] for name in iris_logistic.feature_names] for r in planned])
    truth = np.array([r.true_label for r in planned])
    probabilities = iris_logistic.model.predict_proba(x)
    realised = float(np.mean(iris_logistic.model.classes_[probabilities.argmax(axis=1)] == truth))
    estimate = AccuracyEstimate(iris_logistic.calibration, WINDOW)
    value = estimate.update(probabilities.max(axis=1))
    assert value is not None
    baseline = iris_logistic.metrics[CV_ACCURACY]
    assert realised < baseline - 0.2
    assert value > baseline - DriftSettings().estimated_accuracy_drop  # no alarm
