"""Model versions (``GET /v1/models``), promotion and retraining (API key)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.bodies import (
    ErrorBody,
    ModelList,
    ModelVersionDetail,
    ModelVersionPublic,
    PromoteAccepted,
    RetrainAccepted,
    RetrainBody,
)
from gateway.deps import Bridge, History, Kafka, Live, Metrics, Rollout, Settings
from gateway.model_versions import KnownVersion
from gateway.rollouts import deployments
from gateway.security import AdminKey
from irisflow.registry import republish
from irisflow.schemas import RetrainRequest

router = APIRouter(prefix="/v1", tags=["models"])

_ADMIN_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "No X-API-Key header"},
    403: {"model": ErrorBody, "description": "Wrong key, or no IRISFLOW_API_KEY configured"},
    503: {"model": ErrorBody, "description": "Kafka unreachable"},
}


def _public(known: KnownVersion, live: int | None) -> dict[str, object]:
    meta = known.metadata
    return {
        **meta.model_dump(exclude={"schema_version", "artifact_format"}),
        "live": meta.version == live,
        "sources": list(known.sources),
    }


@router.get("/models", response_model=ModelList)
async def list_models(history: History, live: Live, settings: Settings) -> ModelList:
    """Every version this gateway knows of, with its metrics, and which one is live."""
    version = live.version if live else None
    versions = [ModelVersionPublic.model_validate(_public(k, version)) for k in history.versions()]
    return ModelList(model_name=settings.model_name, live_version=version, versions=versions)


@router.get(
    "/models/{version}",
    response_model=ModelVersionDetail,
    responses={404: {"model": ErrorBody, "description": "Unknown version"}},
)
async def get_model(
    version: int, history: History, live: Live, rollout: Rollout
) -> ModelVersionDetail:
    """One version: metrics, feature schema, classes, reference statistics, and its deployment
    history (published live, every rollout step)."""
    live_version = live.version if live else None
    detail = _public(history.version(version), live_version)
    detail["deployments"] = deployments(version, rollout.current, history.registry)
    return ModelVersionDetail.model_validate(detail)


@router.post(
    "/models/{version}/promote",
    status_code=202,
    response_model=PromoteAccepted,
    responses={**_ADMIN_ERRORS, 404: {"model": ErrorBody, "description": "Unknown version"}},
)
async def promote(
    version: int,
    history: History,
    kafka_health: Kafka,
    settings: Settings,
    metrics: Metrics,
    _: AdminKey,
) -> PromoteAccepted:
    """Make a version live again by republishing it to model-updates (this is a rollback)."""
    kafka_health.require()
    update, source = history.update_for(version)
    kafka = settings.kafka
    await republish(kafka, update, limits=settings.artifacts)
    metrics.published.labels("promote").inc()
    return PromoteAccepted(
        model_name=update.model_name,
        version=version,
        source=source,
        topic=kafka.topics.model_updates,
    )


@router.post("/retrain", status_code=202, response_model=RetrainAccepted, responses=_ADMIN_ERRORS)
async def retrain(
    bridge: Bridge,
    kafka_health: Kafka,
    settings: Settings,
    metrics: Metrics,
    _: AdminKey,
    body: RetrainBody | None = None,
) -> RetrainAccepted:
    """Ask the retraining service (``irisflow trainer``) to retrain now."""
    kafka_health.require()
    reason = body.reason if body is not None else RetrainBody().reason
    name = settings.model_name
    message = RetrainRequest(model_name=name, reason=reason, requested_by="gateway")
    record = bridge.topics.retrain_requests.record(message)
    await bridge.publish(record, timeout=settings.gateway.predict_timeout_seconds)
    metrics.published.labels("retrain").inc()
    return RetrainAccepted(model_name=name, reason=reason, topic=record.topic)
