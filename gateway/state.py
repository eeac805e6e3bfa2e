"""What a gateway process knows: its Kafka bridge and the live model's metadata."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from gateway.bridge import KafkaBridge
from gateway.errors import FeatureMismatch
from gateway.models import FieldError
from irisflow.registry import sha256_hex
from irisflow.schemas import ModelMetadata, ModelUpdate
from irisflow.settings import Settings

__all__ = ["GatewayState"]

log = logging.getLogger(__name__)


@dataclass
class GatewayState:
    settings: Settings
    bridge: KafkaBridge
    live: ModelMetadata | None = None
    kafka_ready: bool = False
    started_at: float = field(default=0.0)

    async def on_model_update(self, update: ModelUpdate) -> None:
        """Track the live version; one whose bytes fail their checksum is not live anywhere."""
        if sha256_hex(update.artifact) != update.sha256:
            log.error(
                "gateway: ignoring %s version %d: artifact checksum mismatch",
                update.model_name,
                update.version,
            )
            return
        self.live = update.metadata()

    def expected_features(self) -> list[str]:
        """The live model's features; before one is known, the ones params.yaml names."""
        if self.live is not None:
            return list(self.live.feature_names)
        return list(self.settings.data.feature_columns)

    def check_features(self, features: dict[str, float]) -> None:
        """Reject feature names that cannot fit, naming each, before anything reaches Kafka."""
        expected = self.expected_features()
        if not expected:
            return
        problems = [
            FieldError(field=f"features.{name}", message="Field required")
            for name in expected
            if name not in features
        ]
        problems += [
            FieldError(
                field=f"features.{name}",
                message=f"Unknown feature; the model expects {', '.join(expected)}",
            )
            for name in sorted(set(features) - set(expected))
        ]
        if problems:
            raise FeatureMismatch(problems)
