"""The worker's part of a record's trace: its stamps on answers, its trace on what follows.

A request's answer carries the request's trace (a new span of it) and three moments of the
worker: when the batch was fetched (handed to scoring), when it was scored, and when the answer
was handed to the producer. Labeled samples carry the trace of the record that completed the
join; drift alarms that of the first traced request of the batch that raised them (the alarm
has many causes; this is the one that tipped it). Records without a trace get stamps only.

Answers also name the partition their request was read from, so gateways see which partitions'
owners answer; a gateway's hedged copy of a request (see ``gateway.hedging``) is answered like
any request, but only its original is joined with feedback.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from irisflow.otel import Spans
from irisflow.settings import TopicNames
from irisflow.topics import Incoming, Outgoing
from irisflow.tracing import HEDGE_OF, REQUEST_PARTITION, TraceContext, hop_header, trace_of

__all__ = ["WorkerStamps", "carry", "hedged", "record_spans"]


@dataclass(frozen=True)
class WorkerStamps:
    """When a batch was fetched, scored and handed to the producer (Unix seconds)."""

    fetched: float
    scored: float
    published: float

    def headers(self) -> tuple[tuple[str, bytes], ...]:
        return (
            hop_header("worker_fetched", self.fetched),
            hop_header("worker_scored", self.scored),
            hop_header("worker_published", self.published),
        )


def carry(
    out: list[Outgoing],
    records: Sequence[Incoming],
    *,
    answers: str = "",
    stamps: WorkerStamps | None = None,
    by_key: Collection[str] = (),
    by_batch: Collection[str] = (),
) -> list[Outgoing]:
    """``out`` with traces and stamps added.

    Records for ``answers`` get ``stamps`` and the trace of the request with their key; those
    for a topic in ``by_key`` the trace of the record with their key; those for a topic in
    ``by_batch`` the first trace of the batch. Anything else is returned as it is.
    """
    traces: dict[bytes | None, TraceContext] = {}
    partitions: dict[bytes | None, bytes] = {}
    for record in records:
        if record.partition is not None:
            partitions.setdefault(record.key, str(record.partition).encode())
        if record.headers and (trace := trace_of(record.headers)) is not None:
            traces.setdefault(record.key, trace)
    first = next(iter(traces.values()), None)
    if first is None and stamps is None:
        return out
    stamped = stamps.headers() if stamps is not None else ()
    carried = []
    for message in out:
        extra: tuple[tuple[str, bytes], ...] = ()
        trace = None
        if message.topic == answers:
            extra, trace = stamped, traces.get(message.key)
            if (partition := partitions.get(message.key)) is not None:
                extra += ((REQUEST_PARTITION, partition),)
        elif message.topic in by_key:
            trace = traces.get(message.key)
        elif message.topic in by_batch:
            trace = first
        if trace is not None:
            extra += (trace.child().as_header(),)
        carried.append(replace(message, headers=message.headers + extra) if extra else message)
    return carried


def hedged(records: Sequence[Incoming]) -> set[tuple[bytes | None, int | None]]:
    """(key, partition) of the records that are a gateway's hedged copies."""
    return {(r.key, r.partition) for r in records if any(name == HEDGE_OF for name, _ in r.headers)}


def record_spans(
    spans: Spans,
    out: Sequence[Outgoing],
    records: Sequence[Incoming],
    *,
    topics: TopicNames,
    stamps: WorkerStamps,
) -> None:
    """The worker's span of each traced request: from fetching it to handing its answer over."""
    parents = {r.key: trace for r in records if (trace := trace_of(r.headers)) is not None}
    for message in out:
        if message.topic != topics.predictions or message.key not in parents:
            continue
        span = trace_of(message.headers)
        if span is None:
            continue
        spans.record(
            f"process {topics.requests}",
            kind="consumer",
            span=span,
            parent=parents[message.key],
            start=stamps.fetched,
            end=stamps.published,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": topics.requests,
                "messaging.kafka.message.key": (message.key or b"").decode(errors="replace"),
            },
        )
