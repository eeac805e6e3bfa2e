"""Errors to HTTP responses, in one table; every error body has the same shape."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from gateway.models import ErrorBody, ErrorDetail, FieldError
from irisflow.errors import (
    IrisflowError,
    KafkaUnavailable,
    ModelNotFound,
    PredictionFailed,
    PredictionTimeout,
    SchemaError,
)

__all__ = ["FeatureMismatch", "error_response", "install_error_handlers"]

_STATUS: list[tuple[type[IrisflowError], int, str]] = [
    (SchemaError, 422, "invalid_request"),
    (ModelNotFound, 404, "not_found"),
    (KafkaUnavailable, 503, "kafka_unavailable"),
    (PredictionTimeout, 504, "timeout"),
]
_FAILED_STATUS = {"no_model": 503, "schema_mismatch": 422, "invalid_request": 422}


class FeatureMismatch(SchemaError):
    """Feature names that do not fit the live model, each named."""

    def __init__(self, fields: list[FieldError]) -> None:
        super().__init__("; ".join(f"{f.field}: {f.message}" for f in fields))
        self.fields = fields


def error_response(
    status: int, code: str, message: str, fields: list[FieldError] | None = None
) -> JSONResponse:
    body = ErrorBody(
        error=ErrorDetail(status=status, code=code, message=message, fields=fields or [])
    )
    return JSONResponse(status_code=status, content=body.model_dump())


def _status_of(exc: IrisflowError) -> tuple[int, str]:
    if isinstance(exc, PredictionFailed):
        return _FAILED_STATUS.get(exc.code, 422), exc.code
    for kind, status, code in _STATUS:
        if isinstance(exc, kind):
            return status, code
    return 500, "internal"


async def _on_irisflow_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IrisflowError)
    status, code = _status_of(exc)
    fields = exc.fields if isinstance(exc, FeatureMismatch) else None
    return error_response(status, code, str(exc), fields)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = []
    for item in exc.errors():
        loc = [str(p) for p in item.get("loc", ()) if p != "body"]
        fields.append(FieldError(field=".".join(loc) or "body", message=str(item.get("msg"))))
    message = "; ".join(f"{f.field}: {f.message}" for f in fields)
    return error_response(422, "invalid_request", message, fields)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(IrisflowError, _on_irisflow_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
