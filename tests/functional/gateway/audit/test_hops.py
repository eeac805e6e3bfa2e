"""Hop stamps in the audit: three sources, any order, each setting only what it knows."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from gateway.audit.feed import AuditFeed, prediction_row, request_row
from gateway.audit.store import AuditBatch, AuditStore
from irisflow.schemas import Prediction, PredictionRequest
from irisflow.settings import KafkaSettings
from irisflow.topics import Incoming
from irisflow.tracing import HOPS, TraceContext, hop_header
from tests.factories import SETOSA
from tests.postgres import AuditDatabases

TRACE = TraceContext.new()
FROM_REQUEST = {"request_id": "r1", "trace_id": TRACE.trace_id, "gateway_received": 1.0}
FROM_GATEWAY = {"request_id": "r1", "gateway_published": 2.0, "gateway_answered": 6.0}
FROM_ANSWER = {
    "request_id": "r1",
    "worker_fetched": 3.0,
    "worker_scored": 4.0,
    "worker_published": 5.0,
}


@pytest.fixture
def store(audit_db: AuditDatabases) -> Iterator[AuditStore]:
    made = AuditStore(audit_db.new())
    yield made
    made.close()


@pytest.mark.parametrize(
    "order", list(itertools.permutations([FROM_REQUEST, FROM_GATEWAY, FROM_ANSWER]))
)
def test_every_source_adds_its_stamps_whatever_the_order(
    store: AuditStore, order: tuple[dict[str, object], ...]
) -> None:
    request = PredictionRequest(request_id="r1", features=SETOSA, sent_at=1.0)
    store.write(AuditBatch(requests=[request_row(request)]))
    for source in order:
        store.write(AuditBatch(hops=[source]))
    record = store.get("r1")
    assert record is not None
    assert record.trace_id == TRACE.trace_id
    assert record.hops == {hop: float(i + 1) for i, hop in enumerate(HOPS)}


def test_a_request_without_stamps_has_none(store: AuditStore) -> None:
    request = PredictionRequest(request_id="r2", features=SETOSA, sent_at=1.0)
    store.write(AuditBatch(requests=[request_row(request)]))
    record = store.get("r2")
    assert record is not None
    assert (record.hops, record.trace_id) == (None, None)


def test_the_feed_reads_stamps_from_request_and_answer_headers(store: AuditStore) -> None:
    feed = AuditFeed(KafkaSettings(), store)
    topics = KafkaSettings().topics
    request = PredictionRequest(request_id="r3", features=SETOSA).to_bytes()
    answer = Prediction(
        request_id="r3", label="setosa", probabilities={"setosa": 1.0}, model_version=1
    ).to_bytes()
    records = [
        Incoming(
            request,
            b"r3",
            0,
            0,
            topics.requests,
            (TRACE.as_header(), hop_header("gateway_received", 1.0)),
        ),
        Incoming(answer, b"r3", 0, 0, topics.predictions, (hop_header("worker_fetched", 3.0),)),
    ]
    outcome = feed.process(records, [{"request_id": "r3", "gateway_answered": 6.0}])
    assert outcome.letters == []
    record = store.get("r3")
    assert record is not None
    assert record.trace_id == TRACE.trace_id
    assert record.hops == {"gateway_received": 1.0, "worker_fetched": 3.0, "gateway_answered": 6.0}


def test_the_dashboard_reads_the_latency_the_client_saw_where_it_is_known(
    store: AuditStore,
) -> None:
    for rid in ("seen", "unseen"):
        request = PredictionRequest(request_id=rid, features=SETOSA, sent_at=100.0)
        answer = Prediction(
            request_id=rid,
            label="setosa",
            probabilities={"setosa": 1.0},
            model_version=1,
            latency_seconds=0.004,
            scored_at=100.01,
        )
        store.write(
            AuditBatch(requests=[request_row(request)], predictions=[prediction_row(answer)])
        )
    seen = {"request_id": "seen", "gateway_received": 100.0, "gateway_answered": 100.25}
    store.write(AuditBatch(hops=[seen]))
    latencies = sorted(row.latency_seconds for row in store.window(0.0))
    assert latencies == [pytest.approx(0.004), pytest.approx(0.25)]
