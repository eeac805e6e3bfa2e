"""The gateway's Prometheus metrics, declared once per app (one registry per app instance)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from irisflow.metrics import LATENCY_BUCKETS, dead_letter_counter

__all__ = ["GatewayMetrics"]


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry
    http_request_duration: Histogram
    http_in_flight: Gauge
    kafka_round_trip: Histogram
    timeouts: Counter
    live_model_version: Gauge
    kafka_up: Gauge
    replayed_answers: Counter
    published: Counter
    audit_records: Counter
    audit_skipped: Counter
    mismatched_answers: Counter
    hedged: Counter
    answer_errors: Counter
    dead_letters: Counter

    def count_letter(self, topic: str, reason: str, consumer: str) -> None:
        """``on_letter`` for the audit feed and the model feed."""
        self.dead_letters.labels(topic, reason, consumer).inc()

    @classmethod
    def create(cls) -> GatewayMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            http_request_duration=Histogram(
                "irisflow_http_request_duration_seconds",
                "HTTP requests by route and status",
                ["route", "method", "status"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            http_in_flight=Gauge(
                "irisflow_http_requests_in_flight",
                "HTTP requests being served",
                registry=registry,
            ),
            kafka_round_trip=Histogram(
                "irisflow_gateway_kafka_round_trip_seconds",
                "From publishing a request to receiving its prediction (kind: single, batch)",
                ["kind"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            timeouts=Counter(
                "irisflow_gateway_timeouts_total",
                "Predictions not answered in time",
                registry=registry,
            ),
            live_model_version=Gauge(
                "irisflow_gateway_live_model_version",
                "Live model version the gateway knows of",
                registry=registry,
            ),
            kafka_up=Gauge(
                "irisflow_gateway_kafka_up",
                "1 while a Kafka broker answers the gateway's probe, else 0",
                registry=registry,
            ),
            replayed_answers=Counter(
                "irisflow_gateway_replayed_answers_total",
                "Repeated request ids answered without scoring again (source: memory, audit)",
                ["source"],
                registry=registry,
            ),
            published=Counter(
                "irisflow_gateway_published_total",
                "Records the gateway published (kind: request, batch, feedback, retrain, promote)",
                ["kind"],
                registry=registry,
            ),
            audit_records=Counter(
                "irisflow_gateway_audit_records_total",
                "Records written to the audit store (stream: requests, predictions, feedback, "
                "drift)",
                ["stream"],
                registry=registry,
            ),
            audit_skipped=Counter(
                "irisflow_gateway_audit_skipped_total",
                "Records the audit feed could not store (each is dead-lettered too)",
                ["stream"],
                registry=registry,
            ),
            hedged=Counter(
                "irisflow_gateway_hedged_requests_total",
                "Copies of late requests sent to another partition (gateway.hedge_after_seconds)",
                registry=registry,
            ),
            mismatched_answers=Counter(
                "irisflow_gateway_mismatched_answers_total",
                "Answers under an awaited request id that do not answer what was sent: another "
                "input's digest, no digest, another shape, or neither a result nor an error "
                "(ignored; the wait goes on)",
                registry=registry,
            ),
            answer_errors=Counter(
                "irisflow_gateway_answer_errors_total",
                "Records of the predictions topic whose handling raised (logged with their "
                "offset and skipped; the reply reader goes on)",
                registry=registry,
            ),
            dead_letters=dead_letter_counter(registry),
        )
