"""The worker's Prometheus metrics, declared once as a typed bundle.

Each worker has its own registry (served on its Faust web port at ``/metrics``), so several
workers in one test process do not collide. Labels stay low-cardinality: model version, label,
reason, feature, detector, topic, partition; never a request id. Every worker reports its own
share of the traffic: sum counters and average (or max) gauges across workers in PromQL.
"""

from __future__ import annotations

import contextlib
from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from irisflow.metrics import LATENCY_BUCKETS, dead_letter_counter
from streams.intake import BatchResult, LiveModel
from streams.monitor import Alarm, Reading
from streams.quality import RollingScore

__all__ = ["CONFIDENCE_SAMPLES", "WorkerMetrics"]

CONFIDENCE_SAMPLES = 100
"""Rows per batch whose confidence is observed: a histogram observation costs ~1 µs, as much
as scoring the row, so big batches are sampled (evenly) rather than observed row by row."""
_ROWS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000)


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry
    predictions: Counter
    rejected: Counter
    dead_letters: Counter
    batch_size: Histogram
    latency: Histogram
    confidence: Histogram
    live_version: Gauge
    class_prior: Gauge
    swaps: Counter
    drift_statistic: Gauge
    drift_threshold: Gauge
    drift_alarms: Counter
    feedback: Counter
    labeled: Counter
    live_accuracy: Gauge
    live_f1: Gauge
    estimated_accuracy: Gauge
    live_samples: Gauge
    join_entries: Gauge
    join_expired: Counter
    consumer_lag: Gauge
    shadow_scored: Counter
    candidate_version: Gauge
    candidate_refusals: Counter

    @classmethod
    def create(cls) -> WorkerMetrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            predictions=Counter(
                "irisflow_predictions_total",
                "Rows scored (one per instance), by model version and predicted label",
                ["model_version", "label"],
                registry=r,
            ),
            rejected=Counter(
                "irisflow_requests_rejected_total",
                "Request messages answered with an error, by reason",
                ["reason"],
                registry=r,
            ),
            dead_letters=dead_letter_counter(r),
            batch_size=Histogram(
                "irisflow_scoring_batch_size",
                "Rows per predict_proba call",
                buckets=_ROWS,
                registry=r,
            ),
            latency=Histogram(
                "irisflow_scoring_latency_seconds",
                "From a request's sent_at to its prediction made, per request message",
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),
            confidence=Histogram(
                "irisflow_prediction_confidence",
                f"Probability of the predicted class (up to {CONFIDENCE_SAMPLES} rows a batch)",
                ["model_version"],
                buckets=(0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
                registry=r,
            ),
            class_prior=Gauge(
                "irisflow_model_class_prior",
                "Share of each class in the live version's training data",
                ["model_version", "label"],
                registry=r,
            ),
            live_version=Gauge(
                "irisflow_live_model_version", "Model version this worker scores with", registry=r
            ),
            swaps=Counter(
                "irisflow_model_swaps_total", "Model versions made live on this worker", registry=r
            ),
            drift_statistic=Gauge(
                "irisflow_drift_statistic",
                "Current drift statistic (adwin: window mean in reference stds, or error rate; "
                "ks: CDF gap to the reference deciles; psi: predicted classes vs prior)",
                ["feature", "detector"],
                registry=r,
            ),
            drift_threshold=Gauge(
                "irisflow_drift_threshold",
                "Alarm threshold of a drift statistic (ks and psi; ADWIN has no fixed one)",
                ["feature", "detector"],
                registry=r,
            ),
            drift_alarms=Counter(
                "irisflow_drift_alarms_total",
                "Drift events sent (after the cooldown), by feature and detector",
                ["feature", "detector"],
                registry=r,
            ),
            feedback=Counter(
                "irisflow_feedback_total",
                "Feedback records by outcome (joined, held, duplicate, invalid)",
                ["outcome"],
                registry=r,
            ),
            labeled=Counter(
                "irisflow_labeled_samples_total",
                "Predictions joined with their true label, by model version",
                ["model_version"],
                registry=r,
            ),
            live_accuracy=Gauge(
                "irisflow_live_accuracy",
                "Accuracy over the most recent labeled samples, by model version",
                ["model_version"],
                registry=r,
            ),
            live_f1=Gauge(
                "irisflow_live_f1_macro",
                "Macro-F1 over the most recent labeled samples, by model version",
                ["model_version"],
                registry=r,
            ),
            estimated_accuracy=Gauge(
                "irisflow_estimated_accuracy",
                "Label-free estimate of the live version's accuracy: mean calibrated "
                "confidence of its last drift.estimate_window scored rows",
                ["model_version"],
                registry=r,
            ),
            live_samples=Gauge(
                "irisflow_live_window_samples",
                "Labeled samples behind the live accuracy and F1, by model version",
                ["model_version"],
                registry=r,
            ),
            join_entries=Gauge(
                "irisflow_join_entries",
                "Entries in this worker's join table (waiting predictions, held feedback)",
                registry=r,
            ),
            join_expired=Counter(
                "irisflow_join_expired_total",
                "Join entries expired, by state (prediction: never labeled; feedback: "
                "dead-lettered; joined)",
                ["state"],
                registry=r,
            ),
            consumer_lag=Gauge(
                "irisflow_consumer_lag",
                "Records not yet fetched by this worker, by topic and assigned partition",
                ["topic", "partition"],
                registry=r,
            ),
            shadow_scored=Counter(
                "irisflow_shadow_scored_total",
                "Requests also scored by the rollout version their client did not get (one "
                "shadow prediction each), by that version and the rollout's mode",
                ["version", "mode"],
                registry=r,
            ),
            candidate_version=Gauge(
                "irisflow_candidate_model_version",
                "Rollout candidate this worker has loaded beside the live version (0: none)",
                registry=r,
            ),
            candidate_refusals=Counter(
                "irisflow_candidate_refusals_total",
                "Rollout candidates this worker refused to load (checksum, limits, allow-list, "
                "contract): it then scores with the live version alone",
                registry=r,
            ),
        )

    def on_swap(self, model: LiveModel) -> None:
        self.live_version.set(model.version)
        self.swaps.inc()
        self.class_prior.clear()  # only the live version's prior is shown next to the mix
        for label, share in model.metadata.class_prior.items():
            self.class_prior.labels(str(model.version), label).set(share)

    def on_candidate(self, version: int | None) -> None:
        self.candidate_version.set(version or 0)

    def on_candidate_refused(self, version: int) -> None:
        self.candidate_refusals.inc()

    def on_letter(self, topic: str, reason: str, consumer: str) -> None:
        """Count one dead letter (the hook :class:`~irisflow.topics.DeadLetters` calls)."""
        self.dead_letters.labels(topic, reason, consumer).inc()

    def observe(self, result: BatchResult) -> None:
        """Count one scored micro-batch."""
        if result.labels:
            version = str(result.model_version)
            for label, count in Tally(result.labels).items():
                self.predictions.labels(version, label).inc(count)
            self.batch_size.observe(len(result.labels))
            step = max(1, len(result.confidences) // CONFIDENCE_SAMPLES)
            confidence = self.confidence.labels(version)
            for value in result.confidences[::step]:
                confidence.observe(value)
        for latency in result.latencies:
            self.latency.observe(latency)
        for reason, count in result.rejected.items():
            self.rejected.labels(reason).inc(count)

    def reset_drift(self) -> None:
        """A new model version: its detectors start afresh, the old readings go."""
        self.drift_statistic.clear()
        self.drift_threshold.clear()

    def observe_drift(self, readings: Iterable[Reading], alarms: Iterable[Alarm]) -> None:
        for reading in readings:
            self.drift_statistic.labels(reading.feature, reading.detector).set(reading.statistic)
            if reading.threshold is not None:
                self.drift_threshold.labels(reading.feature, reading.detector).set(
                    reading.threshold
                )
        for alarm in alarms:
            self.drift_alarms.labels(alarm.feature, alarm.detector).inc()

    def observe_estimate(self, version: int, estimate: float | None) -> None:
        """The live version's label-free estimate; older versions' readings go."""
        if estimate is None:
            return
        label = str(version)
        for old in list(self.estimated_accuracy._metrics):
            if old != (label,):
                self.estimated_accuracy.remove(*old)
        self.estimated_accuracy.labels(label).set(estimate)

    def observe_quality(self, version: int, score: RollingScore, dropped: Iterable[int]) -> None:
        label = str(version)
        self.labeled.labels(label).inc()
        self.live_accuracy.labels(label).set(score.accuracy)
        self.live_f1.labels(label).set(score.f1_macro)
        self.live_samples.labels(label).set(len(score))
        for old in dropped:
            for gauge in (self.live_accuracy, self.live_f1, self.live_samples):
                with contextlib.suppress(KeyError):
                    gauge.remove(str(old))

    def observe_lag(self, lags: Iterable[tuple[str, int, int]]) -> None:
        """Replace every lag reading (partitions move between workers)."""
        self.consumer_lag.clear()
        for topic, partition, lag in lags:
            self.consumer_lag.labels(topic, str(partition)).set(lag)
