"""``POST /v1/predict`` and ``/v1/predict/batch``: request-reply over Kafka with a timeout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from gateway import predicting
from gateway.bodies import (
    Accepted,
    BatchPredictBody,
    BatchPredictionPublic,
    ErrorBody,
    PredictBody,
    PredictionPublic,
)
from gateway.deps import Metrics, State
from gateway.errors import TooManyInstances

router = APIRouter(prefix="/v1", tags=["predictions"])

_ERRORS: dict[int | str, dict[str, object]] = {
    202: {"model": Accepted, "description": "With ?wait=false: accepted; poll result_url"},
    409: {"model": ErrorBody, "description": "request_id already used for different input"},
    422: {"model": ErrorBody, "description": "A field is missing, unknown, not a finite number"},
    503: {"model": ErrorBody, "description": "Kafka unreachable, or no model is live yet"},
    502: {"model": ErrorBody, "description": "A worker's answer was unreadable (a worker bug)"},
    504: {"model": ErrorBody, "description": "No worker answered within the timeout"},
}
Wait = Annotated[
    bool,
    Query(
        description="false: answer 202 at once with the request id and where to fetch the result"
    ),
]


def _accepted(accepted: Accepted) -> JSONResponse:
    return JSONResponse(
        status_code=202,
        content=accepted.model_dump(),
        headers={"Location": accepted.result_url},
    )


@router.post("/predict", response_model=PredictionPublic, responses=_ERRORS)
async def predict(
    body: PredictBody, state: State, metrics: Metrics, wait: Wait = True
) -> PredictionPublic | JSONResponse:
    """Score one instance: published to the requests topic, answered by a worker."""
    state.check_features(body.features)
    if not wait:
        accepted = await predicting.accept(
            state=state, metrics=metrics, payload=body.features, request_id=body.request_id
        )
        return _accepted(accepted)
    answer = await predicting.predict(
        state=state, metrics=metrics, payload=body.features, request_id=body.request_id
    )
    assert isinstance(answer, PredictionPublic)
    return answer


@router.post(
    "/predict/batch",
    response_model=BatchPredictionPublic,
    responses={
        **_ERRORS,
        413: {"model": ErrorBody, "description": "More instances than gateway.max_batch_instances"},
    },
)
async def predict_batch(
    body: BatchPredictBody, state: State, metrics: Metrics, wait: Wait = True
) -> BatchPredictionPublic | JSONResponse:
    """Score many instances in one Kafka record; answers come back in request order."""
    limit = state.settings.gateway.max_batch_instances
    if len(body.instances) > limit:
        raise TooManyInstances(len(body.instances), limit)
    state.check_instances(body.instances)
    if not wait:
        accepted = await predicting.accept(
            state=state, metrics=metrics, payload=body.instances, request_id=body.request_id
        )
        return _accepted(accepted)
    answer = await predicting.predict(
        state=state, metrics=metrics, payload=body.instances, request_id=body.request_id
    )
    assert isinstance(answer, BatchPredictionPublic)
    return answer
