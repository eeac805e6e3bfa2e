"""What the live model can take, checked before anything reaches Kafka: feature names and
values (the rule the workers apply too, :class:`~irisflow.features.FeatureSchema`) and labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter

import numpy as np

from gateway.bodies import FieldError
from gateway.errors import MOST_FIELDS, FeatureMismatch, NoModelLive
from gateway.model_versions import ModelHistory
from irisflow.features import FeatureProblem, FeatureSchema
from irisflow.schemas import ModelMetadata

__all__ = ["InputChecks"]


def _matrix(names: list[str], instances: list[dict[str, float]], fits: list[bool]) -> np.ndarray:
    """The instances whose names fit, one row each, columns in the model's feature order."""
    if not names:
        return np.empty((sum(fits), 0))
    row = itemgetter(*names)
    rows = [row(features) for features, ok in zip(instances, fits, strict=True) if ok]
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(names))


class InputChecks:
    """The live model's names, value domain and classes (read from ``history`` at each call)."""

    def __init__(
        self,
        history: ModelHistory,
        *,
        default_features: Sequence[str],
        max_reference_std: float | None,
    ) -> None:
        self.history = history
        self.default_features = list(default_features)
        """The names params.yaml gives, used until a model is live."""
        self.max_reference_std = max_reference_std
        self._schema: tuple[ModelMetadata | None, FeatureSchema] | None = None

    def expected_features(self) -> list[str]:
        """The live model's features; before one is known, the ones params.yaml names."""
        live = self.history.live
        if live is not None:
            return list(live.feature_names)
        return list(self.default_features)

    def feature_schema(self) -> FeatureSchema:
        """The live model's names and value domain (the rule the workers apply too), rebuilt
        only when the live version changes."""
        live = self.history.live
        if self._schema is None or self._schema[0] is not live:
            reference = live.reference_stats if live is not None else None
            schema = FeatureSchema(
                self.expected_features(), reference, max_reference_std=self.max_reference_std
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
        live = self.history.live
        if live is None:
            raise NoModelLive("no model is live yet, so no label can be checked: publish one")
        classes = live.class_labels
        if label not in classes:
            raise FeatureMismatch(
                [FieldError(field="label", message=f"Unknown class; one of {', '.join(classes)}")]
            )
