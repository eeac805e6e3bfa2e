"""The audit's tables, which columns each topic owns, and a stored row read back.

One row per request id in ``audit_records``: the request, the prediction and the feedback each
write only their own columns (:data:`REQUEST_COLUMNS`, …), so the three may arrive in any order.
Drift alarms are rows of their own, unique per feature, detector and time. Each request's hop
stamps and trace id are a row of ``audit_hops`` (a table of their own, so an audit database
from before them needs no migration: ``create_all`` adds it). Apart from
:mod:`gateway.audit.store` (the engine and the statements) so the schema reads on one page.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Row

from gateway.audit.records import AuditRecord, FeedbackPublic
from gateway.bodies import InstancePublic
from irisflow.tracing import HOPS

__all__ = [
    "FEEDBACK_COLUMNS",
    "HOP_COLUMNS",
    "PREDICTION_COLUMNS",
    "REQUEST_COLUMNS",
    "answers_of",
    "drift_events",
    "hops",
    "instances_of",
    "metadata",
    "records",
    "to_record",
]

#: As long as the wire's longest name (``irisflow.schemas.Name``): PostgreSQL refuses a longer
#: value (SQLite lets it pass), so a shorter column would dead-letter valid records there. Model
#: versions and drift windows are 64-bit for the same reason (the schemas bound neither).
NAME_LENGTH = 256

metadata = MetaData()
records = Table(
    "audit_records",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("at", Float, nullable=False, index=True),
    Column("sent_at", Float),
    Column("features", JSON),
    Column("reply_to", String(NAME_LENGTH)),
    Column("n_instances", Integer, nullable=False),
    Column("label", String(NAME_LENGTH)),
    Column("probabilities", JSON),
    Column("predictions", JSON),
    Column("model_version", BigInteger),
    Column("latency_seconds", Float),
    Column("scored_at", Float, index=True),
    Column("error", Text),
    Column("error_code", String(32)),
    Column("true_label", String(NAME_LENGTH)),
    Column("labeled_at", Float, index=True),
)
drift_events = Table(
    "audit_drift_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(NAME_LENGTH), nullable=False),
    Column("model_version", BigInteger),
    Column("feature", String(NAME_LENGTH), nullable=False),
    Column("detector", String(NAME_LENGTH), nullable=False),
    Column("statistic", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("window_size", BigInteger, nullable=False),
    Column("detected_at", Float, nullable=False, index=True),
    UniqueConstraint("feature", "detector", "detected_at", name="uq_drift_event"),
)

hops = Table(
    "audit_hops",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("trace_id", String(32)),
    *(Column(hop, Float) for hop in HOPS),
)
#: What a hop row may set; each source (request, answer, gateway) updates only the ones it has.
HOP_COLUMNS = ("trace_id", *HOPS)

#: The columns each topic owns (besides ``request_id``); an upsert updates only these.
REQUEST_COLUMNS = ("kind", "at", "sent_at", "features", "reply_to", "n_instances")
PREDICTION_COLUMNS = (
    "kind",
    "label",
    "probabilities",
    "predictions",
    "model_version",
    "latency_seconds",
    "scored_at",
    "error",
    "error_code",
)
FEEDBACK_COLUMNS = ("true_label", "labeled_at")


def _status(row: Row[Any]) -> Literal["pending", "answered", "failed", "unrequested"]:
    if row.error is not None:
        return "failed"
    if row.scored_at is not None:
        return "answered"
    return "pending" if row.sent_at is not None else "unrequested"


def instances_of(features: Any) -> Any:
    """A stored ``features`` value as the API shows it: a matrix (``feature_names`` and
    ``rows``, as the gateway's batches travel) becomes one dict per instance; a single
    instance's dict and a batch's list stay as they are."""
    if isinstance(features, dict) and features.keys() == {"feature_names", "rows"}:
        names = features["feature_names"]
        return [dict(zip(names, row, strict=False)) for row in features["rows"]]
    return features


def answers_of(predictions: Any) -> list[InstancePublic] | None:
    """A stored batch answer, one ``{label, probabilities}`` per instance (stored column-wise
    for a matrix: ``classes``, ``labels``, ``probabilities``)."""
    if predictions is None:
        return None
    if isinstance(predictions, dict):
        classes = predictions["classes"]
        return [
            InstancePublic(label=label, probabilities=dict(zip(classes, row, strict=False)))
            for label, row in zip(predictions["labels"], predictions["probabilities"], strict=False)
        ]
    return [InstancePublic.model_validate(p) for p in predictions]


def to_record(row: Row[Any], hop_row: Row[Any] | None = None) -> AuditRecord:
    feedback = None
    if row.true_label is not None:
        correct = None if row.kind == "batch" or row.label is None else row.label == row.true_label
        feedback = FeedbackPublic(label=row.true_label, labeled_at=row.labeled_at, correct=correct)
    predictions = answers_of(row.predictions)
    return AuditRecord(
        request_id=row.request_id,
        kind=row.kind,
        status=_status(row),
        at=row.at,
        sent_at=row.sent_at,
        features=instances_of(row.features),
        reply_to=row.reply_to,
        n_instances=row.n_instances,
        label=row.label,
        probabilities=row.probabilities,
        predictions=predictions,
        model_version=row.model_version,
        latency_seconds=row.latency_seconds,
        scored_at=row.scored_at,
        error=row.error,
        error_code=row.error_code,
        feedback=feedback,
        trace_id=hop_row.trace_id if hop_row is not None else None,
        hops=_hops(hop_row),
    )


def _hops(row: Row[Any] | None) -> dict[str, float] | None:
    if row is None:
        return None
    known = {hop: at for hop in HOPS if (at := getattr(row, hop)) is not None}
    return known or None
