"""``POST /v1/predict`` and ``/v1/predict/batch``: request-reply over Kafka with a timeout.

The batch route has a fast lane (:mod:`gateway.fast_lane`): a plain body is parsed straight
into a matrix (:mod:`gateway.batches`); the declared pydantic route answers everything else,
with the same checks and errors as ever, and sends its batch as the same matrix.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway import predicting
from gateway.batches import Batch, BatchAnswer, instances_matrix, parse_instances, v1_json
from gateway.bodies import (
    Accepted,
    BatchPredictBody,
    BatchPredictionPublic,
    ErrorBody,
    PredictBody,
    PredictionPublic,
)
from gateway.deps import Checks, Kafka, Scoring, Settings, TripOf
from gateway.errors import TooManyInstances, UnreadableAnswer
from gateway.fast_lane import fast_lane, json_body
from gateway.kafka_health import KafkaHealth
from gateway.predicting import Payload
from gateway.predicting import Scoring as ScoringParts
from gateway.trips import Trip, trip_of

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
    payload: Payload,
    request_id: str | None,
    wait: bool,
    trip: Trip,
) -> BaseModel | JSONResponse:
    """One instance: wait for the answer, or 202 at once."""
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


async def _score_batch(
    scoring: ScoringParts, kafka: KafkaHealth, batch: Batch, wait: bool, trip: Trip
) -> Response:
    """A checked batch, scored as one matrix record; the answer written by orjson (no response
    model validates a thousand rows again on the way out)."""
    kafka.require()
    if not wait:
        accepted = await predicting.accept(
            scoring=scoring, payload=batch, request_id=batch.request_id
        )
        return _accepted(accepted)
    answer = await predicting.predict(
        scoring=scoring, payload=batch, request_id=batch.request_id, trip=trip
    )
    if not isinstance(answer, BatchAnswer):
        raise UnreadableAnswer(f"the answer to batch {batch.request_id} is not a batch answer")
    return Response(v1_json(answer), media_type="application/json")


def _wait_of(request: Request) -> bool | None:
    """``?wait=`` when it is the only query parameter and plainly true or false (``None``:
    leave it to FastAPI, which also names a bad value)."""
    items = request.query_params.multi_items()
    if not items:
        return True
    if len(items) == 1 and items[0][0] == "wait" and items[0][1] in _PLAIN_BOOLS:
        return _PLAIN_BOOLS[items[0][1]]
    return None


_PLAIN_BOOLS = {"true": True, "1": True, "false": False, "0": False}


async def _plain_batch(request: Request) -> Response | None:
    """The fast lane of ``/v1/predict/batch``: a plain body straight into a matrix
    (:func:`gateway.batches.parse_instances`); anything else goes to the declared route."""
    wait = _wait_of(request)
    if wait is None or not json_body(request):
        return None
    state = request.app.state
    limit = state.settings.gateway.max_batch_instances
    batch = parse_instances(await request.body(), state.checks.feature_schema(), limit=limit)
    if batch is None:
        return None
    return await _score_batch(state.scoring, state.kafka, batch, wait, trip_of(request.scope))


async def predict_batch(
    body: BatchPredictBody,
    checks: Checks,
    kafka: Kafka,
    scoring: Scoring,
    settings: Settings,
    trip: TripOf,
    wait: Wait = True,
) -> Response:
    """Score many instances in one Kafka record; answers come back in request order."""
    limit = settings.gateway.max_batch_instances
    if len(body.instances) > limit:
        raise TooManyInstances(len(body.instances), limit)
    checks.check_instances(body.instances)
    names = checks.feature_schema().names
    batch = Batch(names, instances_matrix(body.instances, names), body.request_id)
    return await _score_batch(scoring, kafka, batch, wait, trip)


router.add_api_route(
    "/predict/batch",
    predict_batch,
    methods=["POST"],
    response_model=BatchPredictionPublic,
    responses={
        **_ERRORS,
        413: {"model": ErrorBody, "description": "More instances than gateway.max_batch_instances"},
    },
    route_class_override=fast_lane(_plain_batch),
)
