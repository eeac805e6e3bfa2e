"""Conventions shared by every process's metrics bundle."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["LATENCY_BUCKETS", "dead_letter_counter"]

#: Seconds. A batched prediction costs ~100 µs; a round trip through Kafka a few ms.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def dead_letter_counter(registry: CollectorRegistry) -> Counter:
    """``irisflow_dead_letters_total{topic,reason,consumer}``: the same series in every role, so
    one dashboard panel and one alert cover every consumer."""
    return Counter(
        "irisflow_dead_letters_total",
        "Records sent to the dead-letter topic, by source topic, reason and refusing consumer",
        ["topic", "reason", "consumer"],
        registry=registry,
    )
