"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict

from gateway.deps import Metrics, State

router = APIRouter(tags=["operations"])


class Readiness(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    ready: bool
    kafka: bool
    kafka_error: str | None
    model_version: int | None
    instance_id: str


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up (restart it if this fails)."""
    return {"status": "ok"}


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Kafka unreachable or no model live"}},
)
async def ready(state: State) -> JSONResponse:
    """Ready means Kafka is reachable and a model is live (send traffic only then)."""
    body = Readiness(
        ready=state.kafka_ready and state.live is not None,
        kafka=state.kafka_ready,
        kafka_error=None if state.kafka_ready else state.kafka_error,
        model_version=state.live.version if state.live else None,
        instance_id=state.bridge.instance_id,
    )
    return JSONResponse(status_code=200 if body.ready else 503, content=body.model_dump())


@router.get("/metrics", include_in_schema=False)
async def metrics(metrics: Metrics) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
