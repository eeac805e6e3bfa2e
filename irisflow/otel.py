"""Hop spans for OpenTelemetry, exported only when an OTLP endpoint is configured.

Every process already knows its hops' moments and span ids (:mod:`irisflow.tracing`), so spans
are recorded after the fact with those exact ids and times: what an OTLP backend shows is the
same trace the Kafka headers and ``GET /v1/predictions/{id}`` show. Without an endpoint (the
default) :class:`Spans` is disabled and ``record`` returns at once; without the optional
``otel`` extra installed, a configured endpoint is reported once and ignored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from irisflow.settings import TracingSettings
from irisflow.tracing import TraceContext

__all__ = ["Spans"]

log = logging.getLogger(__name__)

_KINDS = ("server", "client", "producer", "consumer", "internal")


class Spans:
    """Records finished hops as spans (a no-op unless built with an exporter)."""

    def __init__(self, provider: Any = None) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("irisflow") if provider is not None else None
        self._ids: _PresetIds | None = getattr(provider, "irisflow_ids", None)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @classmethod
    def create(cls, settings: TracingSettings, *, service: str) -> Spans:
        """Spans exported to ``settings.otlp_endpoint`` over OTLP/HTTP, or disabled."""
        if not settings.otlp_endpoint:
            return cls()
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning(
                "tracing.otlp_endpoint is set but OpenTelemetry is not installed: no spans are "
                "exported (pip install 'irisflow[otel]')"
            )
            return cls()
        endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
        log.info("exporting spans of %s to %s", service, endpoint)
        return cls.with_processor(processor, service=service)

    @classmethod
    def with_processor(cls, processor: Any, *, service: str) -> Spans:
        """Spans handed to an OpenTelemetry span processor (tests use an in-memory one)."""
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        ids = _id_generator()
        provider = TracerProvider(
            resource=Resource.create({"service.name": service}),
            id_generator=ids,  # type: ignore[arg-type]
        )
        provider.add_span_processor(processor)
        provider.irisflow_ids = ids  # type: ignore[attr-defined]
        return cls(provider)

    def record(
        self,
        name: str,
        *,
        kind: str,
        span: TraceContext,
        parent: TraceContext | None,
        start: float,
        end: float,
        attributes: Mapping[str, str | int | float] | None = None,
    ) -> None:
        """One finished span with ``span``'s ids, from ``start`` to ``end`` (Unix seconds)."""
        if self._tracer is None or self._ids is None:
            return
        from opentelemetry import trace

        if kind not in _KINDS:
            raise ValueError(f"span kind {kind!r} is not one of {', '.join(_KINDS)}")
        context = None
        if parent is not None:
            remote = trace.SpanContext(
                int(parent.trace_id, 16),
                int(parent.span_id, 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(1 if parent.sampled else 0),
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        with self._ids.preset(span):
            started = self._tracer.start_span(
                name,
                context=context,
                kind=getattr(trace.SpanKind, kind.upper()),
                start_time=_nanos(start),
                attributes=dict(attributes or {}),
            )
        started.end(end_time=_nanos(max(end, start)))

    def close(self) -> None:
        """Flush what is buffered and stop exporting."""
        if self._provider is not None:
            self._provider.shutdown()


class _PresetIds:
    """Hands out the ids irisflow already put in headers, as OpenTelemetry's id generator.

    Built by :func:`_id_generator`, which subclasses the SDK's ``IdGenerator`` on first use, so
    that this module imports without the optional extra.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._span: TraceContext | None = None

    @contextmanager
    def preset(self, span: TraceContext) -> Iterator[None]:
        with self._lock:
            self._span = span
            try:
                yield
            finally:
                self._span = None

    def generate_span_id(self) -> int:
        assert self._span is not None, "spans are started only through Spans.record"
        return int(self._span.span_id, 16)

    def generate_trace_id(self) -> int:
        assert self._span is not None, "spans are started only through Spans.record"
        return int(self._span.trace_id, 16)

    def is_trace_id_random(self) -> bool:
        return True  # ours come from secrets.token_hex


def _id_generator() -> _PresetIds:
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class PresetIds(_PresetIds, IdGenerator):
        pass

    return PresetIds()


def _nanos(seconds: float) -> int:
    """Unix seconds to nanoseconds, at the microsecond precision hop stamps carry."""
    return round(seconds * 1e6) * 1000
