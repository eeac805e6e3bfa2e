"""The dashboard's time series, computed from recent audit rows (pure: no I/O, no framework).

Drift here is a picture for people, not the alarm: per feature and bucket, how far the inputs'
mean moved from the training mean, in training standard deviations. The workers' detectors
(ADWIN, KS, PSI) raise the alarms; the dashboard lists those from the drift-events topic.

Both inputs are bounded by the store (rows without features; features on an instance budget),
and a value that is not a finite number (a row stored before the feed refused NaN and Infinity)
is left out rather than allowed to fail the whole window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from gateway.audit.records import DriftAlarm, Stats, Totals
from irisflow.schemas import FeatureStats

__all__ = ["Inputs", "StatsRow", "compute_stats"]

Inputs = tuple[float, Any]
"""``(at, features)``: when a request was sent, and its instance (a dict) or instances (a list)."""


class StatsRow(Protocol):
    kind: str
    at: float
    n_instances: int
    label: str | None
    latency_seconds: float | None
    scored_at: float | None
    error: str | None
    true_label: str | None
    labeled_at: float | None


class _Series:
    """Per-bucket accumulators over one window, filled one audit row at a time."""

    def __init__(self, start: float, width: float, count: int) -> None:
        self.start, self.width, self.count = start, width, count
        self.answered = [0] * count
        self.latencies: list[list[float]] = [[] for _ in range(count)]
        self.judged = [[0, 0] for _ in range(count)]  # [correct, total] by time of the feedback
        self.inputs: list[dict[str, list[float]]] = [{} for _ in range(count)]
        self.errors = 0

    def index(self, t: float | None) -> int | None:
        if t is None or not math.isfinite(t):
            return None
        i = int((t - self.start) // self.width)
        return i if 0 <= i < self.count else None

    def add(self, row: StatsRow) -> None:
        scored = self.index(row.scored_at)
        if scored is not None and row.error is not None:
            self.errors += 1
        elif scored is not None:
            self.answered[scored] += row.n_instances
            latency = row.latency_seconds
            if latency is not None and math.isfinite(latency):
                self.latencies[scored].append(latency)
        labeled = self.index(row.labeled_at)
        if labeled is not None and row.kind == "single" and row.label is not None:
            self.judged[labeled][0] += int(row.label == row.true_label)
            self.judged[labeled][1] += 1

    def add_inputs(self, at: float, features: Any) -> None:
        sent = self.index(at)
        if sent is None:
            return
        for instance in _instances(features):
            for name, value in instance.items():
                if _finite(value):
                    self.inputs[sent].setdefault(name, []).append(value)

    def totals(self) -> Totals:
        correct = sum(hit for hit, _ in self.judged)
        feedback = sum(total for _, total in self.judged)
        return Totals(
            predictions=sum(self.answered),
            errors=self.errors,
            feedback=feedback,
            correct=correct,
            accuracy=correct / feedback if feedback else None,
        )


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _instances(features: Any) -> Iterable[Mapping[str, float]]:
    if isinstance(features, dict):
        return [features]
    if isinstance(features, list):
        return [f for f in features if isinstance(f, dict)]
    return []


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _drift(
    per_bucket: list[dict[str, list[float]]], reference: Mapping[str, FeatureStats]
) -> dict[str, list[float | None]]:
    series: dict[str, list[float | None]] = {}
    for feature, ref in reference.items():
        values: list[float | None] = []
        for bucket in per_bucket:
            seen = bucket.get(feature)
            if not seen or ref.std <= 0:
                values.append(None)
            else:
                values.append(abs(float(np.mean(seen)) - ref.mean) / ref.std)
        series[feature] = values
    return series


def compute_stats(
    rows: Sequence[StatsRow],
    *,
    inputs: Iterable[Inputs] = (),
    now: float,
    window_seconds: float,
    buckets: int,
    reference: Mapping[str, FeatureStats],
    alarms: list[DriftAlarm],
    live_version: int | None,
) -> Stats:
    """Throughput, latency percentiles, live accuracy and drift per bucket of the window."""
    series = _Series(now - window_seconds, window_seconds / buckets, buckets)
    for row in rows:
        series.add(row)
    for at, features in inputs:
        series.add_inputs(at, features)
    width = series.width
    return Stats(
        now=now,
        window_seconds=window_seconds,
        bucket_seconds=width,
        buckets=[series.start + i * width for i in range(buckets)],
        throughput=[n / width for n in series.answered],
        latency_p50=[_percentile(values, 50) for values in series.latencies],
        latency_p95=[_percentile(values, 95) for values in series.latencies],
        accuracy=[hit / total if total else None for hit, total in series.judged],
        drift=_drift(series.inputs, reference),
        drift_events=alarms,
        totals=series.totals(),
        live_version=live_version,
    )
