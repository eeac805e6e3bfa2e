"""What the HTTP clients raise: the gateway's own error, with its status, code and fields.

The gateway answers every refusal with a message that says what to do, and (on ``/v1``) names
each bad field; a client that turned that into ``httpx.HTTPStatusError: 422`` would throw the
useful part away. :class:`GatewayError` keeps it: ``str(error)`` is the status, the code and the
gateway's message, and ``error.fields`` the named fields. Both protocols' shapes are read:
``{"error": {"status", "code", "message", "fields"}}`` (``/v1``) and ``{"error": "..."}`` (the
Open Inference Protocol).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from irisflow.errors import IrisflowError

__all__ = ["FieldProblem", "GatewayError", "GatewayUnreachable", "check"]

_MOST_TEXT = 500
"""Characters of a body that is not an error body, kept in the message (a proxy's HTML page)."""


@dataclass(frozen=True)
class FieldProblem:
    """One field the gateway refused: ``features.petal_width``, ``request_id``, ``body``."""

    field: str
    message: str


class GatewayError(IrisflowError):
    """The gateway refused or failed a call (any status other than 2xx)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        fields: tuple[FieldProblem, ...] = (),
        limit: int | None = None,
    ) -> None:
        label = f"HTTP {status}" + (f" {code}" if code else "")
        super().__init__(f"{label}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.limit = limit
        """For a 413: the most instances (or body bytes) the gateway takes in one call."""


class GatewayUnreachable(GatewayError):
    """No answer at all: the connection failed or the call timed out (status 0)."""

    def __init__(self, url: str, exc: httpx.TransportError) -> None:
        super().__init__(
            0,
            f"no answer from {url} ({type(exc).__name__}: {exc}); is the gateway running "
            "(`irisflow up` or `irisflow gateway`), and is the timeout long enough?",
        )


def _from_body(status: int, body: Any) -> GatewayError | None:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return GatewayError(status, error)
    if not isinstance(error, dict):
        return None
    fields = tuple(
        FieldProblem(field=str(f.get("field")), message=str(f.get("message")))
        for f in error.get("fields") or ()
        if isinstance(f, dict)
    )
    limit = error.get("limit")
    return GatewayError(
        status,
        str(error.get("message") or ""),
        code=str(error["code"]) if error.get("code") else None,
        fields=fields,
        limit=limit if isinstance(limit, int) else None,
    )


def check(response: httpx.Response) -> Any:
    """The decoded JSON body of a 2xx answer (``None`` if it has none); else raise
    :class:`GatewayError` with what the gateway said."""
    if response.is_success:
        return orjson.loads(response.content) if response.content else None
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    error = _from_body(response.status_code, body)
    if error is None:
        text = response.text[:_MOST_TEXT] or response.reason_phrase
        error = GatewayError(response.status_code, text)
    raise error
