"""``POST /v1/predict`` and ``/v1/predict/batch``: request-reply over Kafka with a timeout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway import predicting
from gateway.bodies import (
    Accepted,
    BatchPredictBody,
    BatchPredictionPublic,
    ErrorBody,
    PredictBody,
    PredictionPublic,
)
from gateway.deps import Checks, Kafka, Scoring, Settings, TripOf
from gateway.errors import TooManyInstances
from gateway.trips import Trip
from irisflow.schemas import FeatureVector

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


async def _score(
    scoring: Scoring,
    kafka: Kafka,
    payload: FeatureVector | list[FeatureVector],
    request_id: str | None,
    wait: bool,
    trip: Trip,
) -> BaseModel | JSONResponse:
    """The same for one instance and a batch: wait for the answer, or 202 at once."""
    kafka.require()
    if not wait:
        accepted = await predicting.accept(scoring=scoring, payload=payload, request_id=request_id)
        return _accepted(accepted)
    return await predicting.predict(
        scoring=scoring, payload=payload, request_id=request_id, trip=trip
    )


@router.post("/predict", response_model=PredictionPublic, responses=_ERRORS)
async def predict(
    body: PredictBody,
    checks: Checks,
    kafka: Kafka,
    scoring: Scoring,
    trip: TripOf,
    wait: Wait = True,
) -> BaseModel | JSONResponse:
    """Score one instance: published to the requests topic, answered by a worker."""
    checks.check_features(body.features)
    return await _score(scoring, kafka, body.features, body.request_id, wait, trip)


@router.post(
    "/predict/batch",
    response_model=BatchPredictionPublic,
    responses={
        **_ERRORS,
        413: {"model": ErrorBody, "description": "More instances than gateway.max_batch_instances"},
    },
)
async def predict_batch(
    body: BatchPredictBody,
    checks: Checks,
    kafka: Kafka,
    scoring: Scoring,
    settings: Settings,
    trip: TripOf,
    wait: Wait = True,
) -> BaseModel | JSONResponse:
    """Score many instances in one Kafka record; answers come back in request order."""
    limit = settings.gateway.max_batch_instances
    if len(body.instances) > limit:
        raise TooManyInstances(len(body.instances), limit)
    checks.check_instances(body.instances)
    return await _score(scoring, kafka, body.instances, body.request_id, wait, trip)
