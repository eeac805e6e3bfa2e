"""The retraining service's Prometheus metrics, declared once."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from irisflow.metrics import dead_letter_counter

__all__ = ["TrainerMetrics"]


@dataclass
class TrainerMetrics:
    registry: CollectorRegistry
    retrains: Counter
    duration: Histogram
    candidate_score: Gauge
    gate_score: Gauge
    live_version: Gauge
    labels_seen: Counter
    pending_labels: Gauge
    dead_letters: Counter

    @classmethod
    def create(cls) -> TrainerMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            retrains=Counter(
                "irisflow_retrains_total",
                "Retrainings by trigger and outcome",
                ["trigger", "outcome"],
                registry=registry,
            ),
            duration=Histogram(
                "irisflow_training_duration_seconds",
                "Wall time of one retraining",
                buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
                registry=registry,
            ),
            candidate_score=Gauge(
                "irisflow_candidate_cv_score",
                "Cross-validated score of each candidate, last run",
                ["candidate"],
                registry=registry,
            ),
            gate_score=Gauge(
                "irisflow_gate_f1_macro",
                "Macro-F1 on the gate's holdout, last decision",
                ["role"],
                registry=registry,
            ),
            live_version=Gauge(
                "irisflow_trainer_live_model_version",
                "Model version live according to Kafka",
                registry=registry,
            ),
            labels_seen=Counter(
                "irisflow_trainer_labeled_samples_total",
                "Labeled samples consumed",
                registry=registry,
            ),
            pending_labels=Gauge(
                "irisflow_trainer_pending_labels",
                "Labeled samples since the last retraining",
                registry=registry,
            ),
            dead_letters=dead_letter_counter(registry),
        )
