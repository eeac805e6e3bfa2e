"""``GET /v1/stats``: the dashboard's time series, from the audit store."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query

from gateway.audit.records import Stats
from gateway.audit.stats import compute_stats
from gateway.audit.store import AuditStore
from gateway.bodies import ErrorBody
from gateway.deps import Audit, Live
from irisflow.schemas import ModelMetadata

router = APIRouter(prefix="/v1", tags=["audit"])


def _stats(audit: AuditStore, live: ModelMetadata | None, window: float, buckets: int) -> Stats:
    now = time.time()
    since = now - window
    return compute_stats(
        audit.window(since),
        inputs=audit.recent_inputs(since),
        now=now,
        window_seconds=window,
        buckets=buckets,
        reference=live.reference_stats if live else {},
        alarms=audit.drift_alarms(since),
        live_version=live.version if live else None,
    )


@router.get(
    "/stats",
    response_model=Stats,
    responses={
        503: {
            "model": ErrorBody,
            "description": "The audit database did not answer (audit_unavailable)",
        }
    },
)
async def stats(
    audit: Audit,
    live: Live,
    window: Annotated[float, Query(ge=60, le=86400, description="Seconds back from now")] = 900,
    buckets: Annotated[int, Query(ge=1, le=120)] = 30,
) -> Stats:
    """Throughput, latency, live accuracy and per-feature drift over the last ``window``."""
    return await asyncio.to_thread(_stats, audit, live, window, buckets)
