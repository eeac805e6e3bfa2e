"""What a gateway process knows: its Kafka bridge, the model versions, answers and the audit."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from gateway.answer_book import AnswerBook
from gateway.audit.store import AuditStore
from gateway.bodies import FieldError
from gateway.bridge import KafkaBridge
from gateway.errors import MOST_FIELDS, FeatureMismatch, NoModelLive
from gateway.model_versions import ModelHistory
from irisflow.errors import KafkaUnavailable
from irisflow.features import FeatureProblem, FeatureSchema
from irisflow.schemas import ModelMetadata
from irisflow.settings import Settings

__all__ = ["GatewayState"]

log = logging.getLogger(__name__)


def _matrix(names: list[str], instances: list[dict[str, float]], fits: list[bool]) -> np.ndarray:
    """The instances whose names fit, one row each, columns in the model's feature order."""
    if not names:
        return np.empty((sum(fits), 0))
    row = itemgetter(*names)
    rows = [row(features) for features, ok in zip(instances, fits, strict=True) if ok]
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(names))


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
    _schema: tuple[ModelMetadata | None, FeatureSchema] | None = field(default=None, repr=False)

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

    def feature_schema(self) -> FeatureSchema:
        """The live model's names and value domain (the rule the workers apply too), rebuilt
        only when the live version changes."""
        live = self.live
        if self._schema is None or self._schema[0] is not live:
            reference = live.reference_stats if live is not None else None
            schema = FeatureSchema(
                self.expected_features(),
                reference,
                max_reference_std=self.settings.features.max_reference_std,
            )
            self._schema = (live, schema)
        return self._schema[1]

    def check_features(self, features: dict[str, float]) -> None:
        """Refuse names and values the live model cannot take, naming each, before Kafka."""
        self._refuse(self.feature_schema().problems(features, "features"))

    def check_instances(self, instances: list[dict[str, float]]) -> None:
        """:meth:`check_features` for a batch, with the same 422: names are compared per
        instance (a set comparison), values in one vectorized pass over the instances whose
        names fit; only the first bad rows are described, in row order, until the cap."""
        schema = self.feature_schema()
        fits = [features.keys() == schema.name_set for features in instances]
        bad = iter(schema.out_of_domain(_matrix(schema.names, instances, fits)).tolist())
        problems: list[FeatureProblem] = []
        for i, features in enumerate(instances):
            if fits[i] and not next(bad):
                continue
            problems += schema.problems(features, f"instances.{i}")
            if len(problems) > MOST_FIELDS:  # enough to fix the client; later rows unread
                break
        self._refuse(problems)

    @staticmethod
    def _refuse(problems: Iterable[FeatureProblem]) -> None:
        fields = [FieldError(field=p.field, message=p.message) for p in problems]
        if fields:
            raise FeatureMismatch(fields)

    def check_label(self, label: str) -> None:
        """Feedback must name one of the live model's classes."""
        if self.live is None:
            raise NoModelLive("no model is live yet, so no label can be checked: publish one")
        classes = self.live.class_labels
        if label not in classes:
            raise FeatureMismatch(
                [FieldError(field="label", message=f"Unknown class; one of {', '.join(classes)}")]
            )
