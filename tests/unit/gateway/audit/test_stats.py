"""The dashboard's time series from audit rows: throughput, latency, accuracy, drift."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from gateway.audit.records import DriftAlarm
from gateway.audit.stats import compute_stats
from irisflow.schemas import FeatureStats

NOW = 1_000_000.0
REFERENCE = {"x": FeatureStats(mean=10.0, std=2.0, min=0.0, max=20.0)}


@dataclass
class Row:
    at: float
    scored_at: float | None = None
    kind: str = "single"
    n_instances: int = 1
    label: str | None = "a"
    latency_seconds: float | None = 0.01
    error: str | None = None
    true_label: str | None = None
    labeled_at: float | None = None


def _stats(rows: list[Row], **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "now": NOW,
        "window_seconds": 100.0,
        "buckets": 4,
        "reference": REFERENCE,
        "alarms": [],
        "live_version": 3,
    }
    options.update(kwargs)
    return compute_stats(rows, **options)


def test_buckets_cover_the_window_and_count_instances_per_second() -> None:
    rows = [
        Row(at=NOW - 90, scored_at=NOW - 90),
        Row(at=NOW - 10, scored_at=NOW - 10, kind="batch", n_instances=50, label=None),
        Row(at=NOW - 500, scored_at=NOW - 500),  # outside the window
    ]
    stats = _stats(rows)
    assert stats.buckets == [NOW - 100, NOW - 75, NOW - 50, NOW - 25]
    assert stats.bucket_seconds == 25
    assert stats.throughput == [1 / 25, 0.0, 0.0, 50 / 25]
    assert stats.totals.predictions == 51
    assert stats.live_version == 3


def test_errors_are_counted_apart_and_not_as_throughput() -> None:
    stats = _stats([Row(at=NOW - 5, scored_at=NOW - 5, label=None, error="no model")])
    assert stats.totals.errors == 1
    assert stats.throughput == [0.0, 0.0, 0.0, 0.0]


def test_latency_percentiles_per_bucket() -> None:
    rows = [Row(at=NOW - 5, scored_at=NOW - 5, latency_seconds=v / 100) for v in range(1, 101)]
    stats = _stats(rows)
    assert stats.latency_p50[:3] == [None, None, None]
    assert stats.latency_p50[3] == pytest.approx(0.505)
    assert stats.latency_p95[3] == pytest.approx(0.9505)


def test_accuracy_is_bucketed_by_when_the_feedback_came() -> None:
    rows = [
        Row(at=NOW - 90, scored_at=NOW - 90, label="a", true_label="a", labeled_at=NOW - 5),
        Row(at=NOW - 90, scored_at=NOW - 90, label="a", true_label="b", labeled_at=NOW - 5),
        Row(at=NOW - 90, scored_at=NOW - 90, label="b", true_label="b", labeled_at=NOW - 60),
    ]
    stats = _stats(rows)
    assert stats.accuracy == [None, 1.0, None, 0.5]
    assert (stats.totals.feedback, stats.totals.correct) == (3, 2)
    assert stats.totals.accuracy == pytest.approx(2 / 3)


def test_drift_is_the_mean_shift_in_reference_standard_deviations() -> None:
    inputs = [
        (NOW - 90, {"x": 10.0}),
        (NOW - 10, {"x": 13.0}),
        (NOW - 10, [{"x": 15.0}, {"x": 16.0}]),
    ]
    stats = _stats([], inputs=inputs)
    assert stats.drift["x"] == [0.0, None, None, pytest.approx((44 / 3 - 10) / 2)]


def test_alarms_are_passed_through() -> None:
    alarm = DriftAlarm(
        feature="x", detector="ks", statistic=0.3, threshold=0.15, model_version=1, detected_at=NOW
    )
    assert _stats([], alarms=[alarm]).drift_events == [alarm]
