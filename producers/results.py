"""Typed results of the HTTP clients: what the gateway answered, as objects an editor knows.

``/v1`` answers are frozen pydantic models read from the gateway's JSON (fields the gateway
adds later are ignored, so an older client keeps working). An Open Inference Protocol answer is
an :class:`InferResult` holding numpy arrays: the labels and an ``(n, n_classes)`` matrix of
probabilities whose columns are ``classes``, which is what a caller of that protocol computes
with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

__all__ = [
    "Accepted",
    "BatchResult",
    "FeedbackInfo",
    "FeedbackSent",
    "InferResult",
    "ModelCatalog",
    "ModelVersionInfo",
    "OipModel",
    "PredictResult",
    "PredictionRecord",
    "RowResult",
]


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", protected_namespaces=())


class PredictResult(_Answer):
    """``POST /v1/predict``: one instance's label and class probabilities."""

    request_id: str
    label: str
    probabilities: dict[str, float]
    model_version: int
    latency_seconds: float
    worker_seconds: float | None = None


class RowResult(_Answer):
    """One instance of a batch, with the call it was answered in."""

    label: str
    probabilities: dict[str, float]
    model_version: int | None = None
    request_id: str | None = None


class BatchResult(_Answer):
    """``POST /v1/predict/batch``: one :class:`RowResult` per instance, in request order."""

    request_id: str
    model_version: int
    predictions: list[RowResult]
    latency_seconds: float
    worker_seconds: float | None = None

    def rows(self) -> list[RowResult]:
        """The predictions, each stamped with this call's request id and model version."""
        stamp = {"request_id": self.request_id, "model_version": self.model_version}
        return [row.model_copy(update=stamp) for row in self.predictions]


class Accepted(_Answer):
    """``?wait=false``: on its way; :meth:`IrisflowClient.prediction` reads it later."""

    request_id: str
    status: Literal["accepted"]
    result_url: str


class FeedbackSent(_Answer):
    request_id: str
    label: str
    topic: str


class FeedbackInfo(_Answer):
    label: str
    labeled_at: float
    correct: bool | None = None


class PredictionRecord(_Answer):
    """``GET /v1/predictions/{id}``: a request as the audit trail knows it."""

    request_id: str
    kind: Literal["single", "batch"]
    status: Literal["pending", "answered", "failed", "unrequested"]
    label: str | None = None
    probabilities: dict[str, float] | None = None
    predictions: list[RowResult] | None = None
    model_version: int | None = None
    error: str | None = None
    error_code: str | None = None
    feedback: FeedbackInfo | None = None
    trace_id: str | None = None


class ModelVersionInfo(_Answer):
    version: int
    live: bool
    algorithm: str
    created_at: float
    trigger: str
    metrics: dict[str, float]
    feature_names: list[str]
    class_labels: list[str]


class ModelCatalog(_Answer):
    """``GET /v1/models``: every version the gateway knows, oldest first, and the live one."""

    model_name: str
    live_version: int | None
    versions: list[ModelVersionInfo]

    def live(self) -> ModelVersionInfo | None:
        return next((v for v in self.versions if v.version == self.live_version), None)


class OipModel(_Answer):
    """``GET /v2/models/{name}``: the served version, its feature order and its classes."""

    name: str
    versions: list[str]
    platform: str
    feature_names: list[str]
    class_labels: list[str]


@dataclass(frozen=True)
class InferResult:
    """An Open Inference Protocol answer: ``labels[i]`` and ``probabilities[i]`` for row ``i``
    (columns in ``classes`` order). For the rows of several calls (:meth:`concat`),
    ``model_version`` lists each version that answered, comma-separated, and ``id`` is None."""

    model_name: str
    model_version: str
    id: str | None
    labels: list[str]
    probabilities: np.ndarray
    classes: list[str]

    @classmethod
    def concat(cls, parts: list[InferResult]) -> InferResult:
        """The rows of ``parts`` in order, as one result (their classes must agree)."""
        if not parts:
            raise ValueError("no results to join")
        classes = parts[0].classes
        if any(part.classes != classes for part in parts):
            raise ValueError("the answers name different classes (the model changed)")
        versions = list(dict.fromkeys(part.model_version for part in parts))
        return cls(
            model_name=parts[0].model_name,
            model_version=",".join(versions),
            id=parts[0].id if len(parts) == 1 else None,
            labels=[label for part in parts for label in part.labels],
            probabilities=np.concatenate([part.probabilities for part in parts]),
            classes=list(classes),
        )
