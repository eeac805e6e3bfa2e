"""``/openapi.json``: the contract, exactly as the gateway keeps it, for the live model.

Feature vectors are plain mappings in code (any data set works), so the generated schema would
only say "an object of numbers". The gateway knows better once a model is live, and says so:
every feature is a required number within the range the gateway accepts for it
(:mod:`gateway.feature_domain`), no other key is allowed, a feedback label is one of the
classes, a batch holds at most ``gateway.max_batch_instances`` rows.

What FastAPI generates is corrected where it does not describe what the gateway answers: every
error is an :class:`~gateway.bodies.ErrorBody` (FastAPI documents its own validation shape,
which the gateway never sends), and an operation with a body also answers 400 (a body that is
not UTF-8) and 413 (a body over ``gateway.max_body_bytes``). Links say which answer feeds which
call (a prediction's id to its audit record and its feedback, a feedback's id to a prediction),
so clients and stateful tests can follow them. Clients generated from the schema, and contract
tests (``tests/e2e/test_gateway_schemathesis.py`` runs schemathesis against it), then send
exactly what the gateway accepts.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.feature_domain import accepted_range
from gateway.input_checks import InputChecks
from gateway.routes import oip
from gateway.routes.oip import ProtocolRoute
from irisflow.schemas import ModelMetadata

__all__ = ["live_openapi"]

_ERROR = {"$ref": "#/components/schemas/ErrorBody"}
_PROTOCOL_ERROR = {"$ref": "#/components/schemas/ProtocolError"}
_FASTAPI_VALIDATION = "#/components/schemas/HTTPValidationError"
_BODY_ERRORS = {
    "400": "The body is not UTF-8 (so not JSON)",
    "413": "The body is larger than gateway.max_body_bytes (limit in the body)",
}
_INVALID = "A parameter or body field is invalid; each is named in fields"

_PREDICT = ("/v1/predict", "post")
_BATCH = ("/v1/predict/batch", "post")
_FEEDBACK = ("/v1/feedback", "post")
_RECORD = ("/v1/predictions/{request_id}", "get")

_ITS_ID = "$response.body#/request_id"
_LINKS: list[tuple[tuple[str, str], tuple[str, ...], str, tuple[str, str], dict[str, Any]]] = [
    # (from operation, its statuses, link name, to operation, what the link fills in)
    (_PREDICT, ("200", "202"), "Record", _RECORD, {"parameters": {"request_id": _ITS_ID}}),
    (_PREDICT, ("200", "202"), "Feedback", _FEEDBACK, {"requestBody": {"request_id": _ITS_ID}}),
    (
        _PREDICT,
        ("200",),
        "Repeat",
        _PREDICT,
        {"requestBody": {"request_id": _ITS_ID, "features": "$request.body#/features"}},
    ),
    (_BATCH, ("200", "202"), "Record", _RECORD, {"parameters": {"request_id": _ITS_ID}}),
    (_FEEDBACK, ("202",), "Predict", _PREDICT, {"requestBody": {"request_id": _ITS_ID}}),
    (_FEEDBACK, ("202",), "Record", _RECORD, {"parameters": {"request_id": _ITS_ID}}),
]


def _protocol_operations() -> set[tuple[str, str]]:
    """``(path, method)`` of the Open Inference Protocol routes, which answer their own way."""
    return {
        (route.path_format, method.lower())
        for route in oip.router.routes
        if isinstance(route, ProtocolRoute)
        for method in route.methods or ()
    }


def _errors_as_sent(schema: dict[str, Any], protocol: set[tuple[str, str]]) -> None:
    """Each error response as the gateway's handlers send it (see :mod:`gateway.errors`); an
    Open Inference Protocol route answers a bad parameter 400 in the protocol's shape, never
    FastAPI's 422 (:class:`gateway.routes.oip.ProtocolRoute`)."""
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            ours = (path, method) not in protocol
            error = _ERROR if ours else _PROTOCOL_ERROR
            responses = op.setdefault("responses", {})
            invalid = responses.get("422", {}).get("content", {}).get("application/json", {})
            if invalid.get("schema", {}).get("$ref") == _FASTAPI_VALIDATION:
                if ours:
                    responses["422"] = {"description": _INVALID, "content": _json(error)}
                else:
                    del responses["422"]
            if "requestBody" in op:
                for status, description in _BODY_ERRORS.items():
                    responses.setdefault(
                        status, {"description": description, "content": _json(error)}
                    )
    if f'"{_FASTAPI_VALIDATION}"' not in json.dumps(schema.get("paths", {})):
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)  # and what only it refers to:
        components.pop("ValidationError", None)


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


def _add_links(schema: dict[str, Any]) -> None:
    """The links of :data:`_LINKS` between the operations this app has."""
    paths = schema.get("paths", {})

    def operation(where: tuple[str, str]) -> dict[str, Any] | None:
        found: dict[str, Any] | None = paths.get(where[0], {}).get(where[1])
        return found

    for source, statuses, name, target, fills in _LINKS:
        start, end = operation(source), operation(target)
        if start is None or end is None:
            continue
        for status in statuses:
            response = start.get("responses", {}).get(status)
            if response is not None:
                link = {"operationId": end["operationId"], **copy.deepcopy(fills)}
                response.setdefault("links", {})[name] = link


def _features(checks: InputChecks) -> dict[str, Any]:
    names = checks.expected_features()
    schema = checks.feature_schema()
    live = checks.history.live
    reference = live.reference_stats if live is not None else {}
    properties: dict[str, Any] = {}
    for name in names:
        seed = reference[name].mean if name in reference else 0.0
        bounds = accepted_range(schema, name, seed)
        number: dict[str, Any] = {"type": "number"}
        if bounds is not None:
            number["minimum"], number["maximum"] = bounds
        properties[name] = number
    return _object(names, properties)


def _object(names: Sequence[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(names),
        "additionalProperties": False,
    }


def _patch(schema: dict[str, Any], checks: InputChecks, max_batch: int) -> dict[str, Any]:
    """The live model's part of the contract: features and their ranges, classes, batch size."""
    components = schema.get("components", {}).get("schemas", {})
    if checks.expected_features():
        features = _features(checks)
        if "PredictBody" in components:
            components["PredictBody"]["properties"]["features"] = features
        if "BatchPredictBody" in components:
            instances = components["BatchPredictBody"]["properties"]["instances"]
            instances["items"] = copy.deepcopy(features)
    if "BatchPredictBody" in components:
        instances = components["BatchPredictBody"]["properties"]["instances"]
        instances["maxItems"] = max_batch
    live = checks.history.live
    if live is not None and "FeedbackBody" in components:
        label = components["FeedbackBody"]["properties"]["label"]
        label["enum"] = list(live.class_labels)
    _served(schema, checks.history.model_name, live)
    return schema


def _served(schema: dict[str, Any], model_name: str, live: ModelMetadata | None) -> None:
    """The Open Inference Protocol's ``{model_name}`` and ``{version}``: the one model this
    gateway serves, and its live version (the only one served; any other is a 404 or a 400,
    and the readiness of any other version is "false", which the protocol says with a 400)."""
    served = {"model_name": [model_name], "version": [str(live.version)] if live else None}
    for path, ops in schema.get("paths", {}).items():
        if not path.startswith("/v2/"):
            continue
        for op in ops.values():
            for parameter in op.get("parameters", []):
                values = served.get(parameter["name"])
                if parameter.get("in") == "path" and values:
                    parameter["schema"] = {**parameter["schema"], "enum": values}


def live_openapi(
    app: FastAPI, checks: InputChecks, *, max_batch: int
) -> Callable[[], dict[str, Any]]:
    """A replacement for ``app.openapi``: the generated schema, corrected once, then patched
    with the live model at each call."""
    base: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not base:
            generated = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            _errors_as_sent(generated, _protocol_operations())
            _add_links(generated)
            base.update(generated)
        return _patch(copy.deepcopy(base), checks, max_batch)

    return openapi
