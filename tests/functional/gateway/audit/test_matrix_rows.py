"""A batch that travelled as a matrix is stored column-wise and read back as the batch it is.

The feed writes a matrix request's names and rows and its answer's columns as they came (no dict
per instance on the write path); ``GET /v1/predictions/{id}``, the answer-book fallback and the
dashboard read one dict per instance, exactly as for a batch of dicts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.answer_book import input_digest
from gateway.audit.feed import AuditFeed
from gateway.audit.store import AuditStore
from irisflow.schemas import (
    BatchPrediction,
    BatchPredictionRequest,
    InstancePrediction,
    MatrixPrediction,
    MatrixPredictionRequest,
)
from irisflow.settings import Settings
from irisflow.topics import Incoming
from tests.conftest import SettingsFactory
from tests.factories import SETOSA, VIRGINICA
from tests.postgres import AuditDatabases

NAMES = list(SETOSA)
CLASSES = ["setosa", "versicolor", "virginica"]
PROBABILITIES = [[0.75, 0.125, 0.125], [0.0625, 0.125, 0.8125]]


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture
def store(audit_db: AuditDatabases) -> Iterator[AuditStore]:
    made = AuditStore(audit_db.new())
    yield made
    made.close()


def _stored(settings: Settings, store: AuditStore, request: bytes, answer: bytes) -> None:
    topics = settings.kafka.topics
    records = [
        Incoming(request, b"m-1", 0, 1, topics.requests),
        Incoming(answer, b"m-1", 0, 2, topics.predictions),
    ]
    outcome = AuditFeed(settings.kafka, store).process(records)
    assert outcome.letters == []
    assert outcome.written == {"requests": 1, "predictions": 1}


def test_a_matrix_batch_reads_back_like_the_same_batch_of_dicts(
    settings: Settings, store: AuditStore, audit_db: AuditDatabases
) -> None:
    rows = [SETOSA, VIRGINICA]
    matrix = MatrixPredictionRequest(
        request_id="m-1",
        sent_at=100.0,
        feature_names=NAMES[::-1],
        rows=[[r[n] for n in NAMES[::-1]] for r in rows],
    )
    answer = MatrixPrediction(
        request_id="m-1",
        model_version=2,
        scored_at=101.0,
        classes=CLASSES,
        labels=["setosa", "virginica"],
        probabilities=PROBABILITIES,
    )
    _stored(settings, store, matrix.to_bytes(), answer.to_bytes())
    dicts = AuditStore(audit_db.new())
    _stored(
        settings,
        dicts,
        BatchPredictionRequest(request_id="m-1", sent_at=100.0, instances=rows).to_bytes(),
        BatchPrediction(
            request_id="m-1",
            model_version=2,
            scored_at=101.0,
            predictions=[
                InstancePrediction(label=label, probabilities=dict(zip(CLASSES, p, strict=True)))
                for label, p in zip(["setosa", "virginica"], PROBABILITIES, strict=True)
            ],
        ).to_bytes(),
    )
    record, expected = store.get("m-1"), dicts.get("m-1")
    assert record is not None
    assert expected is not None
    assert record.model_dump() == expected.model_dump()
    assert (record.kind, record.status, record.n_instances) == ("batch", "answered", 2)
    assert input_digest(record.kind, record.features) == input_digest("batch", rows)
    assert store.recent_inputs(0.0) == [(100.0, rows)]
    dicts.close()
