"""The wire contract: one frozen pydantic model per topic, shared by every component.

Values on every topic are JSON. Each message carries ``schema_version`` so a consumer can tell
an old producer from a broken one. Consumers decode once, at the edge, through their topic's
codec (:mod:`irisflow.topics`), which turns any parse or validation failure into a
:class:`~irisflow.topics.Refused` whose message names the offending field; that message is
what a dead letter records and what an HTTP 422 shows. Floats are finite, strings and
timestamps bounded, so nothing a producer sends can make a consumer compute with NaN.

Over 300 lines on purpose: the wire contract is one module (a reader sees every topic's shape
in one place, and every component imports it from here).
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)

from irisflow.errors import SchemaError

__all__ = [
    "REQUEST_ID_PATTERN",
    "SCHEMA_VERSION",
    "BatchPrediction",
    "BatchPredictionRequest",
    "DeadLetter",
    "DriftEvent",
    "ErrorCode",
    "FeatureStats",
    "FeatureVector",
    "Feedback",
    "InstancePrediction",
    "LabeledSample",
    "MatrixPrediction",
    "MatrixPredictionRequest",
    "ModelMetadata",
    "ModelUpdate",
    "Prediction",
    "PredictionRequest",
    "RetrainRequest",
    "WireMessage",
    "clip",
    "describe_validation_error",
    "now",
]

SCHEMA_VERSION = 1

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
FeatureVector = dict[str, FiniteFloat]
StrictFiniteFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
"""A JSON number (an integer is taken as a float), finite: no ``true``, no ``"5.1"``."""
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
RequestId = Annotated[str, Field(pattern=REQUEST_ID_PATTERN)]
"""1-128 of ``A-Z a-z 0-9 . _ : -``, starting with a letter or digit: safe in a URL path, a log
line, a Kafka key and a file name (no ``/``, no ``.`` or ``..``, no control or bidi
characters)."""
Timestamp = Annotated[float, Field(ge=0.0, le=1e10)]
"""Seconds since the epoch, finite and before the year 2286 (dates stay representable)."""
Seconds = Annotated[float, Field(ge=0.0)]
Name = Annotated[str, Field(min_length=1, max_length=256)]
Text = Annotated[str, Field(max_length=4096)]
Digest = Annotated[str, Field(min_length=1, max_length=128)]
MAX_TEXT = 4000


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut (error texts stay bounded)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}… ({len(text) - limit + 40} more characters)"


def now() -> float:
    """Wall-clock seconds since the epoch: timestamps cross processes and hosts."""
    return time.time()


def describe_validation_error(error: ValidationError, *, most: int = 10) -> str:
    """One line naming each bad field, e.g. ``features.petal_width: Input should be a number``.

    At most ``most`` fields are named, then a count: a record with 50,000 bad fields must not
    make a 10 MB error message.
    """
    items = error.errors()
    parts = []
    for item in items[:most]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    if len(items) > most:
        parts.append(f"and {len(items) - most} more")
    return clip("; ".join(parts))


class ErrorCode(StrEnum):
    """Why a request was answered with an error instead of a label: one word the worker writes,
    the audit stores and the gateway maps to an HTTP status (in ``gateway/errors.py``)."""

    NO_MODEL = "no_model"
    """No model is live yet (HTTP 503: retry once one is)."""
    INVALID_REQUEST = "invalid_request"
    """The request could not be decoded, or the model could not score it (HTTP 422)."""
    SCHEMA_MISMATCH = "schema_mismatch"
    """Feature names other than the live model's (HTTP 422)."""
    OUT_OF_DOMAIN = "out_of_domain"
    """Values the model cannot compute with (HTTP 422)."""


class WireMessage(BaseModel):
    """Base of every topic value: frozen, JSON on the wire, tolerant of unknown extra fields."""

    # bytes fields (artifacts, dead-lettered originals) travel as base64 inside the JSON.
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        protected_namespaces=(),
        ser_json_bytes="base64",
        val_json_bytes="base64",
        allow_inf_nan=False,
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


class _Request(WireMessage):
    """What every request carries besides its features: its id, when, and for whom."""

    request_id: RequestId
    sent_at: Timestamp = Field(default_factory=now)
    reply_to: Name | None = None
    """Which gateway replica waits for the answer (informational; replies are matched by id)."""
    input_digest: Digest | None = None
    """A digest of the input, echoed in the answer: a gateway accepts only the answer to what it
    sent, even if two requests share an id."""


class PredictionRequest(_Request):
    """``irisflow.requests``, keyed by request_id: one instance to score."""

    features: FeatureVector


class BatchPredictionRequest(_Request):
    """``irisflow.requests``, keyed by request_id: many instances in one message.

    The batch endpoint and the producers use it so that one Kafka record carries up to
    ``gateway.max_batch_instances`` rows; it is answered by one :class:`BatchPrediction`.
    """

    instances: list[FeatureVector] = Field(min_length=1)


class MatrixPredictionRequest(_Request):
    """``irisflow.requests``, keyed by request_id: many instances as one matrix.

    The gateway's batches (``/v1/predict/batch`` and the Open Inference Protocol) travel in this
    form: the feature names once, then one row of numbers per instance, in those names' order.
    Decoding it validates every number in pydantic's core (no Python object per row) and the
    worker turns ``rows`` into its matrix in one call, so a 1,000-row batch costs about what
    one dict-shaped instance used to cost per row. Answered by one :class:`MatrixPrediction`.
    """

    feature_names: list[Name] = Field(min_length=1, max_length=10_000)
    rows: list[list[StrictFiniteFloat]] = Field(min_length=1)

    @model_validator(mode="after")
    def _rectangular(self) -> Self:
        seen: set[str] = set()
        for name in self.feature_names:
            if name in seen:
                raise ValueError(f"feature_names: {name!r} is named twice")
            seen.add(name)
        width = len(seen)
        for index, row in enumerate(self.rows):
            if len(row) != width:
                raise ValueError(
                    f"rows.{index}: {len(row)} values for {width} feature_names "
                    "(every row holds one value per name, in their order)"
                )
        return self


class _Answer(WireMessage):
    """What every answer carries: the request it answers, the version, when, or why not.

    Exactly one visible answer per request: a result (label or per-instance answers, and the
    model version) or an error with its code, never something in between.
    """

    request_id: RequestId
    model_version: int | None = Field(default=None, ge=1)
    latency_seconds: Seconds = 0.0
    scored_at: Timestamp = Field(default_factory=now)
    error: Text | None = None
    error_code: ErrorCode | None = None
    reply_to: Name | None = None
    input_digest: Digest | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def _has_result(self) -> bool:
        raise NotImplementedError

    @model_validator(mode="after")
    def _result_or_error(self) -> Self:
        if self.error is None and (not self._has_result() or self.model_version is None):
            raise ValueError(
                f"a {type(self).__name__} without an error needs its result and a model_version"
            )
        if self.error is not None and self.error_code is None:
            raise ValueError("an error answer needs an error_code")
        return self


class Prediction(_Answer):
    """``irisflow.predictions``, keyed by request_id: the answer to one request.

    A request that cannot be scored (no model live yet, features that do not fit the model) still
    gets a Prediction, with ``error`` set and no label, so no caller waits for nothing.
    """

    label: Name | None = None
    probabilities: dict[str, float] = Field(default_factory=dict)

    def _has_result(self) -> bool:
        return self.label is not None


class InstancePrediction(BaseModel):
    """One row's answer inside a :class:`BatchPrediction`."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    label: Name
    probabilities: dict[str, float]


class BatchPrediction(_Answer):
    """``irisflow.predictions``, keyed by request_id: the answer to a BatchPredictionRequest,
    one entry per instance in request order (or ``error`` and no entries)."""

    predictions: list[InstancePrediction] = Field(default_factory=list)

    def _has_result(self) -> bool:
        return bool(self.predictions)


class MatrixPrediction(_Answer):
    """``irisflow.predictions``, keyed by request_id: the answer to a
    :class:`MatrixPredictionRequest`, column-wise: the classes once, then one label and one row
    of probabilities (in ``classes`` order) per instance, in request order (or ``error`` and
    none of them)."""

    classes: list[Name] = Field(default_factory=list)
    labels: list[Name] = Field(default_factory=list)
    probabilities: list[list[StrictFiniteFloat]] = Field(default_factory=list)

    def _has_result(self) -> bool:
        return bool(self.labels)

    @model_validator(mode="after")
    def _one_row_per_label(self) -> Self:
        if len(self.probabilities) != len(self.labels):
            raise ValueError(
                f"{len(self.labels)} labels but {len(self.probabilities)} rows of probabilities"
            )
        width = len(self.classes)
        if any(len(row) != width for row in self.probabilities):
            raise ValueError(f"every row of probabilities needs {width} values (one per class)")
        return self


class Feedback(WireMessage):
    """``irisflow.feedback``, keyed by request_id: the true label, possibly minutes later."""

    request_id: RequestId
    label: Name
    labeled_at: Timestamp = Field(default_factory=now)


class LabeledSample(WireMessage):
    """``irisflow.labeled``: a prediction joined with its feedback; the trainer's input."""

    request_id: RequestId
    features: FeatureVector
    true_label: Name
    predicted_label: Name | None = None
    model_version: int | None = Field(default=None, ge=1)
    labeled_at: Timestamp = Field(default_factory=now)


class FeatureStats(BaseModel):
    """Reference statistics of one feature in the training data, for drift detection."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    mean: float
    std: float
    min: float
    max: float
    quantiles: list[float] = Field(default_factory=list)
    """Decile edges (10%..90%), used for PSI bins."""


class ModelMetadata(WireMessage):
    """Everything about a model version except its bytes: what registries and dashboards show."""

    model_name: Name
    version: int = Field(ge=1)
    created_at: Timestamp = Field(default_factory=now)
    algorithm: Name
    feature_names: list[Name] = Field(min_length=1)
    class_labels: list[Name] = Field(min_length=2)
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

    model_name: Name
    model_version: int | None = Field(default=None, ge=1)
    feature: Name
    detector: Name
    statistic: float
    threshold: float
    window: int = Field(ge=0)
    detected_at: Timestamp = Field(default_factory=now)


class RetrainRequest(WireMessage):
    """``irisflow.retrain-requests``, keyed by model name: manual and drift triggers."""

    model_name: Name
    reason: Text
    requested_by: Name = "cli"
    requested_at: Timestamp = Field(default_factory=now)


class DeadLetter(WireMessage):
    """``irisflow.dead-letters``, keyed by the original key: nothing is dropped silently.

    ``reason`` is one word from :class:`irisflow.topics.Reason` (for filters, metrics and
    alerts); ``error`` says in a sentence what was wrong. ``original`` is the record's value as
    it was, so ``irisflow dlq replay`` can publish it again once the cause is fixed.
    """

    source_topic: Name
    partition: int | None = None
    offset: int | None = None
    original: bytes
    original_size: int | None = None
    """Bytes of the original value; larger than ``len(original)`` only when it was truncated to
    fit the dead-letter topic."""
    original_key: bytes | None = None
    """Set only when the record's key was too long to be the letter's Kafka key (the letter is
    then keyed by its digest); replay uses it."""
    original_key_size: int | None = None
    error: Text
    reason: Name = "invalid"
    consumer: Name = "unknown"
    """Which consumer refused the record (``streams.scoring``, ``trainer``, ``gateway.audit``…)."""
    first_seen: Timestamp = Field(default_factory=now)
