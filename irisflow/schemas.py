"""The wire contract: one frozen pydantic model per topic, shared by every component.

Values on every topic are JSON. Each message carries ``schema_version`` so a consumer can tell
an old producer from a broken one. Decoding happens once, at the edge, through
:meth:`WireMessage.from_bytes`, which turns any parse or validation failure into a
:class:`~irisflow.errors.SchemaError` whose message names the offending field; that message is
what a dead letter records and what an HTTP 422 shows.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal, Self

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)

from irisflow.errors import SchemaError

__all__ = [
    "SCHEMA_VERSION",
    "BatchPrediction",
    "BatchPredictionRequest",
    "DeadLetter",
    "DriftEvent",
    "FeatureStats",
    "FeatureVector",
    "Feedback",
    "InstancePrediction",
    "LabeledSample",
    "ModelMetadata",
    "ModelUpdate",
    "Prediction",
    "PredictionRequest",
    "RetrainRequest",
    "WireMessage",
    "decode_request",
    "describe_validation_error",
    "now",
]

SCHEMA_VERSION = 1

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
FeatureVector = dict[str, FiniteFloat]
RequestId = Annotated[str, Field(min_length=1, max_length=128)]


def now() -> float:
    """Wall-clock seconds since the epoch: timestamps cross processes and hosts."""
    return time.time()


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each bad field, e.g. ``features.petal_width: Input should be a number``."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class WireMessage(BaseModel):
    """Base of every topic value: frozen, JSON on the wire, tolerant of unknown extra fields."""

    # bytes fields (artifacts, dead-lettered originals) travel as base64 inside the JSON.
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        protected_namespaces=(),
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )

    schema_version: int = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> Self:
        if raw is None:
            raise SchemaError(f"{cls.__name__}: empty message (tombstone or null value)")
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise SchemaError(f"{cls.__name__}: {describe_validation_error(exc)}") from exc


class PredictionRequest(WireMessage):
    """``irisflow.requests``, keyed by request_id: one instance to score."""

    request_id: RequestId
    features: FeatureVector
    sent_at: float = Field(default_factory=now)
    reply_to: str | None = None
    """Which gateway replica waits for the answer (informational; replies are matched by id)."""


class Prediction(WireMessage):
    """``irisflow.predictions``, keyed by request_id: exactly one visible answer per request.

    A request that cannot be scored (no model live yet, features that do not fit the model) still
    gets a Prediction, with ``error`` set and no label, so no caller waits for nothing.
    """

    request_id: RequestId
    label: str | None = None
    probabilities: dict[str, float] = Field(default_factory=dict)
    model_version: int | None = None
    latency_seconds: float = 0.0
    scored_at: float = Field(default_factory=now)
    error: str | None = None
    error_code: Literal["no_model", "invalid_request", "schema_mismatch"] | None = None
    reply_to: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class BatchPredictionRequest(WireMessage):
    """``irisflow.requests``, keyed by request_id: many instances in one message.

    The batch endpoint and the producers use it so that one Kafka record carries up to
    ``gateway.max_batch_instances`` rows; it is answered by one :class:`BatchPrediction`.
    """

    request_id: RequestId
    instances: list[FeatureVector] = Field(min_length=1)
    sent_at: float = Field(default_factory=now)
    reply_to: str | None = None


class InstancePrediction(BaseModel):
    """One row's answer inside a :class:`BatchPrediction`."""

    model_config = ConfigDict(frozen=True)

    label: str
    probabilities: dict[str, float]


class BatchPrediction(WireMessage):
    """``irisflow.predictions``, keyed by request_id: the answer to a BatchPredictionRequest,
    one entry per instance in request order (or ``error`` and no entries)."""

    request_id: RequestId
    predictions: list[InstancePrediction] = Field(default_factory=list)
    model_version: int | None = None
    latency_seconds: float = 0.0
    scored_at: float = Field(default_factory=now)
    error: str | None = None
    error_code: Literal["no_model", "invalid_request", "schema_mismatch"] | None = None
    reply_to: str | None = None


def decode_request(raw: bytes | str | None) -> PredictionRequest | BatchPredictionRequest:
    """Decode a value of the requests topic, which carries both shapes.

    The JSON decides: an object with ``instances`` is a :class:`BatchPredictionRequest`, anything
    else must be a :class:`PredictionRequest`. Failures raise :class:`SchemaError` like
    :meth:`WireMessage.from_bytes`, naming the shape that was expected.
    """
    if raw is None:
        raise SchemaError("PredictionRequest: empty message (tombstone or null value)")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"PredictionRequest: not a JSON document ({exc})") from exc
    shape: type[PredictionRequest] | type[BatchPredictionRequest] = PredictionRequest
    if isinstance(body, dict) and "instances" in body:
        shape = BatchPredictionRequest
    try:
        return shape.model_validate(body)
    except ValidationError as exc:
        raise SchemaError(f"{shape.__name__}: {describe_validation_error(exc)}") from exc


class Feedback(WireMessage):
    """``irisflow.feedback``, keyed by request_id: the true label, possibly minutes later."""

    request_id: RequestId
    label: str = Field(min_length=1)
    labeled_at: float = Field(default_factory=now)


class LabeledSample(WireMessage):
    """``irisflow.labeled``: a prediction joined with its feedback; the trainer's input."""

    request_id: RequestId
    features: FeatureVector
    true_label: str
    predicted_label: str | None = None
    model_version: int | None = None
    labeled_at: float = Field(default_factory=now)


class FeatureStats(BaseModel):
    """Reference statistics of one feature in the training data, for drift detection."""

    model_config = ConfigDict(frozen=True)

    mean: float
    std: float
    min: float
    max: float
    quantiles: list[float] = Field(default_factory=list)
    """Decile edges (10%..90%), used for PSI bins."""


class ModelMetadata(WireMessage):
    """Everything about a model version except its bytes: what registries and dashboards show."""

    model_name: str
    version: int = Field(ge=1)
    created_at: float = Field(default_factory=now)
    algorithm: str
    feature_names: list[str]
    class_labels: list[str]
    metrics: dict[str, float] = Field(default_factory=dict)
    reference_stats: dict[str, FeatureStats] = Field(default_factory=dict)
    class_prior: dict[str, float] = Field(default_factory=dict)
    data_fingerprint: str = ""
    parent_version: int | None = None
    trigger: str = "manual"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    artifact_format: Literal["skops"] = "skops"


class ModelUpdate(ModelMetadata):
    """``irisflow.model-updates`` (compacted, keyed by model name): the live version and its bytes.

    The last record for a model name is what is live; publishing an older version again is a
    rollback. The artifact travels base64-encoded so that a worker needs nothing but Kafka.
    """

    artifact: bytes

    def metadata(self) -> ModelMetadata:
        return ModelMetadata.model_validate(self.model_dump(exclude={"artifact"}))


class DriftEvent(WireMessage):
    """``irisflow.drift-events``, keyed by feature/detector: an alarm, not every reading."""

    model_name: str
    model_version: int | None = None
    feature: str
    detector: str
    statistic: float
    threshold: float
    window: int
    detected_at: float = Field(default_factory=now)


class RetrainRequest(WireMessage):
    """``irisflow.retrain-requests``, keyed by model name: manual and drift triggers."""

    model_name: str
    reason: str
    requested_by: str = "cli"
    requested_at: float = Field(default_factory=now)


class DeadLetter(WireMessage):
    """``irisflow.dead-letters``, keyed by the original key: nothing is dropped silently."""

    source_topic: str
    partition: int | None = None
    offset: int | None = None
    original: bytes
    error: str
    first_seen: float = Field(default_factory=now)
