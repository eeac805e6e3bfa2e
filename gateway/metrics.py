"""The gateway's Prometheus metrics, declared once per app (one registry per app instance)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from irisflow.metrics import LATENCY_BUCKETS

__all__ = ["GatewayMetrics"]


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry
    requests: Histogram
    in_flight: Gauge
    kafka_round_trip: Histogram
    timeouts: Counter
    live_version: Gauge

    @classmethod
    def create(cls) -> GatewayMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Histogram(
                "irisflow_http_request_duration_seconds",
                "HTTP requests by route and status",
                ["route", "method", "status"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            in_flight=Gauge(
                "irisflow_http_requests_in_flight",
                "HTTP requests being served",
                registry=registry,
            ),
            kafka_round_trip=Histogram(
                "irisflow_gateway_kafka_round_trip_seconds",
                "From publishing a request to receiving its prediction",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            timeouts=Counter(
                "irisflow_gateway_timeouts_total",
                "Predictions not answered in time",
                registry=registry,
            ),
            live_version=Gauge(
                "irisflow_gateway_live_model_version",
                "Live model version the gateway knows of",
                registry=registry,
            ),
        )
