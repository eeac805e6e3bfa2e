"""``GET /v1/predictions/{request_id}`` and ``GET /v1/audit``: the audit trail, read back."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BeforeValidator, WithJsonSchema

from gateway.audit.records import AuditPage, AuditRecord
from gateway.bodies import REQUEST_ID_DESCRIPTION, ErrorBody
from gateway.deps import Audit
from gateway.errors import PredictionNotFound
from gateway.instants import INSTANT_SCHEMA, parse_instant
from irisflow.schemas import REQUEST_ID_PATTERN

router = APIRouter(prefix="/v1", tags=["audit"])

RequestIdPath = Annotated[str, Path(pattern=REQUEST_ID_PATTERN, description=REQUEST_ID_DESCRIPTION)]
Instant = Annotated[
    float | None,
    BeforeValidator(parse_instant),
    WithJsonSchema(INSTANT_SCHEMA),
    Query(description="An RFC 3339 date-time with its offset, or Unix seconds (0 to 1e10)"),
]
"""Unix seconds, from either spelling (:mod:`gateway.instants`)."""


_AUDIT_DOWN: dict[str, Any] = {
    "model": ErrorBody,
    "description": "The audit database did not answer (audit_unavailable); predictions are "
    "still served",
}


@router.get(
    "/predictions/{request_id}",
    response_model=AuditRecord,
    responses={
        404: {
            "model": ErrorBody,
            "description": "No request or feedback with this id is known (yet: the audit is "
            "written from the topics, about a second after a request is accepted)",
        },
        503: _AUDIT_DOWN,
    },
)
async def get_prediction(request_id: RequestIdPath, audit: Audit) -> AuditRecord:
    """A request, its prediction and, once it came, its feedback (from the audit store)."""
    record = await asyncio.to_thread(audit.get, request_id)
    if record is None:
        raise PredictionNotFound(request_id)
    return record


@router.get("/audit", response_model=AuditPage, responses={503: _AUDIT_DOWN})
async def audit(
    audit: Audit,
    since: Instant = None,
    until: Instant = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    order: Annotated[Literal["asc", "desc"], Query(description="by request time")] = "desc",
) -> AuditPage:
    """Requests with their predictions and feedback, by time: ``since`` ≤ time < ``until``."""
    page = audit.page
    records = await asyncio.to_thread(page, since=since, until=until, limit=limit, order=order)
    return AuditPage(records=records, count=len(records), since=since, until=until, order=order)
