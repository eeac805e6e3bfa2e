"""Whether the gateway's Kafka broker answers now: the probe sets it, requests read it.

A request that needs Kafka fails fast with a 503 while the broker is unreachable, instead of
waiting for a producer timeout; the probe (:mod:`gateway.app`) notices recovery within a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from irisflow.errors import KafkaUnavailable

__all__ = ["KafkaHealth"]


@dataclass
class KafkaHealth:
    bootstrap_servers: str
    ready: bool = False
    error: str | None = "not connected yet"

    def require(self) -> None:
        """Fail fast with a 503 while the broker is unreachable (the probe notices recovery)."""
        if not self.ready:
            raise KafkaUnavailable(
                f"Kafka at {self.bootstrap_servers} is unreachable "
                f"({self.error}); the gateway reconnects by itself, retry shortly"
            )
