"""A worker's answers carry their request's trace and the worker's hop stamps."""

from __future__ import annotations

import itertools

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from irisflow.otel import Spans
from irisflow.registry import deserialize_model
from irisflow.schemas import Feedback, PredictionRequest
from irisflow.settings import Settings
from irisflow.topics import Incoming, Outgoing
from irisflow.tracing import HEDGE_OF, REQUEST_PARTITION, TraceContext, read_hops, trace_of
from streams.hops import WorkerStamps, carry
from streams.intake import LiveModel
from streams.metrics import WorkerMetrics
from streams.model_updates import ModelHolder
from streams.pipeline import Pipeline
from tests.conftest import SettingsFactory
from tests.factories import SETOSA, model_update


@pytest.fixture
def pipeline(make_settings: SettingsFactory) -> Pipeline:
    settings: Settings = make_settings(**{"streams.join_window_seconds": 60})
    holder = ModelHolder()
    update = model_update(1)
    holder.current = LiveModel(
        update.metadata(), deserialize_model(update.artifact, sha256=update.sha256)
    )
    ticks = itertools.count(1_700_000_000.0, 0.001)  # every reading of the clock is later
    return Pipeline(
        settings,
        holder=holder,
        metrics=WorkerMetrics.create(),
        join_data={},
        changelog_topic="changelog",
        clock=lambda: next(ticks),
    )


def _traced(rid: str, trace: TraceContext | None, value: bytes) -> Incoming:
    headers = (trace.as_header(),) if trace else ()
    return Incoming(value, rid.encode(), 0, 0, "requests", headers)


def _request(rid: str, trace: TraceContext | None = None) -> Incoming:
    return _traced(rid, trace, PredictionRequest(request_id=rid, features=SETOSA).to_bytes())


def test_an_answer_continues_its_requests_trace_in_a_new_span(pipeline: Pipeline) -> None:
    trace = TraceContext.new()
    out = pipeline.score([_request("r-1", trace), _request("r-2")])
    answers = {o.key: o for o in out if o.topic == pipeline.topics.predictions}
    carried = trace_of(answers[b"r-1"].headers)
    assert carried is not None
    assert carried.trace_id == trace.trace_id
    assert carried.span_id != trace.span_id
    assert trace_of(answers[b"r-2"].headers) is None


def test_every_answer_has_the_workers_stamps_in_order(pipeline: Pipeline) -> None:
    out = pipeline.score([_request("r-1", TraceContext.new()), _request("r-2")])
    for answer in (o for o in out if o.topic == pipeline.topics.predictions):
        hops = read_hops(answer.headers)
        assert list(hops) == ["worker_fetched", "worker_scored", "worker_published"]
        assert hops["worker_fetched"] < hops["worker_scored"] < hops["worker_published"]


def test_a_labeled_sample_carries_the_trace_of_the_feedback_that_completed_it(
    pipeline: Pipeline,
) -> None:
    pipeline.score([_request("r-1", TraceContext.new())])
    feedback_trace = TraceContext.new()
    raw = Feedback(request_id="r-1", label="setosa").to_bytes()
    out = pipeline.feedback([_traced("r-1", feedback_trace, raw)])
    (labeled,) = [o for o in out if o.topic == pipeline.topics.labeled]
    carried = trace_of(labeled.headers)
    assert carried is not None
    assert carried.trace_id == feedback_trace.trace_id


def test_records_of_other_topics_are_left_as_they_are() -> None:
    trace = TraceContext.new()
    other = Outgoing("changelog", b"r-1", b"{}")
    out = carry(
        [other],
        [Incoming(b"{}", b"r-1", headers=(trace.as_header(),))],
        answers="predictions",
        stamps=WorkerStamps(1.0, 2.0, 3.0),
    )
    assert out == [other]


def test_drift_alarms_carry_the_first_trace_of_their_batch() -> None:
    first, second = TraceContext.new(), TraceContext.new()
    alarm = Outgoing("drift", b"sepal_length", b"{}")
    records = [
        Incoming(b"{}", b"a"),
        Incoming(b"{}", b"b", headers=(first.as_header(),)),
        Incoming(b"{}", b"c", headers=(second.as_header(),)),
    ]
    (out,) = carry([alarm], records, by_batch=("drift",))
    carried = trace_of(out.headers)
    assert carried is not None
    assert carried.trace_id == first.trace_id


def test_an_answer_names_the_partition_its_request_was_read_from(pipeline: Pipeline) -> None:
    record = Incoming(
        PredictionRequest(request_id="r-1", features=SETOSA).to_bytes(), b"r-1", 3, 0, "requests"
    )
    (answer,) = [o for o in pipeline.score([record]) if o.topic == pipeline.topics.predictions]
    assert (REQUEST_PARTITION, b"3") in answer.headers


def test_a_hedged_copy_is_answered_but_never_joined(pipeline: Pipeline) -> None:
    raw = PredictionRequest(request_id="r-1", features=SETOSA).to_bytes()
    copy = Incoming(raw, b"r-1", 2, 0, "requests", ((HEDGE_OF, b"0"),))
    out = pipeline.score([copy])
    assert [o.key for o in out if o.topic == pipeline.topics.predictions] == [b"r-1"]
    assert len(pipeline.join) == 0
    original = Incoming(raw, b"r-1", 0, 0, "requests")
    pipeline.score([original])
    assert len(pipeline.join) == 1


def test_the_worker_records_its_span_of_each_traced_request(
    make_settings: SettingsFactory,
) -> None:
    exporter = InMemorySpanExporter()
    settings: Settings = make_settings()
    holder = ModelHolder()
    update = model_update(1)
    holder.current = LiveModel(
        update.metadata(), deserialize_model(update.artifact, sha256=update.sha256)
    )
    pipeline = Pipeline(
        settings,
        holder=holder,
        metrics=WorkerMetrics.create(),
        join_data={},
        changelog_topic="changelog",
        spans=Spans.with_processor(SimpleSpanProcessor(exporter), service="worker"),
    )
    trace = TraceContext.new()
    out = pipeline.score([_request("r-1", trace), _request("r-2")])
    (answer,) = [o for o in out if o.topic == pipeline.topics.predictions and o.key == b"r-1"]
    (span,) = exporter.get_finished_spans()
    assert span.name == f"process {pipeline.topics.requests}"
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == trace.span_id
    carried = trace_of(answer.headers)
    assert carried is not None
    assert span.context is not None
    assert f"{span.context.span_id:016x}" == carried.span_id
