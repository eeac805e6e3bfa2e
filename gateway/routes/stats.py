"""``GET /v1/stats``: the dashboard's time series, from the audit store."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query

from gateway.audit.records import Stats
from gateway.audit.stats import compute_stats
from gateway.deps import State

router = APIRouter(prefix="/v1", tags=["audit"])


def _stats(state: State, window: float, buckets: int) -> Stats:
    now = time.time()
    since = now - window
    live = state.live
    return compute_stats(
        state.audit.window(since),
        inputs=state.audit.recent_inputs(since),
        now=now,
        window_seconds=window,
        buckets=buckets,
        reference=live.reference_stats if live else {},
        alarms=state.audit.drift_alarms(since),
        live_version=live.version if live else None,
    )


@router.get("/stats", response_model=Stats)
async def stats(
    state: State,
    window: Annotated[float, Query(ge=60, le=86400, description="Seconds back from now")] = 900,
    buckets: Annotated[int, Query(ge=1, le=120)] = 30,
) -> Stats:
    """Throughput, latency, live accuracy and per-feature drift over the last ``window``."""
    return await asyncio.to_thread(_stats, state, window, buckets)
