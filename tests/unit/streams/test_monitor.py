"""The drift monitor's own decisions, with synthetic data and a clock the test moves: which
detectors a model version gets, how a big batch is thinned, and when a detection is an alarm.

The detectors themselves are tested in test_drift.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from irisflow.schemas import FeatureStats, ModelMetadata
from irisflow.settings import DriftSettings
from streams.drift import DecileKS, MeanShift
from streams.monitor import PERFORMANCE, PREDICTION, Alarm, DriftMonitor

FEATURES = ["a", "b", "c"]
DECILES = [float(q) for q in np.quantile(np.arange(1000) / 1000, np.linspace(0.1, 0.9, 9))]


def _stats(*, deciles: bool = True) -> FeatureStats:
    """A feature uniform on [0, 1)."""
    return FeatureStats(mean=0.5, std=0.29, min=0.0, max=1.0, quantiles=DECILES if deciles else [])


def _metadata(stats: dict[str, FeatureStats] | None = None) -> ModelMetadata:
    return ModelMetadata(
        model_name="m",
        version=3,
        algorithm="test",
        feature_names=FEATURES,
        class_labels=["x", "y"],
        reference_stats=stats if stats is not None else {name: _stats() for name in FEATURES},
        class_prior={"x": 0.5, "y": 0.5},
        sha256="0" * 64,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _rows(count: int, *, shifted: str | None = None, seed: int = 0) -> np.ndarray:
    """Rows like the reference (uniform on [0, 1)), with one feature moved far out if asked."""
    rows = np.random.default_rng(seed).random((count, len(FEATURES)))
    if shifted is not None:
        rows[:, FEATURES.index(shifted)] += 5.0
    return rows


def _detector(monitor: DriftMonitor, feature: str, name: str) -> MeanShift | DecileKS:
    (found,) = [d for f, ds in monitor.features for d in ds if f == feature and d.name == name]
    return found


def test_a_version_gets_detectors_for_what_its_reference_statistics_allow() -> None:
    stats = {"b": _stats(deciles=False), "c": _stats()}  # "a" has none
    monitor = DriftMonitor(_metadata(stats), DriftSettings(window=50), clock=Clock())
    assert monitor.version == 3
    assert [(f, [d.name for d in ds]) for f, ds in monitor.features] == [
        ("a", []),
        ("b", ["adwin"]),
        ("c", ["adwin", "ks"]),
    ]
    alarms = monitor.update_features(_rows(50, shifted="c"))  # columns stay in feature order
    assert [(a.feature, a.detector) for a in alarms] == [("c", "ks")]


def test_the_drift_settings_reach_every_detector() -> None:
    settings = DriftSettings(
        adwin_delta=0.01, window=60, ks_threshold=0.3, prediction_psi_threshold=0.5
    )
    monitor = DriftMonitor(_metadata(), settings, clock=Clock())
    readings = {(r.feature, r.detector): r.threshold for r in monitor.readings()}
    assert readings[("a", "ks")] == 0.3
    assert readings[(PREDICTION, "psi")] == 0.5
    assert _detector(monitor, "a", "adwin").threshold == 0.01
    assert monitor.errors.threshold == 0.01
    monitor.update_features(_rows(100))
    monitor.update_predictions(["x", "y"] * 50)
    assert _detector(monitor, "a", "ks").window == 60
    assert monitor.prediction is not None
    assert monitor.prediction.window == 60


def test_readings_report_each_detectors_current_statistic() -> None:
    monitor = DriftMonitor(_metadata(), DriftSettings(window=50), clock=Clock())
    monitor.update_features(_rows(100, shifted="b"))
    monitor.update_predictions(["x"] * 50)
    monitor.update_errors([True, False] * 50)
    statistics = {(r.feature, r.detector): r.statistic for r in monitor.readings()}
    for feature, detectors in monitor.features:
        for detector in detectors:
            assert statistics[(feature, detector.name)] == detector.statistic
    assert monitor.prediction is not None
    assert statistics[(PREDICTION, "psi")] == monitor.prediction.statistic
    assert statistics[(PERFORMANCE, "adwin")] == monitor.errors.statistic == 0.5
    assert statistics[("b", "ks")] > 0.5 > statistics[("a", "ks")]


def test_a_big_batch_is_thinned_to_max_rows_evenly_spaced() -> None:
    settings = DriftSettings(window=1000, max_rows_per_batch=100)
    monitor = DriftMonitor(_metadata(), settings, clock=Clock())
    rows = _rows(250)
    monitor.update_features(rows)  # 250 rows > 100: every 3rd row, 84 of them
    reference = DecileKS(deciles=DECILES, window=1000, threshold=0.15)
    reference.update_many(rows[::3, 0])
    ks = _detector(monitor, "a", "ks")
    assert ks.window == 84
    assert ks.statistic == reference.statistic
    assert _detector(monitor, "a", "adwin").window == 84
    monitor.update_features(_rows(100))  # exactly max rows: all of them
    assert ks.window == 184
    monitor.update_features(_rows(101))  # one more: every 2nd
    assert ks.window == 235
    monitor.update_predictions(["x", "y", "x"] * 100)  # predictions too: 300 -> every 3rd
    assert monitor.prediction is not None
    assert monitor.prediction.window == 100


def test_errors_of_joined_samples_are_all_counted() -> None:
    """Labeled samples are few; none is thinned away."""
    monitor = DriftMonitor(_metadata(), DriftSettings(max_rows_per_batch=10), clock=Clock())
    monitor.update_errors([False] * 300)
    assert monitor.errors.window == 300


def test_an_alarm_carries_the_detectors_statistic_threshold_and_window() -> None:
    monitor = DriftMonitor(_metadata(), DriftSettings(window=50), clock=Clock())
    (alarm,) = [a for a in monitor.update_features(_rows(50, shifted="a")) if a.detector == "ks"]
    ks = _detector(monitor, "a", "ks")
    assert alarm == Alarm("a", "ks", ks.statistic, 0.15, 50)
    assert alarm.statistic > 0.15


def test_a_detection_inside_the_cooldown_is_no_alarm_and_one_at_its_end_is() -> None:
    clock = Clock()
    monitor = DriftMonitor(_metadata(), DriftSettings(window=50, cooldown_seconds=60), clock=clock)

    def ks_alarms() -> list[str]:
        alarms = monitor.update_features(_rows(50, shifted="a"))
        return [a.feature for a in alarms if a.detector == "ks"]

    clock.now = 100.0
    assert ks_alarms() == ["a"]
    clock.now = 159.9
    assert ks_alarms() == []  # still drifting, but within a minute of the last alarm
    clock.now = 160.0
    assert ks_alarms() == ["a"]
    clock.now = 219.9  # the cooldown counts from the last alarm
    assert ks_alarms() == []


def test_a_cooldown_silences_only_its_own_feature_and_detector() -> None:
    clock = Clock()
    monitor = DriftMonitor(_metadata(), DriftSettings(window=50, cooldown_seconds=60), clock=clock)
    first = monitor.update_features(_rows(50, shifted="a"))
    assert ("a", "ks") in {(a.feature, a.detector) for a in first}
    clock.now = 1.0
    rows = _rows(50, shifted="b", seed=1)
    rows[:, 0] += 5.0  # "a" still drifts, "b" starts to
    second = monitor.update_features(rows)
    assert ("b", "ks") in {(a.feature, a.detector) for a in second}
    assert "a" not in {a.feature for a in second}


def test_a_new_version_gets_a_fresh_cooldown() -> None:
    clock = Clock()
    settings = DriftSettings(window=50, cooldown_seconds=60)
    old = DriftMonitor(_metadata(), settings, clock=clock)
    assert old.update_features(_rows(50, shifted="a"))
    new = DriftMonitor(_metadata(), settings, clock=clock)
    assert {a.feature for a in new.update_features(_rows(50, shifted="a"))} == {"a"}


@pytest.mark.parametrize("cooldown", [0.0, 60.0])
def test_empty_batches_raise_no_alarm_whatever_was_detected_before(cooldown: float) -> None:
    clock = Clock()
    settings = DriftSettings(window=50, cooldown_seconds=cooldown)
    monitor = DriftMonitor(_metadata(), settings, clock=clock)
    assert monitor.update_features(_rows(50, shifted="a"))
    assert monitor.update_predictions(["x"] * 50)
    rng = np.random.default_rng(2)
    monitor.update_errors((rng.random(2000) < 0.02).tolist())
    assert monitor.update_errors((rng.random(500) < 0.6).tolist())
    clock.now = 1000.0
    assert monitor.update_features(np.empty((0, len(FEATURES)))) == []
    assert monitor.update_predictions([]) == []
    assert monitor.update_errors([]) == []
