"""The label-free monitor's decisions: which estimate, which threshold, and when a fall of the
estimate is an alarm (window full, below the version's CV accuracy minus the drop, cooldown).

A calibration that is the identity on [0.5, 1] makes each row's chance its confidence, so the
numbers in these tests can be read off directly.
"""

from __future__ import annotations

import pytest

from irisflow.schemas import Calibration, ModelMetadata
from irisflow.settings import DriftSettings
from streams.estimate import DETECTOR, FEATURE, LabelFreeMonitor
from streams.monitor import Alarm, Reading

IDENTITY = Calibration(confidence=[0.5, 1.0], accuracy=[0.5, 1.0], samples=100)
SETTINGS = DriftSettings(estimate_window=10, estimated_accuracy_drop=0.1, cooldown_seconds=60)


def _metadata(
    *, cv_accuracy: float | None = 0.95, calibration: Calibration | None = IDENTITY
) -> ModelMetadata:
    metrics = {"cv_f1_macro_mean": 0.99} | (
        {} if cv_accuracy is None else {"cv_accuracy": cv_accuracy}
    )
    return ModelMetadata(
        model_name="m",
        version=4,
        algorithm="test",
        feature_names=["a"],
        class_labels=["x", "y"],
        metrics=metrics,
        calibration=calibration,
        sha256="0" * 64,
    )


def _alarms(alarms: list[Alarm]) -> list[tuple[str, str, float, float, int]]:
    """Alarms as tuples with the floats rounded, so sums of floats compare exactly."""
    return [
        (a.feature, a.detector, round(a.statistic, 9), round(a.threshold, 9), a.window)
        for a in alarms
    ]


def _readings(readings: list[Reading]) -> list[tuple[str, str, float, float | None]]:
    return [
        (
            r.feature,
            r.detector,
            round(r.statistic, 9),
            None if r.threshold is None else round(r.threshold, 9),
        )
        for r in readings
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_threshold_is_the_versions_cv_accuracy_minus_the_drop() -> None:
    monitor = LabelFreeMonitor(_metadata(cv_accuracy=0.95), SETTINGS)
    assert monitor.version == 4
    assert monitor.threshold == pytest.approx(0.85)


def test_a_full_window_estimated_below_the_threshold_is_one_alarm_with_its_numbers() -> None:
    monitor = LabelFreeMonitor(_metadata(), SETTINGS, clock=Clock())
    assert monitor.update([0.95] * 10) == []
    assert monitor.estimate == pytest.approx(0.95)
    assert _alarms(monitor.update([0.7] * 10)) == [("accuracy", "cbpe", 0.7, 0.85, 10)]


def test_the_estimate_is_calibrated_not_the_raw_confidence() -> None:
    # The model says 0.9 but is right half the time at that confidence.
    halved = Calibration(confidence=[0.5, 1.0], accuracy=[0.0, 1.0], samples=100)
    monitor = LabelFreeMonitor(_metadata(calibration=halved), SETTINGS, clock=Clock())
    assert _alarms(monitor.update([0.75] * 10)) == [(FEATURE, DETECTOR, 0.5, 0.85, 10)]


def test_no_alarm_before_the_window_is_full_however_low_the_estimate() -> None:
    monitor = LabelFreeMonitor(_metadata(), SETTINGS, clock=Clock())
    assert monitor.update([0.5] * 9) == []
    assert monitor.estimate == pytest.approx(0.5)
    assert monitor.count == 9
    assert len(monitor.update([0.5])) == 1


def test_an_estimate_at_the_threshold_is_no_alarm() -> None:
    monitor = LabelFreeMonitor(_metadata(cv_accuracy=0.9), SETTINGS, clock=Clock())
    assert monitor.update([0.8] * 10) == []


def test_the_cooldown_silences_repeats_and_ends() -> None:
    clock = Clock()
    monitor = LabelFreeMonitor(_metadata(), SETTINGS, clock=clock)
    assert len(monitor.update([0.6] * 10)) == 1
    clock.now = 59.9
    assert monitor.update([0.6] * 10) == []
    clock.now = 60.0
    assert len(monitor.update([0.6] * 10)) == 1
    clock.now = 100.0  # counted from the last alarm, not the first
    assert monitor.update([0.6] * 10) == []


def test_a_version_without_cv_accuracy_is_estimated_but_never_alarms() -> None:
    monitor = LabelFreeMonitor(_metadata(cv_accuracy=None, calibration=None), SETTINGS)
    assert monitor.threshold is None
    assert monitor.update([0.55] * 10) == []
    assert monitor.estimate == pytest.approx(0.55)  # raw confidences without a calibration
    assert _readings(monitor.readings()) == [(FEATURE, DETECTOR, 0.55, None)]


def test_readings_show_the_estimate_and_threshold_once_a_row_is_seen() -> None:
    monitor = LabelFreeMonitor(_metadata(), SETTINGS)
    assert monitor.readings() == []
    assert monitor.estimate is None
    monitor.update([0.9, 1.0])
    assert _readings(monitor.readings()) == [(FEATURE, DETECTOR, 0.95, 0.85)]


def test_the_window_follows_the_drift_settings() -> None:
    monitor = LabelFreeMonitor(_metadata(), DriftSettings(estimate_window=25))
    monitor.update([0.6] * 30)
    assert monitor.count == 25
