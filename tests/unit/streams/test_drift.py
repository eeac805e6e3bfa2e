"""Drift detectors on seeded data with known change points, and the monitor around them."""

from __future__ import annotations

import numpy as np
import pytest

from irisflow.schemas import FeatureStats, ModelMetadata
from irisflow.settings import DriftSettings
from streams.drift import ClassFrequency, DecileKS, ErrorRate, MeanShift
from streams.monitor import PERFORMANCE, PREDICTION, DriftMonitor
from tests.factories import IRIS_FEATURES, iris_xy

CHANGE = 5000


def _first_detection(detector: MeanShift | DecileKS | ErrorRate, values: np.ndarray) -> int | None:
    for index, value in enumerate(values.tolist()):
        detector.update(value)
        if detector.drift_detected:
            return index
    return None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adwin_catches_a_one_std_mean_shift_soon_after_the_change_point(seed: int) -> None:
    rng = np.random.default_rng(seed)
    stream = np.concatenate([rng.normal(4.0, 0.5, CHANGE), rng.normal(4.5, 0.5, 2000)])
    found = _first_detection(MeanShift(mean=4.0, std=0.5), stream)
    assert found is not None
    assert CHANGE <= found < CHANGE + 200


def test_adwin_stays_quiet_on_twenty_thousand_stationary_samples() -> None:
    rng = np.random.default_rng(3)
    assert _first_detection(MeanShift(mean=0.0, std=1.0), rng.normal(0, 1, 20000)) is None


def test_adwin_reads_the_window_mean_in_reference_stds() -> None:
    detector = MeanShift(mean=10.0, std=2.0)
    detector.update_many([14.0] * 100)
    assert detector.statistic == pytest.approx(2.0)


def _deciles(values: np.ndarray) -> list[float]:
    return [float(q) for q in np.quantile(values, np.linspace(0.1, 0.9, 9))]


def test_ks_judges_only_a_full_window_then_catches_a_shift_within_it() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(0, 1, 10000)
    detector = DecileKS(deciles=_deciles(reference), window=500, threshold=0.15)
    detector.update_many(rng.normal(3, 1, 499))  # far off, but the window is not full yet
    assert not detector.drift_detected
    detector.update_many(rng.normal(0, 1, 2000))
    assert not detector.drift_detected
    assert detector.statistic < 0.08
    found = _first_detection(detector, rng.normal(1, 1, 500))
    assert found is not None
    assert 50 <= found < 300


def _brute_force_gap(window: np.ndarray, deciles: list[float]) -> float:
    levels = np.arange(1, len(deciles) + 1) / (len(deciles) + 1)
    below = np.array([(window < q).mean() for q in deciles])
    at_or_below = np.array([(window <= q).mean() for q in deciles])
    return float(np.maximum(np.maximum(below - levels, levels - at_or_below), 0).max())


def test_ks_keeps_exact_statistics_while_values_enter_and_leave_in_any_batch_sizes() -> None:
    rng = np.random.default_rng(12)
    deciles = _deciles(np.round(rng.normal(0, 1, 1000), 1))
    detector = DecileKS(deciles=deciles, window=100, threshold=0.5)
    seen: list[float] = []
    for size in [1, 7, 50, 93, 1, 100, 250, 3, 99, 64]:
        batch = np.round(rng.normal(rng.uniform(-1, 1), 1, size), 1)
        detector.update_many(batch)
        seen.extend(batch.tolist())
        expected = _brute_force_gap(np.asarray(seen[-100:]), deciles)
        assert detector.statistic == pytest.approx(expected)
        assert detector.window == min(100, len(seen))


@pytest.mark.parametrize("feature", range(4))
def test_ks_is_not_fooled_by_ties_in_discrete_features(feature: int) -> None:
    """Iris measures to 0.1 cm: many deciles sit on an atom. Replaying Iris is not drift."""
    x, _ = iris_xy()
    column = x[:, feature]
    detector = DecileKS(deciles=_deciles(column), window=500, threshold=0.15)
    rng = np.random.default_rng(feature)
    for _ in range(100):
        detector.update_many(column[rng.integers(len(column), size=50)])
        assert not detector.drift_detected
    detector.update_many(column[rng.integers(len(column), size=500)] + column.std())
    assert detector.drift_detected


def test_prediction_frequencies_that_leave_the_prior_raise_a_psi_alarm() -> None:
    rng = np.random.default_rng(5)
    prior = {"a": 0.5, "b": 0.3, "c": 0.2}
    detector = ClassFrequency(prior=prior, window=500, threshold=0.2)
    stationary = rng.choice(list(prior), size=5000, p=list(prior.values())).tolist()
    for label in stationary:
        detector.update(label)
        assert not detector.drift_detected
    shifted = rng.choice(["a", "b", "c"], size=500, p=[0.1, 0.3, 0.6]).tolist()
    found = None
    for index, label in enumerate(shifted):
        detector.update(label)
        if detector.drift_detected:
            found = index
            break
    assert found is not None
    assert 50 <= found < 400
    assert detector.statistic > 0.2


def test_the_error_rate_detector_alarms_when_errors_rise_and_not_when_they_fall() -> None:
    rng = np.random.default_rng(6)
    rising = ErrorRate()
    found = _first_detection(
        rising, np.concatenate([rng.random(CHANGE) < 0.03, rng.random(2000) < 0.3])
    )
    assert found is not None
    assert CHANGE <= found < CHANGE + 300
    falling = ErrorRate()
    stream = np.concatenate([rng.random(CHANGE) < 0.3, rng.random(2000) < 0.03])
    assert _first_detection(falling, stream) is None


def _metadata(version: int = 1, *, with_prior: bool = True) -> ModelMetadata:
    x, y = iris_xy()
    stats = {
        name: FeatureStats(
            mean=float(col.mean()),
            std=float(col.std()),
            min=float(col.min()),
            max=float(col.max()),
            quantiles=_deciles(col),
        )
        for name, col in zip(IRIS_FEATURES, x.T, strict=True)
    }
    labels, counts = np.unique(y, return_counts=True)
    return ModelMetadata(
        model_name="iris",
        version=version,
        algorithm="test",
        feature_names=IRIS_FEATURES,
        class_labels=[str(c) for c in labels],
        reference_stats=stats,
        class_prior=(
            {str(c): float(n / counts.sum()) for c, n in zip(labels, counts, strict=True)}
            if with_prior
            else {}
        ),
        sha256="0" * 64,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _iris_rows(rng: np.random.Generator, count: int) -> np.ndarray:
    x, _ = iris_xy()
    return x[rng.integers(len(x), size=count)]


def test_the_monitor_names_the_drifting_feature_and_only_that_one() -> None:
    monitor = DriftMonitor(_metadata(), DriftSettings(cooldown_seconds=60), clock=Clock())
    rng = np.random.default_rng(7)
    quiet = [monitor.update_features(_iris_rows(rng, 50)) for _ in range(40)]
    assert not [a for alarms in quiet for a in alarms]
    drifted = []
    for _ in range(20):
        rows = _iris_rows(rng, 50)
        rows[:, 1] += 1.5 * rows[:, 1].std()  # sepal_width
        drifted += monitor.update_features(rows)
    assert {a.feature for a in drifted} == {"sepal_width"}
    assert {a.detector for a in drifted} == {"adwin", "ks"}


def test_an_alarm_is_an_event_not_a_flood_until_the_cooldown_is_over() -> None:
    clock = Clock()
    monitor = DriftMonitor(_metadata(), DriftSettings(cooldown_seconds=60), clock=clock)
    rng = np.random.default_rng(8)
    monitor.update_features(_iris_rows(rng, 500))
    shifted = [_iris_rows(rng, 50) + 2.0 for _ in range(30)]
    ks_alarms = [
        a for rows in shifted[:20] for a in monitor.update_features(rows) if a.detector == "ks"
    ]
    assert len({a.feature for a in ks_alarms}) == 4
    assert len(ks_alarms) == 4  # one per feature although the statistic stays above threshold
    clock.now = 61.0
    again = [
        a for rows in shifted[20:] for a in monitor.update_features(rows) if a.detector == "ks"
    ]
    assert len(again) == 4


def test_prediction_and_error_rate_alarms_carry_their_pseudo_features() -> None:
    monitor = DriftMonitor(_metadata(), DriftSettings(window=100), clock=Clock())
    assert not monitor.update_predictions(["setosa", "versicolor", "virginica"] * 40)
    alarms = monitor.update_predictions(["setosa"] * 100)
    assert [(a.feature, a.detector) for a in alarms] == [(PREDICTION, "psi")]
    rng = np.random.default_rng(9)
    assert not monitor.update_errors((rng.random(2000) < 0.02).tolist())
    errors = monitor.update_errors((rng.random(500) < 0.5).tolist())
    assert [(a.feature, a.detector) for a in errors] == [(PERFORMANCE, "adwin")]


def test_without_a_class_prior_there_is_no_prediction_detector() -> None:
    monitor = DriftMonitor(_metadata(with_prior=False), DriftSettings(), clock=Clock())
    assert monitor.update_predictions(["setosa"] * 1000) == []
    assert PREDICTION not in {r.feature for r in monitor.readings()}


def test_readings_cover_every_feature_and_detector_with_thresholds_where_fixed() -> None:
    monitor = DriftMonitor(_metadata(), DriftSettings(ks_threshold=0.2), clock=Clock())
    readings = {(r.feature, r.detector): r.threshold for r in monitor.readings()}
    for name in IRIS_FEATURES:
        assert readings[(name, "ks")] == 0.2
        assert readings[(name, "adwin")] is None
    assert readings[(PREDICTION, "psi")] == 0.2
    assert readings[(PERFORMANCE, "adwin")] is None
