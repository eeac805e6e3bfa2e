"""The audit store on SQLite and PostgreSQL: upserts by request id in any order, twice, and
queries by time (every test with a store runs on both backends, ``audit_db``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.feed import (
    audit_group_id,
    drift_row,
    feedback_row,
    prediction_row,
    request_row,
)
from gateway.audit.store import AuditBatch, AuditStore, audit_url
from irisflow.schemas import (
    BatchPrediction,
    BatchPredictionRequest,
    DriftEvent,
    Feedback,
    InstancePrediction,
    Prediction,
    PredictionRequest,
)
from tests.factories import SETOSA, VIRGINICA
from tests.postgres import AuditDatabases

PROBS = {"setosa": 0.9, "versicolor": 0.07, "virginica": 0.03}


@pytest.fixture
def store(audit_db: AuditDatabases) -> Iterator[AuditStore]:
    made = AuditStore(audit_db.new())
    yield made
    made.close()


def _sent(rid: str, at: float, features: dict[str, float] = SETOSA) -> dict[str, Any]:
    message = PredictionRequest(request_id=rid, features=features, sent_at=at, reply_to="gw-1")
    return request_row(message)


def _answered(rid: str, at: float, label: str = "setosa") -> dict[str, Any]:
    message = Prediction(
        request_id=rid, label=label, probabilities=PROBS, model_version=1, scored_at=at
    )
    return prediction_row(message)


def _labeled(rid: str, label: str, at: float) -> dict[str, Any]:
    return feedback_row(Feedback(request_id=rid, label=label, labeled_at=at))


def test_the_default_store_is_a_sqlite_file_in_the_home_folder(tmp_path: Path) -> None:
    assert audit_url(None, tmp_path) == f"sqlite:///{tmp_path / 'audit.db'}"
    assert audit_url("postgresql://u:p@db/irisflow", tmp_path) == "postgresql://u:p@db/irisflow"
    AuditStore(audit_url(None, tmp_path / "new"))
    assert (tmp_path / "new" / "audit.db").exists()


def test_rows_arriving_in_any_order_make_one_complete_record(store: AuditStore) -> None:
    store.write(AuditBatch(feedback=[_labeled("r1", "setosa", 30.0)]))
    store.write(AuditBatch(predictions=[_answered("r1", 20.0)]))
    store.write(AuditBatch(requests=[_sent("r1", 10.0)]))
    record = store.get("r1")
    assert record is not None
    assert (record.status, record.at, record.label, record.reply_to) == (
        "answered",
        10.0,
        "setosa",
        "gw-1",
    )
    assert record.features == SETOSA
    assert record.feedback is not None
    assert (record.feedback.label, record.feedback.correct) == ("setosa", True)


def test_records_read_twice_leave_one_row(store: AuditStore) -> None:
    batch = AuditBatch(
        requests=[_sent("r1", 10.0), _sent("r1", 10.0)],
        predictions=[_answered("r1", 11.0)],
    )
    store.write(batch)
    store.write(batch)
    assert len(store.page(since=None, until=None, limit=10, order="asc")) == 1


def test_a_request_without_an_answer_is_pending(store: AuditStore) -> None:
    store.write(AuditBatch(requests=[_sent("r1", 10.0)]))
    record = store.get("r1")
    assert record is not None
    assert record.status == "pending"
    assert store.get("r2") is None


def test_a_batch_is_one_record_with_its_instances_and_answers(store: AuditStore) -> None:
    request = BatchPredictionRequest(request_id="b1", instances=[SETOSA, VIRGINICA], sent_at=5.0)
    answer = BatchPrediction(
        request_id="b1",
        predictions=[
            InstancePrediction(label="setosa", probabilities=PROBS),
            InstancePrediction(label="virginica", probabilities=PROBS),
        ],
        model_version=2,
        scored_at=6.0,
    )
    store.write(
        AuditBatch(
            requests=[request_row(request)],
            predictions=[prediction_row(answer)],
        )
    )
    record = store.get("b1")
    assert record is not None
    assert (record.kind, record.n_instances, record.status) == ("batch", 2, "answered")
    assert record.predictions is not None
    assert [p.label for p in record.predictions] == ["setosa", "virginica"]
    assert record.features == [SETOSA, VIRGINICA]


def test_an_answer_with_an_error_is_failed(store: AuditStore) -> None:
    answer = Prediction(request_id="r1", error="no model is live", error_code="no_model")
    store.write(AuditBatch(predictions=[prediction_row(answer)]))
    record = store.get("r1")
    assert record is not None
    assert (record.status, record.error_code) == ("failed", "no_model")


def test_pages_by_time_are_bounded_and_ordered(store: AuditStore) -> None:
    store.write(AuditBatch(requests=[_sent(f"r{i}", float(i)) for i in range(10)]))
    page = store.page(since=3.0, until=7.0, limit=10, order="asc")
    assert [r.request_id for r in page] == ["r3", "r4", "r5", "r6"]
    newest = store.page(since=None, until=None, limit=2, order="desc")
    assert [r.request_id for r in newest] == ["r9", "r8"]


def test_drift_alarms_are_stored_once(store: AuditStore) -> None:
    event = DriftEvent(
        model_name="iris",
        model_version=1,
        feature="petal_width",
        detector="ks",
        statistic=0.4,
        threshold=0.15,
        window=500,
        detected_at=50.0,
    )
    row = drift_row(event)
    store.write(AuditBatch(drift=[row]))
    store.write(AuditBatch(drift=[row]))
    alarms = store.drift_alarms(0.0)
    assert [(a.feature, a.detector, a.statistic) for a in alarms] == [("petal_width", "ks", 0.4)]


def test_gateways_sharing_a_database_share_a_group_and_others_do_not() -> None:
    shared = audit_group_id("irisflow", "postgresql://alice:pw@db/audit")
    assert shared == audit_group_id("irisflow", "postgresql://bob:other@db/audit")
    assert shared != audit_group_id("irisflow", "postgresql://alice:pw@db2/audit")
    assert "pw" not in shared


def test_the_dashboards_inputs_are_read_on_an_instance_budget_newest_first(
    store: AuditStore,
) -> None:
    """Finding 6: big batches must not make ``/v1/stats`` read gigabytes of features."""
    batches = [
        BatchPredictionRequest(request_id=f"b{i}", instances=[SETOSA] * 1000, sent_at=100.0 + i)
        for i in range(30)
    ]
    store.write(AuditBatch(requests=[request_row(b) for b in batches]))
    store.write(AuditBatch(requests=[_sent("single", 200.0, VIRGINICA)]))
    inputs = store.recent_inputs(0.0, max_instances=3001)
    assert [at for at, _ in inputs] == [200.0, 129.0, 128.0, 127.0]
    assert inputs[0][1] == VIRGINICA
    assert len(inputs[1][1]) == 1000


def test_the_dashboards_counts_do_not_carry_features(store: AuditStore) -> None:
    store.write(AuditBatch(requests=[_sent("r1", 10.0)], predictions=[_answered("r1", 11.0)]))
    (row,) = store.window(0.0)
    assert not hasattr(row, "features")
    assert (row.at, row.scored_at, row.label) == (10.0, 11.0, "setosa")


def test_the_dashboard_reads_at_most_twenty_thousand_rows_and_instances(
    store: AuditStore,
) -> None:
    """README: ``/v1/stats`` reads at most 20,000 rows and 20,000 instances (the defaults the
    route relies on), newest first, however long the window's history is."""
    requests = [_sent(f"r{i}", 1000.0 + i) for i in range(20_001)]
    store.write(AuditBatch(requests=requests))
    rows = store.window(0.0)
    assert len(rows) == 20_000
    assert min(row.at for row in rows) == 1001.0  # the oldest row is the one left out
    inputs = store.recent_inputs(0.0)
    assert len(inputs) == 20_000
    assert inputs[0][0] == 21_000.0
