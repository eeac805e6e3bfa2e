"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict

from gateway.deps import Bridge, Kafka, Live, Metrics

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
async def ready(kafka: Kafka, live: Live, bridge: Bridge) -> JSONResponse:
    """Ready means Kafka is reachable and a model is live (send traffic only then)."""
    body = Readiness(
        ready=kafka.ready and live is not None,
        kafka=kafka.ready,
        kafka_error=None if kafka.ready else kafka.error,
        model_version=live.version if live else None,
        instance_id=bridge.instance_id,
    )
    return JSONResponse(status_code=200 if body.ready else 503, content=body.model_dump())


@router.get("/metrics", include_in_schema=False)
async def metrics(metrics: Metrics) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
