"""The Open Inference Protocol v2 over HTTP (KServe v2, MLServer, Triton): health, metadata and
``infer`` beside ``/v1``, for the clients and tools ML platforms already have.

Only the live version is served: ``/versions/{v}`` of another known version is a 400 naming
the live one (``irisflow models promote`` makes a version live), an unknown one a 404. An infer
call is one Kafka record, the same matrix ``/v1/predict/batch`` sends, with the same timeout
and idempotency (the request's ``id`` is its request id). Errors have the protocol's shape,
``{"error": "..."}``: 400 for anything the protocol or the model cannot take (a tensor's shape,
datatype or data, a value outside the model's domain), 404 for an unknown model or version,
409 for an id reused with other rows, 413 for too many rows, 503 with Kafka unreachable or no
model live, 504 when no worker answered in time. Health answers are bodiless: 200 is true,
400 false. Tensor parsing and encoding are :mod:`gateway.oip`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import predicting
from gateway.batches import BatchAnswer
from gateway.deps import Checks, History, Kafka, Live, Scoring, Settings, TripOf
from gateway.errors import NoModelLive, UnreadableAnswer, status_of
from gateway.oip import OUTPUTS, InvalidTensor, TooManyRows, infer_response, parse_infer
from irisflow.errors import IrisflowError, ModelNotFound
from irisflow.schemas import ModelMetadata

__all__ = ["router"]

SERVER_NAME = "irisflow"
SERVER_VERSION = "0.1.0"
MATRIX_INPUT = "input-0"
"""The name model metadata gives the one-tensor input (any name not a feature's will do)."""


class ProtocolError(BaseModel):
    """Every error of the ``/v2`` routes (the protocol's shape)."""

    error: str


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1: any number of rows")


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str] = Field(description="The live version: the only one served")
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, str] = Field(
        description="feature_names and class_labels, each a JSON array in tensor order"
    )


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, str] | None = None
    data: list[str] | list[float]


class InferenceResponse(BaseModel):
    model_config = {"protected_namespaces": ()}

    model_name: str
    model_version: str
    id: str | None = Field(default=None, description="The request's id, when it sent one")
    parameters: dict[str, str | float | bool] | None = None
    outputs: list[OutputTensor]


def _error_status(exc: Exception) -> int:
    if isinstance(exc, InvalidTensor | _VersionNotLive):
        return 400
    if isinstance(exc, TooManyRows):
        return 413
    if isinstance(exc, IrisflowError):
        status = status_of(exc)[0]
        return 400 if status == 422 else status
    if isinstance(exc, RequestValidationError):
        return 400
    assert isinstance(exc, StarletteHTTPException)
    return exc.status_code


def _message(exc: Exception) -> str:
    if isinstance(exc, RequestValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
    if isinstance(exc, StarletteHTTPException):
        return str(exc.detail)
    return str(exc)


class ProtocolRoute(APIRoute):
    """A ``/v2`` route: its errors answered in the protocol's shape, ``{"error": "..."}``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await declared(request)
            except (IrisflowError, RequestValidationError, StarletteHTTPException) as exc:
                body = orjson.dumps({"error": _message(exc)[:4000]})
                return Response(body, _error_status(exc), media_type="application/json")

        return handler


router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=ProtocolRoute)
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ProtocolError, "description": "A version that is not live"},
    404: {"model": ProtocolError, "description": "No model (or version) of this name"},
    503: {"model": ProtocolError, "description": "No model is live yet"},
}
_HEALTH: dict[int | str, dict[str, Any]] = {
    200: {"description": "True (no body)"},
    400: {"description": "False (no body)"},
}


class _VersionNotLive(IrisflowError):
    """A known version that is not the live one: the protocol's 400."""


def _live(name: str, settings: Any, live: ModelMetadata | None) -> ModelMetadata:
    if name != settings.model_name:
        raise ModelNotFound(f"no model {name!r} here; this gateway serves {settings.model_name!r}")
    if live is None:
        raise NoModelLive(f"no version of {name!r} is live yet: train one with `irisflow train`")
    return live


def _version(version: str, live: ModelMetadata, history: Any) -> None:
    """Refuse any version but the live one: unknown (404) or known but not live (400)."""
    if version == str(live.version):
        return
    known = version.isdigit() and any(
        v.metadata.version == int(version) for v in history.versions()
    )
    if not known:
        raise ModelNotFound(
            f"{live.model_name} has no version {version!r}; version {live.version} is live"
        )
    raise _VersionNotLive(
        f"{live.model_name} version {version} is not live, version {live.version} is: infer "
        f"against it, or make {version} live with `irisflow models promote {version}`"
    )


def _metadata(live: ModelMetadata) -> ModelMetadataResponse:
    names, classes = live.feature_names, live.class_labels
    return ModelMetadataResponse(
        name=live.model_name,
        versions=[str(live.version)],
        platform="sklearn",
        inputs=[TensorMetadata(name=MATRIX_INPUT, datatype="FP64", shape=[-1, len(names)])],
        outputs=[
            TensorMetadata(name="label", datatype="BYTES", shape=[-1]),
            TensorMetadata(name="probabilities", datatype="FP64", shape=[-1, len(classes)]),
        ],
        parameters={
            "feature_names": orjson.dumps(names).decode(),
            "class_labels": orjson.dumps(classes).decode(),
        },
    )


@router.get("", response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    """Server metadata: its name, version and protocol extensions (none)."""
    return ServerMetadata(name=SERVER_NAME, version=SERVER_VERSION, extensions=[])


@router.get("/health/live", response_class=Response, responses={200: _HEALTH[200]})
async def server_live() -> Response:
    """The process answers (a liveness probe)."""
    return Response(status_code=200)


@router.get("/health/ready", response_class=Response, responses=_HEALTH)
async def server_ready(kafka: Kafka, live: Live) -> Response:
    """Kafka is reachable and a model is live (a readiness probe)."""
    return Response(status_code=200 if kafka.ready and live is not None else 400)


@router.get("/models/{model_name}", response_model=ModelMetadataResponse, responses=_ERRORS)
async def model_metadata(model_name: str, settings: Settings, live: Live) -> Any:
    """The live version's inputs (one [n, n_features] tensor, or one per feature) and outputs."""
    return _metadata(_live(model_name, settings, live))


@router.get(
    "/models/{model_name}/versions/{version}",
    response_model=ModelMetadataResponse,
    responses=_ERRORS,
)
async def version_metadata(
    model_name: str, version: str, settings: Settings, live: Live, history: History
) -> Any:
    """A version's metadata: the live version's (others are not served)."""
    model = _live(model_name, settings, live)
    _version(version, model, history)
    return _metadata(model)


@router.get(
    "/models/{model_name}/ready", response_class=Response, responses={**_HEALTH, 404: _ERRORS[404]}
)
async def model_ready(model_name: str, settings: Settings, live: Live, kafka: Kafka) -> Response:
    """The model has a live version and Kafka is reachable (404: no such model)."""
    if model_name != settings.model_name:
        raise ModelNotFound(f"no model {model_name!r}; this gateway serves {settings.model_name!r}")
    return Response(status_code=200 if kafka.ready and live is not None else 400)


@router.get(
    "/models/{model_name}/versions/{version}/ready",
    response_class=Response,
    responses={**_HEALTH, 404: _ERRORS[404]},
)
async def version_ready(
    model_name: str, version: str, settings: Settings, live: Live, kafka: Kafka
) -> Response:
    """This version is the live one and Kafka is reachable."""
    if model_name != settings.model_name:
        raise ModelNotFound(f"no model {model_name!r}; this gateway serves {settings.model_name!r}")
    ready = kafka.ready and live is not None and version == str(live.version)
    return Response(status_code=200 if ready else 400)


_INFER_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ProtocolError, "description": "A tensor the model cannot take (named)"},
    404: {"model": ProtocolError, "description": "No model (or version) of this name"},
    409: {"model": ProtocolError, "description": "id already used for other rows"},
    413: {"model": ProtocolError, "description": "More rows than gateway.max_batch_instances"},
    502: {"model": ProtocolError, "description": "A worker's answer was unreadable"},
    503: {"model": ProtocolError, "description": "Kafka unreachable, or no model live"},
    504: {"model": ProtocolError, "description": "No worker answered within the timeout"},
}
_PARAMETERS = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]
    },
}
_DATA = {"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "array"}]}}
_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "additionalProperties": False,
                    "properties": {
                        "id": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"},
                        "parameters": _PARAMETERS,
                        "inputs": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "datatype", "data"],
                                "additionalProperties": False,
                                "properties": {
                                    "name": {"type": "string", "minLength": 1},
                                    "shape": {
                                        "type": "array",
                                        "items": {"type": "integer", "minimum": 0},
                                    },
                                    "datatype": {
                                        "enum": ["FP64", "FP32", "FP16"]
                                        + [f"{p}INT{b}" for p in ("", "U") for b in (8, 16, 32, 64)]
                                    },
                                    "parameters": _PARAMETERS,
                                    "data": _DATA,
                                },
                            },
                        },
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {
                                    "name": {"enum": list(OUTPUTS)},
                                    "parameters": _PARAMETERS,
                                },
                            },
                        },
                    },
                }
            }
        },
    }
}


async def _infer(
    request: Request,
    *,
    model_name: str,
    version: str | None,
    parts: tuple[Any, ...],
) -> Response:
    checks, kafka, scoring, settings, trip, live, history = parts
    model = _live(model_name, settings, live)
    if version is not None:
        _version(version, model, history)
    header = request.headers.get("inference-header-content-length")
    if header is not None and not header.isdigit():
        raise InvalidTensor(f"Inference-Header-Content-Length {header!r} is not a byte count")
    parsed = parse_infer(
        await request.body(),
        checks.feature_schema(),
        limit=settings.gateway.max_batch_instances,
        header_length=int(header) if header is not None else None,
    )
    kafka.require()
    route = request.scope.get("route")
    answer = await predicting.predict(
        scoring=scoring,
        payload=parsed.batch,
        request_id=parsed.id,
        trip=trip,
        route=f"POST {getattr(route, 'path', request.url.path)}",
    )
    if not isinstance(answer, BatchAnswer):
        raise UnreadableAnswer(f"the answer to {parsed.id} is not a batch answer")
    return Response(infer_response(parsed, answer, model.model_name), media_type="application/json")


@router.post(
    "/models/{model_name}/infer",
    response_model=InferenceResponse,
    responses=_INFER_ERRORS,
    openapi_extra=_INFER_BODY,
)
async def infer(
    request: Request,
    model_name: str,
    checks: Checks,
    kafka: Kafka,
    scoring: Scoring,
    settings: Settings,
    trip: TripOf,
    live: Live,
    history: History,
) -> Response:
    """Score a tensor of rows (one Kafka record) with the live version."""
    parts = (checks, kafka, scoring, settings, trip, live, history)
    return await _infer(request, model_name=model_name, version=None, parts=parts)


@router.post(
    "/models/{model_name}/versions/{version}/infer",
    response_model=InferenceResponse,
    responses=_INFER_ERRORS,
    openapi_extra=_INFER_BODY,
)
async def infer_version(
    request: Request,
    model_name: str,
    version: str,
    checks: Checks,
    kafka: Kafka,
    scoring: Scoring,
    settings: Settings,
    trip: TripOf,
    live: Live,
    history: History,
) -> Response:
    """Score a tensor of rows with this version, if it is the live one."""
    parts = (checks, kafka, scoring, settings, trip, live, history)
    return await _infer(request, model_name=model_name, version=version, parts=parts)
