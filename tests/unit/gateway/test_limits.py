"""The body limit reads no more of a body than it needs to refuse it (finding 6)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from gateway.limits import BodyLimit


class _App:
    """An inner app that records the body it was given."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _call(
    limit: int, chunks: list[bytes], headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[_App, list[Message], int]:
    """Serve one request; return the app, what was sent, and how many chunks were read."""
    app = _App()
    queue = list(chunks)
    read = 0

    async def receive() -> Message:
        nonlocal read
        read += 1
        chunk = queue.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/predict",
        "headers": headers or [],
    }
    await BodyLimit(app, max_bytes=limit)(scope, receive, send)
    return app, sent, read


async def test_a_declared_length_over_the_limit_is_refused_without_reading() -> None:
    app, sent, read = await _call(100, [b"x" * 1000], [(b"content-length", b"1000")])
    assert (read, app.bodies) == (0, [])
    assert sent[0]["status"] == 413
    error = orjson.loads(sent[1]["body"])["error"]
    assert (error["code"], error["limit"]) == ("too_large", 100)


async def test_a_chunked_body_is_read_only_until_it_passes_the_limit() -> None:
    app, sent, read = await _call(100, [b"x" * 60] * 50)
    assert read == 2
    assert app.bodies == []
    assert sent[0]["status"] == 413


async def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    app, sent, _ = await _call(100, [b"a" * 40, b"b" * 40, b"c" * 20])
    assert app.bodies == [b"a" * 40 + b"b" * 40 + b"c" * 20]
    assert sent[0]["status"] == 200
