"""The retraining service's Prometheus metrics, declared once."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from irisflow.metrics import dead_letter_counter
from irisflow.schemas import VersionReading

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
    rollout_active: Gauge
    rollout_share: Gauge
    rollout_candidate: Gauge
    rollout_champion: Gauge
    rollout_decisions: Counter
    rollout_readings: dict[str, Gauge]

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
            rollout_active=Gauge(
                "irisflow_rollout_active", "1 while a rollout is in progress", registry=registry
            ),
            rollout_share=Gauge(
                "irisflow_rollout_share",
                "Share of requests the candidate scores (shadow) or answers (canary)",
                registry=registry,
            ),
            rollout_candidate=Gauge(
                "irisflow_rollout_candidate_version",
                "The candidate in rollout (0: none)",
                registry=registry,
            ),
            rollout_champion=Gauge(
                "irisflow_rollout_champion_version",
                "The live version a candidate is compared with",
                registry=registry,
            ),
            rollout_decisions=Counter(
                "irisflow_rollout_decisions",
                "Rollout steps by the stage entered and who decided",
                ["stage", "decided_by"],
                registry=registry,
            ),
            rollout_readings={
                name: Gauge(
                    f"irisflow_rollout_{name}",
                    help_text,
                    ["version", "role"],
                    registry=registry,
                )
                for name, help_text in _READINGS.items()
            },
        )

    def clear_readings(self) -> None:
        """Forget every version's readings (a version that left the rollout leaves no gauge)."""
        for gauge in self.rollout_readings.values():
            gauge.clear()

    def observe_reading(self, reading: VersionReading, error_rate: float) -> None:
        labels = (str(reading.version), reading.role)
        values = {
            "agreement": reading.agreement,
            "accuracy": reading.accuracy,
            "macro_f1": reading.macro_f1,
            "estimated_accuracy": reading.estimated_accuracy,
            "class_psi": reading.class_psi,
            "error_rate": error_rate,
            "scored": float(reading.scored),
            "served": float(reading.served),
            "labeled": float(reading.labeled),
            "latency_p99_seconds": reading.latency_p99_seconds,
            "confidence_mean": reading.confidence_mean,
        }
        for name, value in values.items():
            if value is not None:
                self.rollout_readings[name].labels(*labels).set(value)


_READINGS = {
    "agreement": "Share of paired rows where the version agrees with the champion",
    "accuracy": "Accuracy on labeled paired requests during the rollout",
    "macro_f1": "Macro-F1 on labeled paired requests during the rollout",
    "estimated_accuracy": "Label-free estimate: expected accuracy from calibrated confidences",
    "class_psi": "Predicted-class mix vs the training prior (PSI)",
    "error_rate": "Requests refused or failed per request seen",
    "scored": "Rows scored during the rollout",
    "served": "Answers clients got from the version during the rollout (paired requests)",
    "labeled": "Labeled paired requests",
    "latency_p99_seconds": "Worker scoring time of the version's share of a batch, p99",
    "confidence_mean": "Mean top-class probability",
}
