"""Errors to HTTP responses, in one table; every error body has the same shape.

``{"error": {"status", "code", "message", "fields": [{"field", "message"}]}}``, whatever went
wrong: a bad body, an unknown route, a missing API key, Kafka down, a timeout. Nothing a client
can send reaches the catch-all 500.

An error body is bounded whatever the input: at most :data:`MOST_FIELDS` fields are listed, then
one entry saying how many more there were, and the message is clipped. A body with 50,000 bad
names must cost its sender a few kilobytes of answer, not the gateway megabytes of JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from gateway.audit.store import AuditUnavailable
from gateway.bodies import ErrorBody, ErrorDetail, FieldError
from irisflow.errors import (
    ArtifactError,
    IrisflowError,
    KafkaUnavailable,
    ModelNotFound,
    PredictionFailed,
    PredictionTimeout,
    SchemaError,
)
from irisflow.schemas import ErrorCode, clip

__all__ = [
    "MAX_MESSAGE",
    "MOST_FIELDS",
    "AdminDisabled",
    "FeatureMismatch",
    "Forbidden",
    "NoModelLive",
    "PredictionNotFound",
    "RequestIdConflict",
    "RolloutRefused",
    "TooManyInstances",
    "Unauthorized",
    "UnreadableAnswer",
    "capped",
    "error_response",
    "install_error_handlers",
    "status_of",
]

log = logging.getLogger(__name__)


class FeatureMismatch(SchemaError):
    """Feature names (or a label) that do not fit the live model, each named."""

    def __init__(self, fields: list[FieldError]) -> None:
        super().__init__("; ".join(f"{f.field}: {f.message}" for f in fields))
        self.fields = fields


class RequestIdConflict(IrisflowError):
    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"request_id {request_id!r} was already used for a different request; "
            "use a new id for new input"
        )


class TooManyInstances(IrisflowError):
    def __init__(self, count: int, limit: int) -> None:
        super().__init__(
            f"{count} instances in one call; the limit is {limit} (gateway.max_batch_instances): "
            "split the batch"
        )
        self.limit = limit


class Unauthorized(IrisflowError):
    """No API key was sent to an endpoint that needs one."""


class Forbidden(IrisflowError):
    """The API key sent does not match."""


class AdminDisabled(Forbidden):
    """No API key is configured, so the admin endpoints refuse everyone."""


class PredictionNotFound(IrisflowError):
    def __init__(self, request_id: str) -> None:
        super().__init__(f"no prediction with request_id {request_id!r} is known to the audit")


class UnreadableAnswer(IrisflowError):
    """A worker answered with something that is not a valid prediction (a worker bug)."""


class NoModelLive(IrisflowError):
    """The gateway has not seen a live model yet, so it cannot check labels or features."""


class RolloutRefused(IrisflowError):
    """The rollout controller refused a command; ``status`` is the one its outcome names."""

    _CODES = {404: "not_found", 409: "rollout_conflict", 422: "invalid_request"}

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status if status in self._CODES else 409
        self.code = self._CODES[self.status]


_STATUS: list[tuple[type[IrisflowError], int, str]] = [
    (SchemaError, 422, "invalid_request"),
    (ModelNotFound, 404, "not_found"),
    (PredictionNotFound, 404, "not_found"),
    (RequestIdConflict, 409, "request_id_conflict"),
    (TooManyInstances, 413, "too_many_instances"),
    (Unauthorized, 401, "unauthorized"),
    (AdminDisabled, 403, "admin_disabled"),
    (Forbidden, 403, "forbidden"),
    (NoModelLive, 503, "no_model"),
    (KafkaUnavailable, 503, "kafka_unavailable"),
    (AuditUnavailable, 503, "audit_unavailable"),
    (PredictionTimeout, 504, "timeout"),
    (UnreadableAnswer, 502, "bad_answer"),
    (ArtifactError, 409, "artifact_invalid"),
]
MOST_FIELDS = 20
"""Fields listed in one error body; the rest are counted in one more entry."""
MAX_MESSAGE = 4000
"""Characters of an error message (the fields carry the detail)."""

_FAILED_STATUS: dict[str, int] = {
    ErrorCode.NO_MODEL: 503,
    ErrorCode.SCHEMA_MISMATCH: 422,
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.OUT_OF_DOMAIN: 422,
}
"""A worker's error answer as HTTP: every :class:`~irisflow.schemas.ErrorCode` has its status."""
_UNNAMED_LOCATIONS = ("body", "path")
"""A body field or a path parameter is named by itself (``request_id``, ``features.x``)."""
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}
_FASTAPI_UNREADABLE = "There was an error parsing the body"
"""FastAPI's 400 detail for a body it could not even decode (not UTF-8); bad JSON is a 422."""
_UNREADABLE = "the body is not UTF-8 text, so not JSON: send one JSON object in UTF-8"


def capped(fields: list[FieldError], *, more: int = 0) -> list[FieldError]:
    """The first :data:`MOST_FIELDS` fields, then one entry counting the others (``more`` counts
    those the caller left out before building them)."""
    hidden = max(0, len(fields) - MOST_FIELDS) + more
    shown = fields[:MOST_FIELDS]
    if hidden:
        shown.append(FieldError(field="body", message=f"and {hidden} more"))
    return shown


def error_response(
    status: int,
    code: str,
    message: str,
    fields: list[FieldError] | None = None,
    *,
    limit: int | None = None,
    headers: Mapping[str, str] | None = None,
    more_fields: int = 0,
) -> JSONResponse:
    body = ErrorBody(
        error=ErrorDetail(
            status=status,
            code=code,
            message=clip(message, MAX_MESSAGE),
            fields=capped(fields or [], more=more_fields),
            limit=limit,
        )
    )
    return JSONResponse(
        status_code=status, content=body.model_dump(exclude_none=True), headers=headers
    )


def status_of(exc: IrisflowError) -> tuple[int, str]:
    if isinstance(exc, PredictionFailed):
        return _FAILED_STATUS.get(exc.code, 422), exc.code
    if isinstance(exc, RolloutRefused):
        return exc.status, exc.code
    for kind, status, code in _STATUS:
        if isinstance(exc, kind):
            return status, code
    return 500, "internal"


async def _on_irisflow_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IrisflowError)
    status, code = status_of(exc)
    fields = exc.fields if isinstance(exc, FeatureMismatch) else None
    message = str(exc)
    if fields is not None:
        message = "; ".join(f"{f.field}: {f.message}" for f in capped(fields))
    limit = exc.limit if isinstance(exc, TooManyInstances) else None
    if isinstance(exc, TooManyInstances):
        fields = [FieldError(field="instances", message=f"at most {exc.limit} instances")]
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    return error_response(status, code, message, fields, limit=limit, headers=headers)


def _field_error(item: Mapping[str, Any]) -> FieldError:
    """One validation problem, named by its path (``features.x``, ``query.until``)."""
    loc = [str(p) for p in item.get("loc", ())]
    if item.get("type") == "json_invalid":  # FastAPI puts the character offset in ``loc``
        where = f" at character {loc[-1]}" if len(loc) > 1 else ""
        reason = item.get("ctx", {}).get("error", "")
        message = f"not valid JSON{where}" + (f" ({reason})" if reason else "")
        return FieldError(field="body", message=f"{message}: send one JSON object")
    if loc and loc[0] in _UNNAMED_LOCATIONS:
        loc = loc[1:]
    return FieldError(field=".".join(loc) or "body", message=str(item.get("msg")))


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = exc.errors()
    fields = [_field_error(item) for item in items[:MOST_FIELDS]]
    more = len(items) - len(fields)
    message = "; ".join(f"{f.field}: {f.message}" for f in capped(fields, more=more))
    return error_response(422, "invalid_request", message, fields, more_fields=more)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed(request: Request) -> str | None:
    """Every method some route serves at this path. Starlette's 405 names only the first
    route whose path matched, so a path with a GET route and a POST route (``/v1/rollout``)
    would answer ``Allow: GET``, hiding the POST. Mounts (static files) are left out: they
    take any method at routing and answer their own 405."""
    routes = [r for r in request.app.router.routes if not isinstance(r, Mount)]
    served = [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    ]
    return ", ".join(served) or None


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    if exc.status_code == 400 and exc.detail == _FASTAPI_UNREADABLE:
        field = FieldError(field="body", message=_UNREADABLE)
        return error_response(400, "unreadable_body", _UNREADABLE, [field], headers=exc.headers)
    headers = exc.headers
    allowed = _allowed(request) if exc.status_code == 405 else None
    if allowed is not None:
        headers = {**(exc.headers or {}), "Allow": allowed}
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return error_response(500, "internal", "internal error; the gateway log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(IrisflowError, _on_irisflow_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
