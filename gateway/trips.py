"""One request's trip through Kafka, as the gateway sees it: its trace and its hop stamps.

The middleware starts a trip when the HTTP request arrives (continuing the client's W3C
``traceparent`` if it sent one); the bridge fills in when the request was on the broker and on
which partition, the worker's stamps from the answer's headers, and when the answer came. The
answer's latency is then the one the client saw (gateway in to gateway out), with the worker's
share beside it; the same stamps reach the audit trail and, if configured, OpenTelemetry.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Scope

from irisflow.otel import Spans
from irisflow.settings import TopicNames
from irisflow.tracing import HOPS, Headers, TraceContext, hop_header, read_hops

__all__ = ["HopLog", "Trip", "record_spans", "start_trip", "trip_of"]

_SCOPE_KEY = "irisflow.trip"


@dataclass
class Trip:
    """What is known of one request's way so far (Unix seconds; ``None``: not yet)."""

    received: float
    span: TraceContext
    """The gateway's span for this HTTP request (sent back to the client as ``traceparent``)."""
    parent: TraceContext | None = None
    """The client's span, when it sent a ``traceparent``."""
    request_span: TraceContext | None = None
    """The span of the request record (a child of :attr:`span`), carried to the worker."""
    published: float | None = None
    """When the request record was handed to the producer (before the broker's ack, so that
    every stamp of the path is in order: no worker can fetch it earlier)."""
    partition: int | None = None
    worker: dict[str, float] = field(default_factory=dict)
    answer_span: TraceContext | None = None
    answered: float | None = None
    hedges: int = 0

    @classmethod
    def start(cls, traceparent: str | bytes | None, *, at: float | None = None) -> Trip:
        parent = TraceContext.parse(traceparent)
        span = parent.child() if parent is not None else TraceContext.new()
        return cls(received=time.time() if at is None else at, span=span, parent=parent)

    def request_headers(self) -> Headers:
        """Headers of the request record: a new span of this trip and when it arrived."""
        self.request_span = self.span.child()
        return (self.request_span.as_header(), hop_header("gateway_received", self.received))

    def took_answer(
        self, headers: tuple[tuple[str, bytes], ...], span: TraceContext | None
    ) -> None:
        self.worker = {k: v for k, v in read_hops(headers).items() if k.startswith("worker_")}
        self.answer_span = span
        self.answered = time.time()

    @property
    def latency(self) -> float:
        """What the client waited, as far as the gateway can tell (in to out)."""
        return (self.answered or time.time()) - self.received

    @property
    def worker_seconds(self) -> float | None:
        """The worker's share: from fetching the request to handing over the answer."""
        fetched, published = self.worker.get("worker_fetched"), self.worker.get("worker_published")
        if fetched is None or published is None:
            return None
        return max(0.0, published - fetched)

    def hops(self) -> dict[str, float]:
        """Every known moment, by hop name, in path order."""
        known = {
            "gateway_received": self.received,
            "gateway_published": self.published,
            **self.worker,
            "gateway_answered": self.answered,
        }
        return {hop: at for hop in HOPS if (at := known.get(hop)) is not None}


class HopLog:
    """This gateway's own stamps of answered trips, until the audit feed takes them (bounded:
    if the feed is down, the oldest are dropped rather than held without limit)."""

    def __init__(self, capacity: int = 10000) -> None:
        self._rows: deque[dict[str, Any]] = deque(maxlen=capacity)

    def add(self, request_id: str, trip: Trip) -> None:
        row: dict[str, Any] = {
            "request_id": request_id,
            "trace_id": trip.span.trace_id,
            "gateway_published": trip.published,
            "gateway_answered": trip.answered,
        }
        self._rows.append(row)

    def drain(self) -> list[dict[str, Any]]:
        """Everything logged so far (for the audit feed's next batch), and forget it."""
        rows = []
        while self._rows:
            rows.append(self._rows.popleft())
        return rows


def trip_of(scope: Scope) -> Trip:
    """The trip the middleware started for this request (one is started if it did not)."""
    trip = scope.get(_SCOPE_KEY)
    return trip if trip is not None else start_trip(scope)


def start_trip(scope: Scope) -> Trip:
    """Called by the middleware as the request arrives."""
    trip = scope[_SCOPE_KEY] = Trip.start(_traceparent(scope))
    return trip


def _traceparent(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"traceparent":
            return bytes(value)
    return None


def record_spans(spans: Spans, trip: Trip, *, name: str, topics: TopicNames, key: str) -> None:
    """The gateway's spans of an answered trip: the HTTP request, sending the request record,
    and receiving its answer (the worker records its own span in between)."""
    if not spans.enabled or trip.answered is None:
        return
    kafka = {"messaging.system": "kafka", "messaging.kafka.message.key": key}
    spans.record(
        name,
        kind="server",
        span=trip.span,
        parent=trip.parent,
        start=trip.received,
        end=trip.answered,
    )
    if trip.request_span is not None and trip.published is not None:
        spans.record(
            f"send {topics.requests}",
            kind="producer",
            span=trip.request_span,
            parent=trip.span,
            start=trip.received,
            end=trip.published,
            attributes={
                **kafka,
                "messaging.operation.type": "send",
                "messaging.destination.name": topics.requests,
                "messaging.destination.partition.id": str(trip.partition),
            },
        )
    sent = trip.worker.get("worker_published", trip.published or trip.received)
    spans.record(
        f"receive {topics.predictions}",
        kind="consumer",
        span=(trip.answer_span or trip.span).child(),
        parent=trip.answer_span or trip.span,
        start=min(sent, trip.answered),
        end=trip.answered,
        attributes={
            **kafka,
            "messaging.operation.type": "receive",
            "messaging.destination.name": topics.predictions,
        },
    )
