"""Trace context and hop timings carried in Kafka record headers.

A prediction crosses two processes and four Kafka hops; to see where its milliseconds go, every
record of its path carries the W3C ``traceparent`` of the request (one trace id from the HTTP
call, a new span id per hop) and the moments each process touched it, as ``irisflow-*-at``
headers. Headers, not fields: values stay the wire contract, and a stamp can be added at the
moment a record is handed to the producer without encoding the value again.

Reading is forgiving by design: a missing or malformed ``traceparent`` starts a new trace and
a malformed stamp is ignored — tracing must never cost a record its answer.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HEDGE_OF",
    "HOPS",
    "REQUEST_PARTITION",
    "TRACEPARENT",
    "Headers",
    "TraceContext",
    "hop_header",
    "read_hops",
    "trace_of",
    "with_headers",
]

TRACEPARENT = "traceparent"
"""The W3C Trace Context header, as OpenTelemetry's propagators name it on Kafka too."""

HOPS = (
    "gateway_received",
    "gateway_published",
    "worker_fetched",
    "worker_scored",
    "worker_published",
    "gateway_answered",
)
"""The moments of one prediction's path, in the order they happen."""

HEDGE_OF = "irisflow-hedge-of"
"""On a gateway's hedged copy of a request: the partition of the original. A worker answers the
copy but does not join it with feedback (the original does that when its partition moves on)."""

REQUEST_PARTITION = "irisflow-request-partition"
"""On an answer: the partition its request was read from, so a gateway sees which partitions'
owners are answering (:mod:`gateway.hedging`)."""

_HOP_PREFIX = "irisflow-"
_HOP_SUFFIX = "-at"
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")

Headers = tuple[tuple[str, bytes], ...]
"""Kafka record headers as every client we use accepts them."""


@dataclass(frozen=True)
class TraceContext:
    """One span's place in a trace: the ``traceparent`` header, parsed."""

    trace_id: str
    span_id: str
    sampled: bool = True

    @classmethod
    def new(cls) -> TraceContext:
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    @classmethod
    def parse(cls, header: str | bytes | None) -> TraceContext | None:
        """The context a ``traceparent`` value names; ``None`` if it is absent or invalid.

        Follows the W3C rules a receiver must: version ``ff`` and all-zero ids are invalid; a
        future version is read by its first four fields.
        """
        if header is None:
            return None
        if isinstance(header, bytes):
            try:
                header = header.decode("ascii")
            except UnicodeDecodeError:
                return None
        match = _TRACEPARENT.match(header.strip())
        if match is None:
            return None
        version, trace_id, span_id, flags, rest = match.groups()
        if version == "ff" or (version == "00" and rest):
            return None
        if trace_id == "0" * 32 or span_id == "0" * 16:
            return None
        return cls(trace_id, span_id, sampled=bool(int(flags, 16) & 1))

    def child(self) -> TraceContext:
        """The next hop's context: the same trace, a new span."""
        return TraceContext(self.trace_id, secrets.token_hex(8), self.sampled)

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def as_header(self) -> tuple[str, bytes]:
        return (TRACEPARENT, self.header.encode())


def _items(headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """Header pairs from aiokafka (a sequence of pairs) or Faust (a mapping or pairs)."""
    if not headers:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return [(str(k), v) for k, v in headers]


def trace_of(headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> TraceContext | None:
    """The trace a record belongs to, if its headers name a valid one."""
    for name, value in _items(headers):
        if name == TRACEPARENT:
            return TraceContext.parse(value)
    return None


def hop_header(hop: str, at: float) -> tuple[str, bytes]:
    """The header stamping ``hop`` (one of :data:`HOPS`) at Unix time ``at``."""
    if hop not in HOPS:
        raise ValueError(f"unknown hop {hop!r}; expected one of {', '.join(HOPS)}")
    name = f"{_HOP_PREFIX}{hop.replace('_', '-')}{_HOP_SUFFIX}"
    return (name, f"{at:.6f}".encode())


_HOP_NAMES = {hop_header(hop, 0.0)[0]: hop for hop in HOPS}


def read_hops(headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> dict[str, float]:
    """The hop stamps in ``headers``, by hop name; malformed or non-finite ones are skipped."""
    hops: dict[str, float] = {}
    for name, value in _items(headers):
        hop = _HOP_NAMES.get(name)
        if hop is None:
            continue
        try:
            at = float(value.decode("ascii") if isinstance(value, bytes) else value)
        except (ValueError, UnicodeDecodeError, TypeError, AttributeError):
            continue
        if 0.0 <= at <= 1e10:  # finite and a plausible Unix time, like every wire timestamp
            hops[hop] = at
    return hops


def with_headers(headers: Sequence[tuple[str, bytes]], *extra: tuple[str, bytes]) -> Headers:
    """``headers`` with ``extra`` added, replacing any header of the same name."""
    names = {name for name, _ in extra}
    return (*((n, v) for n, v in headers if n not in names), *extra)
