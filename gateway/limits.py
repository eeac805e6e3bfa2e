"""The HTTP body size limit, enforced before anything parses a body (a pure ASGI middleware).

FastAPI reads a whole body and parses it as JSON before a route can look at it, so a limit in a
route comes too late: a 16 MB batch costs hundreds of megabytes of Python objects before any
check runs. Here a body whose ``Content-Length`` is over the limit is answered 413 without
reading a byte of it, and a body without one (chunked) is read only up to the limit: the moment
it passes, the client gets 413 and the rest is never read. Under ``/v2`` (the Open Inference
Protocol) the 413 has that protocol's error shape. A body within the limit is buffered
(at most ``max_bytes``) and handed to the app unchanged.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import error_response

__all__ = ["PROTOCOL_PREFIX", "BodyLimit"]

PROTOCOL_PREFIX = "/v2"
"""Paths of the Open Inference Protocol, whose errors are ``{"error": "..."}``."""


class BodyLimit:
    """Answer 413 to any HTTP request whose body is larger than ``max_bytes``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = (
            f"the request body is larger than {self.max_bytes} bytes "
            "(gateway.max_body_bytes): send less, or split a batch"
        )
        headers = {"Connection": "close"}
        response: Response
        if scope.get("path", "").startswith(PROTOCOL_PREFIX):  # the protocol's error shape
            response = JSONResponse({"error": message}, status_code=413, headers=headers)
        else:
            response = error_response(
                413, "too_large", message, limit=self.max_bytes, headers=headers
            )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that returns ``messages`` first, then whatever the server sends next."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
