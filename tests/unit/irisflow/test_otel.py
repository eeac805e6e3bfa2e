"""Hop spans: exported with the ids the Kafka headers carry, or not at all."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from irisflow.otel import Spans
from irisflow.settings import TracingSettings
from irisflow.tracing import TraceContext


def _spans() -> tuple[Spans, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Spans.with_processor(SimpleSpanProcessor(exporter), service="tests"), exporter


def test_a_span_has_the_ids_and_times_of_its_hop() -> None:
    spans, exporter = _spans()
    parent = TraceContext.new()
    hop = parent.child()
    spans.record(
        "process irisflow.requests",
        kind="consumer",
        span=hop,
        parent=parent,
        start=1_700_000_000.25,
        end=1_700_000_000.5,
        attributes={"messaging.system": "kafka"},
    )
    (span,) = exporter.get_finished_spans()
    assert span.context is not None
    assert f"{span.context.trace_id:032x}" == parent.trace_id
    assert f"{span.context.span_id:016x}" == hop.span_id
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == parent.span_id
    assert span.kind is SpanKind.CONSUMER
    assert (span.start_time, span.end_time) == (
        1_700_000_000_250_000_000,
        1_700_000_000_500_000_000,
    )
    assert span.attributes == {"messaging.system": "kafka"}
    assert span.resource.attributes["service.name"] == "tests"


def test_a_root_span_starts_the_trace_it_names() -> None:
    spans, exporter = _spans()
    root = TraceContext.new()
    spans.record("POST /v1/predict", kind="server", span=root, parent=None, start=1.0, end=2.0)
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert span.context is not None
    assert f"{span.context.trace_id:032x}" == root.trace_id


def test_an_unknown_kind_is_a_programming_error() -> None:
    spans, _ = _spans()
    with pytest.raises(ValueError, match="consumer"):
        spans.record("x", kind="sideways", span=TraceContext.new(), parent=None, start=1, end=2)


def test_without_an_endpoint_nothing_is_recorded_or_exported() -> None:
    spans = Spans.create(TracingSettings(), service="tests")
    assert not spans.enabled
    spans.record("x", kind="server", span=TraceContext.new(), parent=None, start=1, end=2)
    spans.close()


def test_with_an_endpoint_spans_are_exported_over_otlp_http(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="irisflow.otel")
    spans = Spans.create(TracingSettings(otlp_endpoint="http://127.0.0.1:9/"), service="tests")
    assert spans.enabled
    assert "http://127.0.0.1:9/v1/traces" in caplog.text
    spans._provider.shutdown = lambda: None  # nothing listens on port 9: do not wait to flush
