"""What a gateway process knows: its Kafka bridge, the model versions, answers and the audit."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from gateway.answers import AnswerBook
from gateway.audit.store import AuditStore
from gateway.bridge import KafkaBridge
from gateway.errors import FeatureMismatch, NoModelLive
from gateway.models import FieldError
from gateway.versions import ModelHistory
from irisflow.errors import KafkaUnavailable
from irisflow.schemas import ModelMetadata
from irisflow.settings import Settings

__all__ = ["GatewayState"]

log = logging.getLogger(__name__)


@dataclass
class GatewayState:
    settings: Settings
    bridge: KafkaBridge
    history: ModelHistory
    answers: AnswerBook
    audit: AuditStore
    kafka_ready: bool = False
    kafka_error: str | None = "not connected yet"
    started_at: float = field(default=0.0)

    @property
    def live(self) -> ModelMetadata | None:
        return self.history.live

    def require_kafka(self) -> None:
        """Fail fast with a 503 while the broker is unreachable (the probe notices recovery)."""
        if not self.kafka_ready:
            raise KafkaUnavailable(
                f"Kafka at {self.settings.kafka.bootstrap_servers} is unreachable "
                f"({self.kafka_error}); the gateway reconnects by itself, retry shortly"
            )

    def expected_features(self) -> list[str]:
        """The live model's features; before one is known, the ones params.yaml names."""
        if self.live is not None:
            return list(self.live.feature_names)
        return list(self.settings.data.feature_columns)

    def _problems(self, features: dict[str, float], prefix: str) -> list[FieldError]:
        expected = self.expected_features()
        if not expected:
            return []
        problems = [
            FieldError(field=f"{prefix}.{name}", message="Field required")
            for name in expected
            if name not in features
        ]
        problems += [
            FieldError(
                field=f"{prefix}.{name}",
                message=f"Unknown feature; the model expects {', '.join(expected)}",
            )
            for name in sorted(set(features) - set(expected))
        ]
        return problems

    def check_features(self, features: dict[str, float]) -> None:
        """Reject feature names that cannot fit, naming each, before anything reaches Kafka."""
        problems = self._problems(features, "features")
        if problems:
            raise FeatureMismatch(problems)

    def check_instances(self, instances: list[dict[str, float]]) -> None:
        problems = []
        for i, features in enumerate(instances):
            problems += self._problems(features, f"instances.{i}")
            if len(problems) >= 20:  # enough to fix the client; a 1000-row list is not echoed
                break
        if problems:
            raise FeatureMismatch(problems)

    def check_label(self, label: str) -> None:
        """Feedback must name one of the live model's classes."""
        if self.live is None:
            raise NoModelLive("no model is live yet, so no label can be checked: publish one")
        classes = self.live.class_labels
        if label not in classes:
            raise FeatureMismatch(
                [FieldError(field="label", message=f"Unknown class; one of {', '.join(classes)}")]
            )
