"""``POST /v1/predict``: request-reply over Kafka with a timeout."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter

from gateway.deps import Metrics, State
from gateway.models import ErrorBody, PredictBody, PredictionPublic
from irisflow.errors import PredictionTimeout
from irisflow.schemas import PredictionRequest

router = APIRouter(prefix="/v1", tags=["predictions"])

_ERRORS: dict[int | str, dict[str, object]] = {
    422: {"model": ErrorBody, "description": "A field is missing, unknown, not a finite number"},
    503: {"model": ErrorBody, "description": "Kafka unreachable, or no model is live yet"},
    504: {"model": ErrorBody, "description": "No worker answered within the timeout"},
}


@router.post("/predict", response_model=PredictionPublic, responses=_ERRORS)
async def predict(body: PredictBody, state: State, metrics: Metrics) -> PredictionPublic:
    """Score one instance: published to the requests topic, answered by a worker."""
    state.check_features(body.features)
    request = PredictionRequest(
        request_id=body.request_id or uuid.uuid4().hex,
        features=body.features,
        reply_to=state.bridge.instance_id,
    )
    timeout = state.settings.gateway.predict_timeout_seconds
    started = time.perf_counter()
    try:
        answer = await state.bridge.predict(request, timeout=timeout)
    except PredictionTimeout:
        metrics.timeouts.inc()
        raise
    elapsed = time.perf_counter() - started
    metrics.kafka_round_trip.observe(elapsed)
    assert answer.label is not None
    assert answer.model_version is not None
    return PredictionPublic(
        request_id=answer.request_id,
        label=answer.label,
        probabilities=answer.probabilities,
        model_version=answer.model_version,
        latency_seconds=elapsed,
    )
