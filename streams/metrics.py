"""The worker's Prometheus metrics, declared once as a typed bundle.

Each worker has its own registry (served on its Faust web port at ``/metrics``), so several
workers in one test process do not collide, and labels stay low-cardinality: model version,
label, reason; never a request id.
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from irisflow.metrics import LATENCY_BUCKETS
from streams.scoring import BatchResult, LiveModel

__all__ = ["WorkerMetrics"]


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
    swaps: Counter

    @classmethod
    def create(cls) -> WorkerMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            predictions=Counter(
                "irisflow_predictions_total",
                "Requests scored, by model version and label",
                ["model_version", "label"],
                registry=registry,
            ),
            rejected=Counter(
                "irisflow_requests_rejected_total",
                "Requests answered with an error, by reason",
                ["reason"],
                registry=registry,
            ),
            dead_letters=Counter(
                "irisflow_dead_letters_total",
                "Records sent to the dead-letter topic, by source",
                ["source"],
                registry=registry,
            ),
            batch_size=Histogram(
                "irisflow_scoring_batch_size",
                "Requests per predict_proba call",
                buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
                registry=registry,
            ),
            latency=Histogram(
                "irisflow_scoring_latency_seconds",
                "From request sent to prediction made",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            confidence=Histogram(
                "irisflow_prediction_confidence",
                "Probability of the predicted class",
                ["model_version"],
                buckets=(0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
                registry=registry,
            ),
            live_version=Gauge(
                "irisflow_live_model_version",
                "Model version this worker scores with",
                registry=registry,
            ),
            swaps=Counter(
                "irisflow_model_swaps_total",
                "Model versions made live on this worker",
                registry=registry,
            ),
        )

    def on_swap(self, model: LiveModel) -> None:
        self.live_version.set(model.version)
        self.swaps.inc()

    def observe(self, result: BatchResult, *, source: str) -> None:
        tally: Tally[tuple[str, str]] = Tally()
        scored = 0
        for answer in result.answers:
            if answer.label is None:
                continue
            scored += 1
            version = str(answer.model_version)
            tally[(version, answer.label)] += 1
            self.latency.observe(answer.latency_seconds)
            self.confidence.labels(version).observe(answer.probabilities[answer.label])
        for (version, label), count in tally.items():
            self.predictions.labels(version, label).inc(count)
        for reason, count in result.rejected.items():
            self.rejected.labels(reason).inc(count)
        if result.dead_letters:
            self.dead_letters.labels(source).inc(len(result.dead_letters))
        if scored:
            self.batch_size.observe(scored)
