"""HTTP bodies. The wire schemas live in :mod:`irisflow.schemas`; these are what clients see."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from irisflow.schemas import (
    REQUEST_ID_PATTERN,
    CommandOutcome,
    FeatureStats,
    FeatureVector,
    RolloutMode,
    RolloutStage,
    RolloutStep,
    VersionReading,
)

__all__ = [
    "MAX_VERSION",
    "REQUEST_ID_DESCRIPTION",
    "Accepted",
    "BatchPredictBody",
    "BatchPredictionPublic",
    "CommandPending",
    "DeploymentStep",
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
    "RolloutPublic",
    "RolloutReasonBody",
    "RolloutStartBody",
    "VersionSummary",
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


class DeploymentStep(BaseModel):
    """One step of a version's deployment history: published live by a retraining (``live``),
    or a rollout decision (``shadow``, ``canary``, ``promoted``, ``rolled_back``, ``aborted``)."""

    at: float = Field(description="Seconds since the epoch")
    stage: str
    decided_by: str = Field(description="policy, trainer, or who sent the command (api, cli)")
    reason: str
    rollout_id: str | None = None
    share: float | None = Field(default=None, description="Share of requests at this step")
    champion_version: int | None = None
    numbers: dict[str, float] = Field(
        default_factory=dict, description="The readings that made the decision"
    )
    trigger: str | None = Field(default=None, description="What started the retraining")
    sources: list[Literal["kafka", "registry"]] = Field(
        description="Where the gateway read it: the rollout topic's state, the registry's "
        "decisions log, or both"
    )


class ModelVersionDetail(ModelVersionPublic):
    reference_stats: dict[str, FeatureStats] = Field(description="Training data, for drift")
    class_prior: dict[str, float]
    data_fingerprint: str
    deployments: list[DeploymentStep] = Field(
        default_factory=list,
        description="Deployment history, oldest first: the retraining that published it and "
        "every rollout step it went through (from the rollout topic, plus the registry's "
        "decisions log where that folder is readable)",
    )


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


MAX_VERSION = 2**31 - 1
"""The largest model version a body may name: versions count retrainings, so a larger number is
a mistake (or an attack), refused with a 422 rather than sent on to the trainer."""


class RolloutStartBody(BaseModel):
    """Start a rollout of ``version`` beside the live champion. As the JSON Schema says: a
    string (``"2"``) for a number, or ``0`` for a boolean, is refused, not coerced; ``2.0`` is
    an integer (JSON Schema's, and pydantic's for an integral float)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"version": 2, "mode": "shadow", "share": 0.1}]},
    )

    version: int = Field(
        ge=1, le=MAX_VERSION, description="The candidate (a version in the registry)"
    )
    mode: RolloutMode = Field(
        description="shadow: a share of requests is also scored by the candidate, clients see "
        "only the champion; canary: a share of requests (chosen by request id) is answered by "
        "the candidate"
    )
    share: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Share of requests; default: the policy's (rollout.shadow_share or "
        "rollout.canary_share)",
    )
    automatic: StrictBool = Field(
        default=True,
        description="Whether the policy may advance (shadow, canary, live) or roll back on its own",
    )

    @field_validator("version", "share", mode="before")
    @classmethod
    def _a_json_number(cls, value: object) -> object:
        """A number as JSON sends it (an integer or a float), not a string or a boolean."""
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError("must be a JSON number, not a string or a boolean")
        return value


class RolloutReasonBody(BaseModel):
    """Why (recorded with the decision)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500)


class VersionSummary(BaseModel):
    """What a rollout's version is, in brief (``GET /v1/models/{version}`` has the rest)."""

    version: int
    algorithm: str
    created_at: float
    trigger: str
    metrics: dict[str, float]


class RolloutPublic(BaseModel):
    """The rollout as the controller last published it (the candidate's bytes left out)."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    stage: RolloutStage | None = Field(
        description="shadow or canary while active; promoted, rolled_back or aborted once "
        "ended; null before the first rollout"
    )
    active: bool
    rollout_id: str | None
    candidate_version: int | None
    candidate: VersionSummary | None = Field(
        description="The candidate's metadata, where this gateway knows it"
    )
    champion_version: int | None
    champion: VersionSummary | None
    share: float = Field(description="Share of requests the candidate scores (shadow) or answers")
    automatic: bool
    started_at: float | None
    updated_at: float | None = Field(description="When the controller last published the state")
    readings: list[VersionReading] = Field(
        description="Per version, on the requests both scored: agreement, class mix, "
        "confidence, latency, errors, labeled accuracy and the label-free estimate"
    )
    steps: list[RolloutStep] = Field(description="This rollout's decisions, oldest first")
    last_command: CommandOutcome | None = Field(
        description="What the controller did with the last command it received"
    )


class CommandPending(BaseModel):
    """The command is on Kafka, but no rollout controller answered within
    ``gateway.command_wait_seconds``: ``irisflow trainer`` applies it when it runs."""

    model_config = ConfigDict(protected_namespaces=())

    status: Literal["pending"] = "pending"
    command_id: str
    action: Literal["start", "promote", "abort"]
    model_name: str
    topic: str
    message: str
