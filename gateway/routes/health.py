"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.deps import Metrics, State

router = APIRouter(tags=["operations"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up (restart it if this fails)."""
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(state: State) -> JSONResponse:
    """Ready means Kafka is reachable and a model is live (send traffic only then)."""
    body = {
        "ready": state.kafka_ready and state.live is not None,
        "kafka": state.kafka_ready,
        "model_version": state.live.version if state.live else None,
    }
    return JSONResponse(status_code=200 if body["ready"] else 503, content=body)


@router.get("/metrics", include_in_schema=False)
async def metrics(metrics: Metrics) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
