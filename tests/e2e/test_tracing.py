"""Where a prediction's milliseconds go: its trace and hop stamps, across every hop.

A client's W3C ``traceparent`` is continued by the gateway (and answered back), carried in the
headers of the request record, the answer, the labeled sample its feedback completes, and any
dead letter a record of the trace costs; ``GET /v1/predictions/{id}`` shows when each hop
happened, in path order. Real broker, real worker and gateway processes.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from aiokafka.structs import ConsumerRecord

from irisflow.kafka.clients import make_producer, send
from irisflow.topics import Outgoing
from irisflow.tracing import HOPS, TraceContext, trace_of
from tests.e2e.conftest import Stack, records_on
from tests.factories import SETOSA

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


def _headers(record: ConsumerRecord[bytes, bytes]) -> tuple[tuple[str, bytes], ...]:
    return tuple(record.headers)


def _one(
    stack: Stack, topic: str, key: str, deadline: float = 30.0
) -> ConsumerRecord[bytes, bytes]:
    """The record keyed ``key`` on ``topic``, waiting for it to be there."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        found = [r for r in records_on(stack.settings.kafka, topic) if r.key == key.encode()]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no record keyed {key} on {topic} within {deadline:g} s")


def _predict(stack: Stack, rid: str, client: TraceContext) -> httpx.Response:
    response = httpx.post(
        f"{stack.gateway_url}/v1/predict",
        json={"request_id": rid, "features": SETOSA},
        headers={"traceparent": client.header},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def test_the_clients_trace_is_continued_on_every_hop(stack: Stack) -> None:
    client = TraceContext.new()
    rid = f"trace-{uuid.uuid4().hex[:8]}"
    response = _predict(stack, rid, client)
    answered_under = TraceContext.parse(response.headers["traceparent"])
    assert answered_under is not None
    assert answered_under.trace_id == client.trace_id
    topics = stack.settings.kafka.topics
    request = trace_of(_headers(_one(stack, topics.requests, rid)))
    answer = trace_of(_headers(_one(stack, topics.predictions, rid)))
    assert request is not None
    assert answer is not None
    assert {request.trace_id, answer.trace_id} == {client.trace_id}
    assert len({client.span_id, answered_under.span_id, request.span_id, answer.span_id}) == 4

    feedback_trace = TraceContext.new()
    sent = httpx.post(
        f"{stack.gateway_url}/v1/feedback",
        json={"request_id": rid, "label": "setosa"},
        headers={"traceparent": feedback_trace.header},
        timeout=30,
    )
    assert sent.status_code == 202, sent.text
    labeled = trace_of(_headers(_one(stack, topics.labeled, rid)))
    assert labeled is not None
    assert labeled.trace_id == feedback_trace.trace_id


def test_a_dead_letter_joins_the_trace_of_the_record_it_refuses(stack: Stack) -> None:
    trace = TraceContext.new()
    rid = f"junk-{uuid.uuid4().hex[:8]}"
    topics = stack.settings.kafka.topics

    async def produce() -> None:
        producer = make_producer(stack.settings.kafka)
        await producer.start()
        try:
            junk = Outgoing(topics.requests, rid.encode(), b"{not json", None, (trace.as_header(),))
            await send(producer, junk)
        finally:
            await producer.stop()

    asyncio.run(produce())
    until = time.monotonic() + 30
    letters: list[TraceContext] = []
    while not letters and time.monotonic() < until:
        letters = [
            t
            for r in records_on(stack.settings.kafka, topics.dead_letters)
            if (t := trace_of(_headers(r))) is not None and t.trace_id == trace.trace_id
        ]
        time.sleep(0.2)
    assert letters, "the junk record's dead letter does not carry its trace"


def test_the_audit_shows_every_hop_in_path_order(stack: Stack) -> None:
    client = TraceContext.new()
    rid = f"hops-{uuid.uuid4().hex[:8]}"
    body = _predict(stack, rid, client).json()
    assert body["worker_seconds"] is not None
    assert 0 < body["worker_seconds"] < body["latency_seconds"]
    until = time.monotonic() + 30
    record: dict[str, object] = {}
    while time.monotonic() < until:
        got = httpx.get(f"{stack.gateway_url}/v1/predictions/{rid}", timeout=10)
        record = got.json() if got.status_code == 200 else {}
        if isinstance(record.get("hops"), dict) and len(record["hops"]) == len(HOPS):
            break
        time.sleep(0.2)
    hops = record.get("hops")
    assert isinstance(hops, dict), record
    assert list(hops) == list(HOPS)
    moments = [hops[h] for h in HOPS]
    assert moments == sorted(moments), hops
    assert record["trace_id"] == client.trace_id
    assert hops["gateway_answered"] - hops["gateway_received"] == pytest.approx(
        body["latency_seconds"], abs=0.005
    )
