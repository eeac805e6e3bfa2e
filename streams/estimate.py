"""Label-free performance drift: an alarm when the live version's estimated accuracy falls.

Labels arrive late or never; the error-rate detector of :class:`~streams.monitor.DriftMonitor`
waits for them. This monitor needs none: it keeps the CBPE-style estimate
(:class:`irisflow.estimation.AccuracyEstimate`, the mean calibrated top-class probability of
the last ``drift.estimate_window`` scored rows) and raises an :class:`~streams.monitor.Alarm`
(feature ``accuracy``, detector ``cbpe``) once the window is full and the estimate is more
than ``drift.estimated_accuracy_drop`` below the version's cross-validated accuracy
(``metrics["cv_accuracy"]``, the estimate on traffic like the training data).

It sees inputs moving where the model is unsure (toward the boundary between classes); it does
not see a change of what the right answer is, nor inputs the model is confidently wrong about
(README, "Label-free performance estimate"). Pure (no faust), one per model version like the
drift monitor: a new version starts with an empty window and its own baseline.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from numpy.typing import ArrayLike

from irisflow.estimation import CV_ACCURACY, AccuracyEstimate
from irisflow.schemas import ModelMetadata
from irisflow.settings import DriftSettings
from streams.monitor import Alarm, Reading

__all__ = ["DETECTOR", "FEATURE", "LabelFreeMonitor"]

FEATURE = "accuracy"
"""The ``feature`` of label-free performance alarms."""
DETECTOR = "cbpe"
"""Confidence-based performance estimation."""


class LabelFreeMonitor:
    """The estimated accuracy of one model version and when its fall is an alarm.

    ``threshold`` is ``None`` for a version without ``cv_accuracy`` in its metrics (trained
    before calibrations existed): its estimate is still kept (raw confidences, see
    :func:`irisflow.estimation.calibrated`) but there is no baseline to fall from, so it never
    alarms. After an alarm it stays quiet for ``drift.cooldown_seconds``, like the drift
    detectors.
    """

    def __init__(
        self,
        metadata: ModelMetadata,
        settings: DriftSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.version = metadata.version
        self._estimate = AccuracyEstimate(metadata.calibration, settings.estimate_window)
        baseline = metadata.metrics.get(CV_ACCURACY)
        self.threshold = None if baseline is None else baseline - settings.estimated_accuracy_drop
        self._cooldown = settings.cooldown_seconds
        self._clock = clock
        self._last_alarm: float | None = None

    @property
    def estimate(self) -> float | None:
        """The estimated accuracy of the last ``estimate_window`` rows (``None`` before any)."""
        return self._estimate.value

    @property
    def count(self) -> int:
        """Rows behind :attr:`estimate`."""
        return self._estimate.count

    def update(self, confidences: ArrayLike) -> list[Alarm]:
        """Add scored rows' top-class probabilities; an alarm if the full window's estimate is
        below the threshold and the last alarm is older than the cooldown."""
        value = self._estimate.update(confidences)
        if value is None or self.threshold is None or not self._estimate.full:
            return []
        if value >= self.threshold:
            return []
        now = self._clock()
        if self._last_alarm is not None and now - self._last_alarm < self._cooldown:
            return []
        self._last_alarm = now
        return [Alarm(FEATURE, DETECTOR, value, self.threshold, self._estimate.count)]

    def readings(self) -> list[Reading]:
        """The estimate for gauges, next to the drift monitor's readings (none before a row)."""
        value = self._estimate.value
        return [] if value is None else [Reading(FEATURE, DETECTOR, value, self.threshold)]
