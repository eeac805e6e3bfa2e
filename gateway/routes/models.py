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
from gateway.deps import Metrics, State
from gateway.model_versions import KnownVersion
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
async def list_models(state: State) -> ModelList:
    """Every version this gateway knows of, with its metrics, and which one is live."""
    live = state.live.version if state.live else None
    versions = [
        ModelVersionPublic.model_validate(_public(k, live)) for k in state.history.versions()
    ]
    return ModelList(model_name=state.settings.model_name, live_version=live, versions=versions)


@router.get(
    "/models/{version}",
    response_model=ModelVersionDetail,
    responses={404: {"model": ErrorBody, "description": "Unknown version"}},
)
async def get_model(version: int, state: State) -> ModelVersionDetail:
    """One version: metrics, feature schema, classes, reference statistics."""
    live = state.live.version if state.live else None
    return ModelVersionDetail.model_validate(_public(state.history.version(version), live))


@router.post(
    "/models/{version}/promote",
    status_code=202,
    response_model=PromoteAccepted,
    responses={**_ADMIN_ERRORS, 404: {"model": ErrorBody, "description": "Unknown version"}},
)
async def promote(version: int, state: State, metrics: Metrics, _: AdminKey) -> PromoteAccepted:
    """Make a version live again by republishing it to model-updates (this is a rollback)."""
    state.require_kafka()
    update, source = state.history.update_for(version)
    kafka = state.settings.kafka
    await republish(kafka, update, limits=state.settings.artifacts)
    metrics.published.labels("promote").inc()
    return PromoteAccepted(
        model_name=update.model_name,
        version=version,
        source=source,
        topic=kafka.topics.model_updates,
    )


@router.post("/retrain", status_code=202, response_model=RetrainAccepted, responses=_ADMIN_ERRORS)
async def retrain(
    state: State, metrics: Metrics, _: AdminKey, body: RetrainBody | None = None
) -> RetrainAccepted:
    """Ask the retraining service (``irisflow trainer``) to retrain now."""
    state.require_kafka()
    reason = body.reason if body is not None else RetrainBody().reason
    name = state.settings.model_name
    message = RetrainRequest(model_name=name, reason=reason, requested_by="gateway")
    record = state.bridge.topics.retrain_requests.record(message)
    await state.bridge.publish(record, timeout=state.settings.gateway.predict_timeout_seconds)
    metrics.published.labels("retrain").inc()
    return RetrainAccepted(model_name=name, reason=reason, topic=record.topic)
