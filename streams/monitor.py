"""All the drift detectors of one model version, and when a detection becomes an alarm.

Pure (no faust): the pipeline feeds it scored rows, predicted labels and the errors of joined
samples; it answers with :class:`Alarm` objects, at most one per feature and detector per
cooldown (an alarm is an event, not a flood), and :class:`Reading` objects for gauges. A new
model version gets a new monitor: its detectors and cooldowns start afresh.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from irisflow.schemas import ModelMetadata
from irisflow.settings import DriftSettings
from streams.drift import ClassFrequency, DecileKS, Detector, ErrorRate, MeanShift

__all__ = ["PERFORMANCE", "PREDICTION", "Alarm", "DriftMonitor", "Reading"]

PREDICTION = "_prediction"
"""The ``feature`` of prediction-distribution alarms (not a model feature)."""
PERFORMANCE = "_error_rate"
"""The ``feature`` of performance alarms (from labeled samples)."""


@dataclass(frozen=True)
class Alarm:
    """A detection worth an event on the drift-events topic."""

    feature: str
    detector: str
    statistic: float
    threshold: float
    window: int


@dataclass(frozen=True)
class Reading:
    """A detector's current statistic, for gauges (``threshold`` is None for ADWIN: its cut
    has no fixed threshold in the statistic's units)."""

    feature: str
    detector: str
    statistic: float
    threshold: float | None


class DriftMonitor:
    """Every detector for one model version; a new version gets a new monitor (a reset)."""

    def __init__(
        self,
        metadata: ModelMetadata,
        settings: DriftSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.version = metadata.version
        self._cooldown = settings.cooldown_seconds
        self._max_rows = settings.max_rows_per_batch
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self.features: list[tuple[str, list[MeanShift | DecileKS]]] = []
        for name in metadata.feature_names:
            stats = metadata.reference_stats.get(name)
            detectors: list[MeanShift | DecileKS] = []
            if stats is not None:
                detectors.append(
                    MeanShift(mean=stats.mean, std=stats.std, delta=settings.adwin_delta)
                )
                if stats.quantiles:
                    ks = DecileKS(
                        deciles=stats.quantiles,
                        window=settings.window,
                        threshold=settings.ks_threshold,
                    )
                    detectors.append(ks)
            self.features.append((name, detectors))
        self.prediction = (
            ClassFrequency(
                prior=metadata.class_prior,
                window=settings.window,
                threshold=settings.prediction_psi_threshold,
            )
            if metadata.class_prior
            else None
        )
        self.errors = ErrorRate(delta=settings.adwin_delta)

    def update_features(self, rows: np.ndarray) -> list[Alarm]:
        """``rows``: one row per scored instance, columns in the model's feature order.

        A big batch is thinned to ``max_rows_per_batch`` evenly spaced rows: at 100,000 rows/s
        feeding every row to ADWIN would cost more than scoring them.
        """
        alarms = []
        rows = rows[:: self._stride(len(rows))]
        if rows.size:
            for column, (name, detectors) in enumerate(self.features):
                values = rows[:, column]
                for detector in detectors:
                    detector.update_many(values)
                    alarms.append(self._alarm(name, detector))
        return [a for a in alarms if a is not None]

    def update_predictions(self, labels: Sequence[str]) -> list[Alarm]:
        if self.prediction is None or not labels:
            return []
        self.prediction.update_many(labels[:: self._stride(len(labels))])
        alarm = self._alarm(PREDICTION, self.prediction)
        return [alarm] if alarm else []

    def update_errors(self, errors: Sequence[bool]) -> list[Alarm]:
        if not errors:
            return []
        self.errors.update_many(errors)
        alarm = self._alarm(PERFORMANCE, self.errors)
        return [alarm] if alarm else []

    def _stride(self, count: int) -> int:
        return max(1, math.ceil(count / self._max_rows))

    def readings(self) -> list[Reading]:
        found = []
        for name, detectors in self.features:
            for d in detectors:
                found.append(Reading(name, d.name, d.statistic, _fixed_threshold(d)))
        if self.prediction is not None:
            p = self.prediction
            found.append(Reading(PREDICTION, p.name, p.statistic, p.threshold))
        found.append(Reading(PERFORMANCE, self.errors.name, self.errors.statistic, None))
        return found

    def _alarm(self, feature: str, detector: Detector) -> Alarm | None:
        if not detector.drift_detected:
            return None
        now = self._clock()
        key = (feature, detector.name)
        last = self._last.get(key)
        if last is not None and now - last < self._cooldown:
            return None
        self._last[key] = now
        return Alarm(
            feature, detector.name, detector.statistic, detector.threshold, detector.window
        )


def _fixed_threshold(detector: Detector) -> float | None:
    return None if isinstance(detector, MeanShift | ErrorRate) else detector.threshold
