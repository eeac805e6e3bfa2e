"""What the audit endpoints return: one record per request id, and the dashboard's statistics."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.bodies import InstancePublic

__all__ = ["AuditPage", "AuditRecord", "DriftAlarm", "FeedbackPublic", "Stats", "Totals"]

Features = dict[str, float] | list[dict[str, float]]


class FeedbackPublic(BaseModel):
    label: str
    labeled_at: float
    correct: bool | None = Field(description="Whether the prediction matched; null for batches")


class AuditRecord(BaseModel):
    """A request and, once known, its prediction and feedback. Times are Unix seconds."""

    model_config = ConfigDict(protected_namespaces=())

    request_id: str
    kind: Literal["single", "batch"]
    status: Literal["pending", "answered", "failed", "unrequested"] = Field(
        description=(
            "pending: seen, not answered yet; failed: answered with an error; unrequested: "
            "feedback arrived for an id no request was seen for (a later request with this id "
            "is scored as new)"
        )
    )
    at: float = Field(description="When the request was sent (or first seen)")
    sent_at: float | None = None
    features: Features | None = Field(default=None, description="Instances, for a batch")
    reply_to: str | None = None
    n_instances: int = 1
    label: str | None = None
    probabilities: dict[str, float] | None = None
    predictions: list[InstancePublic] | None = None
    model_version: int | None = None
    latency_seconds: float | None = None
    scored_at: float | None = None
    error: str | None = None
    error_code: str | None = None
    feedback: FeedbackPublic | None = None
    trace_id: str | None = Field(
        default=None, description="The W3C trace id the request travelled under (32 hex)"
    )
    hops: dict[str, float] | None = Field(
        default=None,
        description=(
            "When each hop happened (Unix seconds), in path order: gateway_received, "
            "gateway_published, worker_fetched, worker_scored, worker_published, "
            "gateway_answered; only those known to this audit"
        ),
    )


class AuditPage(BaseModel):
    records: list[AuditRecord]
    count: int
    since: float | None
    until: float | None
    order: Literal["asc", "desc"]


class DriftAlarm(BaseModel):
    """A ``DriftEvent`` read from the drift-events topic."""

    model_config = ConfigDict(protected_namespaces=())

    feature: str
    detector: str
    statistic: float
    threshold: float
    model_version: int | None
    detected_at: float


class Totals(BaseModel):
    predictions: int = Field(description="Instances answered with a label in the window")
    errors: int = Field(description="Requests answered with an error")
    feedback: int = Field(description="Feedback received for single predictions")
    correct: int
    accuracy: float | None


class Stats(BaseModel):
    """Time series for the dashboard, one value per bucket (null: nothing in that bucket)."""

    model_config = ConfigDict(protected_namespaces=())

    now: float
    window_seconds: float
    bucket_seconds: float
    buckets: list[float] = Field(description="Start of each bucket, Unix seconds")
    throughput: list[float] = Field(description="Predictions per second")
    latency_p50: list[float | None] = Field(description="Seconds, worker-side")
    latency_p95: list[float | None]
    accuracy: list[float | None] = Field(description="Share of feedback matching the prediction")
    drift: dict[str, list[float | None]] = Field(
        description="Per feature: |mean - reference mean| / reference std of the inputs"
    )
    drift_events: list[DriftAlarm]
    totals: Totals
    live_version: int | None
