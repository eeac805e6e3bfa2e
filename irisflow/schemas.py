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

import itertools
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
    "ACTIVE_STAGES",
    "REQUEST_ID_PATTERN",
    "SCHEMA_VERSION",
    "BatchPrediction",
    "BatchPredictionRequest",
    "Calibration",
    "CommandOutcome",
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
    "RolloutCommand",
    "RolloutMode",
    "RolloutStage",
    "RolloutState",
    "RolloutStep",
    "ShadowPrediction",
    "VersionReading",
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
    shadow_version: int | None = Field(default=None, ge=1)
    """During a rollout, the other version that scored this request (its answer went to
    ``irisflow.shadow-predictions``), so both versions are judged on the same labels."""
    shadow_label: Name | None = None


class FeatureStats(BaseModel):
    """Reference statistics of one feature in the training data, for drift detection."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    mean: float
    std: float
    min: float
    max: float
    quantiles: list[float] = Field(default_factory=list)
    """Decile edges (10%..90%), used for PSI bins."""


class Calibration(BaseModel):
    """How often a model's top class is right, as a function of its top-class probability.

    Fitted by the trainer on out-of-fold cross-validation predictions of the whole training set
    (the few dozen rows of a holdout give a step function that overfits), stored as plain
    numbers so a worker or gateway applies it with ``numpy.interp`` and never unpickles anything.
    ``confidence`` rises strictly; ``accuracy`` never falls; both lie in [0, 1].
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    confidence: list[float] = Field(min_length=2, max_length=1000)
    accuracy: list[float] = Field(min_length=2, max_length=1000)
    samples: int = Field(ge=1)
    """Out-of-fold predictions the map was fitted on."""
    method: Name = "isotonic-oof"

    @model_validator(mode="after")
    def _monotone(self) -> Self:
        xs, ys = self.confidence, self.accuracy
        if len(xs) != len(ys):
            raise ValueError("confidence and accuracy must have the same length")
        if any(not 0.0 <= v <= 1.0 for v in (*xs, *ys)):
            raise ValueError("confidence and accuracy values must lie in [0, 1]")
        if any(b <= a for a, b in itertools.pairwise(xs)):
            raise ValueError("confidence must rise strictly")
        if any(b < a for a, b in itertools.pairwise(ys)):
            raise ValueError("accuracy must not fall as confidence rises")
        return self


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
    calibration: Calibration | None = None
    """How often this model is right at each confidence (label-free estimates read it); ``None``
    for versions trained before calibration existed."""
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


class RolloutMode(StrEnum):
    """How a candidate meets traffic: ``shadow`` scores a share of requests beside the champion
    and answers nobody; ``canary`` answers a share of requests (chosen by request id)."""

    SHADOW = "shadow"
    CANARY = "canary"


class RolloutStage(StrEnum):
    """Where a rollout is: the two active stages, then exactly one ending."""

    SHADOW = "shadow"
    CANARY = "canary"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    """Ended by the policy: the candidate's numbers crossed a rollback threshold."""
    ABORTED = "aborted"
    """Ended by a person (``irisflow rollout abort``, ``POST /v1/rollout/abort``)."""


ACTIVE_STAGES = frozenset({RolloutStage.SHADOW, RolloutStage.CANARY})

Share = Annotated[float, Field(gt=0.0, le=1.0)]


class RolloutCommand(WireMessage):
    """``irisflow.rollout-commands``, keyed by model name: what a person asks of the rollout
    controller (the trainer), the only writer of rollout state, so two gateways or a gateway and
    the CLI can never race each other into two states."""

    model_name: Name
    command_id: RequestId
    action: Literal["start", "promote", "abort"]
    version: int | None = Field(default=None, ge=1)
    mode: RolloutMode | None = None
    share: Share | None = None
    """``None``: the policy's share for ``mode`` (``rollout.shadow_share`` / ``canary_share``)."""
    automatic: bool = True
    """Whether the policy may advance or roll back this rollout on its own."""
    reason: Text = ""
    requested_by: Name = "cli"
    requested_at: Timestamp = Field(default_factory=now)

    @model_validator(mode="after")
    def _start_names_what(self) -> Self:
        if self.action == "start" and (self.version is None or self.mode is None):
            raise ValueError("a start command needs a version and a mode")
        return self


class RolloutStep(BaseModel):
    """One recorded decision of a rollout, with the numbers that made it."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    at: Timestamp = Field(default_factory=now)
    rollout_id: RequestId
    version: int = Field(ge=1)
    """The candidate."""
    champion_version: int | None = Field(default=None, ge=1)
    stage: RolloutStage
    share: float = Field(ge=0.0, le=1.0)
    decided_by: Name
    """``policy``, or who sent the command (``api``, ``cli``, ``trainer``)."""
    reason: Text
    numbers: dict[str, float] = Field(default_factory=dict)


class VersionReading(BaseModel):
    """One version's live numbers during a rollout, counted on the requests both versions scored
    (so champion and candidate are compared on the same traffic)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    version: int = Field(ge=1)
    role: Literal["champion", "candidate"]
    scored: int = Field(default=0, ge=0)
    """Rows this version scored during the rollout (shadow or served)."""
    served: int = Field(default=0, ge=0)
    """Answers clients got from this version during the rollout, on the paired requests."""
    errors: int = Field(default=0, ge=0)
    """Requests this version refused or raised on while the other answered."""
    agreement: float | None = None
    """Share of paired rows where this version's label equals the champion's."""
    class_mix: dict[str, float] = Field(default_factory=dict)
    class_psi: float | None = None
    """Predicted-class mix vs the training prior (population stability index)."""
    confidence_mean: float | None = None
    confidence_histogram: list[int] = Field(default_factory=list)
    """Top-class probabilities in ten bins of 0.1."""
    latency_p50_seconds: float | None = None
    latency_p99_seconds: float | None = None
    """The worker's scoring time of this version's share of a batch, per batch."""
    labeled: int = Field(default=0, ge=0)
    accuracy: float | None = None
    macro_f1: float | None = None
    estimated_accuracy: float | None = None
    """Expected accuracy from calibrated confidences (no labels needed)."""
    estimated_samples: int = Field(default=0, ge=0)


class CommandOutcome(BaseModel):
    """What the controller did with the last command (gateways wait for it to answer HTTP)."""

    model_config = ConfigDict(frozen=True)

    command_id: RequestId
    action: Name
    accepted: bool
    status: int = Field(ge=200, le=599)
    """The HTTP status it maps to: 200, or 404 (unknown version), 409 (conflicting state),
    422 (impossible request)."""
    error: Text | None = None


class RolloutState(WireMessage):
    """``irisflow.rollouts`` (compacted, keyed by model name): the rollout every worker and
    gateway follows. The newest record is the whole truth (stage, share, candidate bytes,
    readings, decisions), so a restarted worker resumes from it alone. Written only by the
    rollout controller in the trainer."""

    model_name: Name
    rollout_id: RequestId | None = None
    """``None`` only before the first rollout (a record that carries just a command outcome)."""
    stage: RolloutStage | None = None
    candidate_version: int | None = Field(default=None, ge=1)
    champion_version: int | None = Field(default=None, ge=1)
    share: float = Field(default=0.0, ge=0.0, le=1.0)
    automatic: bool = True
    started_at: Timestamp | None = None
    updated_at: Timestamp = Field(default_factory=now)
    steps: list[RolloutStep] = Field(default_factory=list, max_length=100)
    """This rollout's decisions, oldest first."""
    readings: list[VersionReading] = Field(default_factory=list, max_length=2)
    candidate: ModelUpdate | None = None
    """The candidate's bytes while the rollout is active; ``None`` once it ended."""
    last_command: CommandOutcome | None = None
    history: list[RolloutStep] = Field(default_factory=list, max_length=500)
    """Earlier rollouts' decisions, oldest first (deployment history without a registry)."""

    @property
    def active(self) -> bool:
        return self.stage in ACTIVE_STAGES and self.candidate is not None


class ShadowPrediction(WireMessage):
    """``irisflow.shadow-predictions``, keyed by request id: during a rollout, the answer of the
    version a client did *not* get, next to the one it did. In shadow mode that is the candidate;
    in canary mode, for requests the candidate served, the champion."""

    request_id: RequestId
    rollout_id: RequestId
    mode: RolloutMode
    version: int = Field(ge=1)
    served_version: int = Field(ge=1)
    labels: list[Name] = Field(default_factory=list)
    """One per instance (a single request has one)."""
    served_labels: list[Name] = Field(default_factory=list)
    confidences: list[FiniteFloat] = Field(default_factory=list)
    served_confidences: list[FiniteFloat] = Field(default_factory=list)
    error: Text | None = None
    """Why ``version`` gave no labels for this request (it refused or raised)."""
    served_error: Text | None = None
    seconds: Seconds = 0.0
    """``version``'s scoring time for its part of the batch this request came in."""
    served_seconds: Seconds = 0.0
    scored_at: Timestamp = Field(default_factory=now)
