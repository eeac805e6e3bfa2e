"""``GET /v1/predictions/{request_id}`` and ``GET /v1/audit``: the audit trail, read back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from gateway.audit.records import AuditPage, AuditRecord
from gateway.bodies import REQUEST_ID_DESCRIPTION, ErrorBody
from gateway.deps import Audit
from gateway.errors import PredictionNotFound
from irisflow.schemas import REQUEST_ID_PATTERN

router = APIRouter(prefix="/v1", tags=["audit"])

RequestIdPath = Annotated[str, Path(pattern=REQUEST_ID_PATTERN, description=REQUEST_ID_DESCRIPTION)]
Instant = Annotated[
    datetime | None,
    Query(description="ISO 8601 (UTC if no offset) or Unix seconds"),
]


def _seconds(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@router.get(
    "/predictions/{request_id}",
    response_model=AuditRecord,
    responses={404: {"model": ErrorBody, "description": "No request with this id is known"}},
)
async def get_prediction(request_id: RequestIdPath, audit: Audit) -> AuditRecord:
    """A request, its prediction and, once it came, its feedback (from the audit store)."""
    record = await asyncio.to_thread(audit.get, request_id)
    if record is None:
        raise PredictionNotFound(request_id)
    return record


@router.get("/audit", response_model=AuditPage)
async def audit(
    audit: Audit,
    since: Instant = None,
    until: Instant = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    order: Annotated[Literal["asc", "desc"], Query(description="by request time")] = "desc",
) -> AuditPage:
    """Requests with their predictions and feedback, by time: ``since`` ≤ time < ``until``."""
    start, end = _seconds(since), _seconds(until)
    records = await asyncio.to_thread(audit.page, since=start, until=end, limit=limit, order=order)
    return AuditPage(records=records, count=len(records), since=start, until=end, order=order)
