"""Per-request HTTP metrics and trace context, as a pure ASGI middleware.

Starlette's ``BaseHTTPMiddleware`` (what ``@app.middleware("http")`` builds) runs every request
in a task group with memory streams and a child task: in a profile of ``/v1/predict`` at 150 rps
it was the largest single cost in the gateway. Wrapping ``send`` to see the status costs one
closure per request and leaves the body stream alone.

It also starts each request's :class:`gateway.trips.Trip` (the moment it arrived, its span of
the client's trace or of a new one) and answers with that span as the ``traceparent`` header,
so a client can find its request in the audit trail and in any OpenTelemetry backend.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import GatewayMetrics
from gateway.trips import start_trip

__all__ = ["Measure"]


class Measure:
    """Count requests in flight and observe each one's duration by route, method and status.

    The route is the template (``/v1/predictions/{request_id}``), read from the scope after
    the router matched it, so ids never become label values; unmatched paths share one label.
    An exception that escapes the app counts as a 500, which is what the client gets.
    """

    def __init__(self, app: ASGIApp, *, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        traceparent = start_trip(scope).span.header.encode()

        async def send_seeing_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"traceparent", traceparent))
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.http_in_flight.inc()
        try:
            await self.app(scope, receive, send_seeing_status)
        finally:
            self.metrics.http_in_flight.dec()
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.http_request_duration.labels(path, scope["method"], str(status)).observe(
                time.perf_counter() - started
            )
