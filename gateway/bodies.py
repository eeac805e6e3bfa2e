"""HTTP bodies. The wire schemas live in :mod:`irisflow.schemas`; these are what clients see."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from irisflow.schemas import REQUEST_ID_PATTERN, FeatureStats, FeatureVector

__all__ = [
    "REQUEST_ID_DESCRIPTION",
    "Accepted",
    "BatchPredictBody",
    "BatchPredictionPublic",
    "ErrorBody",
    "ErrorDetail",
    "FeedbackAccepted",
    "FeedbackBody",
    "FieldError",
    "InstancePublic",
    "ModelList",
    "ModelVersionDetail",
    "ModelVersionPublic",
    "PredictBody",
    "PredictionPublic",
    "PromoteAccepted",
    "RetrainAccepted",
    "RetrainBody",
]

_SETOSA: dict[str, Any] = {
    "sepal_length": 5.1,
    "sepal_width": 3.5,
    "petal_length": 1.4,
    "petal_width": 0.2,
}
_VIRGINICA: dict[str, Any] = {
    "sepal_length": 6.7,
    "sepal_width": 3.0,
    "petal_length": 5.8,
    "petal_width": 2.2,
}

REQUEST_ID_DESCRIPTION = (
    "1-128 of A-Z a-z 0-9 . _ : - (safe in a URL, a log line and a Kafka key). "
)
ClientRequestId = Annotated[
    str | None,
    Field(
        default=None,
        pattern=REQUEST_ID_PATTERN,
        description=REQUEST_ID_DESCRIPTION
        + "Your own id: repeating it returns the first answer and scores nothing again",
    ),
]


class PredictBody(BaseModel):
    """One instance to score. Send your own ``request_id`` to make retries idempotent."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"features": _SETOSA}]}
    )

    features: FeatureVector
    request_id: ClientRequestId = None


class BatchPredictBody(BaseModel):
    """Many instances in one call (one Kafka record), up to ``gateway.max_batch_instances``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"instances": [_SETOSA, _VIRGINICA]}]}
    )

    instances: list[FeatureVector] = Field(min_length=1)
    request_id: ClientRequestId = None


Latency = Annotated[
    float,
    Field(
        description="What the client waited, as the gateway saw it: from the request arriving "
        "at the gateway to its answer leaving (Kafka both ways and the worker included)"
    ),
]
WorkerShare = Annotated[
    float | None,
    Field(
        description="The worker's share of that: from fetching the request to handing its "
        "answer to Kafka (absent for answers replayed from the audit)"
    ),
]


class PredictionPublic(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    request_id: str
    label: str
    probabilities: dict[str, float]
    model_version: int
    latency_seconds: Latency
    worker_seconds: WorkerShare = None


class InstancePublic(BaseModel):
    label: str
    probabilities: dict[str, float]


class BatchPredictionPublic(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    request_id: str
    model_version: int
    predictions: list[InstancePublic] = Field(description="One per instance, in request order")
    latency_seconds: Latency
    worker_seconds: WorkerShare = None


class Accepted(BaseModel):
    """``?wait=false``: the request is on its way; fetch the answer from ``result_url``."""

    request_id: str
    status: Literal["accepted"] = "accepted"
    result_url: str


class FeedbackBody(BaseModel):
    """The true label of an earlier prediction, for live accuracy and retraining."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"request_id": "client-42", "label": "setosa"}]},
    )

    request_id: str = Field(
        pattern=REQUEST_ID_PATTERN, description=REQUEST_ID_DESCRIPTION + "The prediction's id"
    )
    label: str = Field(min_length=1, max_length=128, description="One of the live model's classes")


class FeedbackAccepted(BaseModel):
    request_id: str
    label: str
    topic: str


class RetrainBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="requested through the gateway", min_length=1, max_length=500)


class RetrainAccepted(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    reason: str
    topic: str


class PromoteAccepted(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    version: int
    source: Literal["registry", "kafka"]
    topic: str


class FieldError(BaseModel):
    field: str
    message: str


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str
    fields: list[FieldError] = Field(default_factory=list)
    limit: int | None = Field(
        default=None, description="For 413: the most instances, or body bytes, allowed"
    )


class ErrorBody(BaseModel):
    """Every error the gateway returns has this shape."""

    error: ErrorDetail


class ModelVersionPublic(BaseModel):
    """A model version with its metrics; ``sources`` says where the gateway learned of it."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    version: int
    live: bool
    algorithm: str
    created_at: float
    trigger: str
    parent_version: int | None
    metrics: dict[str, float]
    feature_names: list[str]
    class_labels: list[str]
    sha256: str
    sources: list[Literal["kafka", "registry"]]


class ModelVersionDetail(ModelVersionPublic):
    reference_stats: dict[str, FeatureStats] = Field(description="Training data, for drift")
    class_prior: dict[str, float]
    data_fingerprint: str


class ModelList(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    live_version: int | None
    versions: list[ModelVersionPublic] = Field(description="Oldest first")
    note: str = Field(
        default=(
            "Versions seen on the compacted model-updates topic since this gateway started, plus "
            "the local registry folder if present; older versions compacted away before then "
            "are listed only where the registry folder is readable."
        )
    )
