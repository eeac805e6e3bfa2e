"""The Python clients against the real stack (a worker and a gateway on the broker): the README's
two examples, end to end.

* ``/v1`` synchronously: a prediction under the caller's id, its feedback reaching the audit
  record, and the whole iris data set through ``predict_all`` in calls of the gateway's batch
  limit, agreeing with the same rows sent one by one;
* the Open Inference Protocol asynchronously: readiness and metadata, then the data set through
  ``infer_all`` with several calls in flight, agreeing row by row with ``/v1``.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from producers.client import (
    AsyncInferenceClient,
    GatewayError,
    IrisflowClient,
    PredictionRecord,
    RowResult,
)
from tests.e2e.conftest import GATEWAY_SETTINGS, Stack, eventually, live_version
from tests.factories import IRIS_FEATURES, SETOSA, iris_xy

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

LIMIT = GATEWAY_SETTINGS["gateway.max_batch_instances"]


def _with_feedback(client: IrisflowClient, request_id: str) -> PredictionRecord | None:
    """The audit record once it holds the feedback (the audit is written from the topics, so
    it may not know the id yet: a 404 until then)."""
    try:
        record = client.prediction(request_id)
    except GatewayError as exc:
        if exc.status == 404:
            return None
        raise
    return record if record.feedback is not None else None


def _v1_rows(stack: Stack, rows: np.ndarray) -> list[RowResult]:
    with IrisflowClient(stack.gateway_url) as client:
        return client.predict_all(rows, batch_size=LIMIT)


def test_the_sync_client_predicts_sends_feedback_and_scores_a_data_set_in_batches(
    gateway_stack: Stack,
) -> None:
    version = live_version(gateway_stack)
    rows, _ = iris_xy()
    request_id = f"py-client-{uuid.uuid4().hex[:8]}"
    with IrisflowClient(gateway_stack.gateway_url) as client:
        single = client.predict(SETOSA, request_id=request_id)
        assert (single.request_id, single.label, single.model_version) == (
            request_id,
            "setosa",
            version,
        )
        client.feedback(request_id, "setosa")
        record = eventually(lambda: _with_feedback(client, request_id), timeout=30)
        assert record is not None, "the feedback never reached the audit record"
        assert (record.status, record.label, record.feedback.label) == (
            "answered",
            "setosa",
            "setosa",
        )
        every = client.predict_all(rows, batch_size=LIMIT)
        assert client.feature_names == IRIS_FEATURES
        one_by_one = [
            client.predict(dict(zip(IRIS_FEATURES, row, strict=True))) for row in rows[:7]
        ]
    assert len(every) == len(rows)
    assert {row.model_version for row in every} == {version}
    assert len({row.request_id for row in every}) == -(-len(rows) // LIMIT)
    for batched, single_row in zip(every, one_by_one, strict=False):
        assert batched.label == single_row.label
        assert batched.probabilities == pytest.approx(single_row.probabilities, abs=1e-12)


async def test_the_async_inference_client_agrees_with_v1_row_by_row(gateway_stack: Stack) -> None:
    version = live_version(gateway_stack)
    rows, _ = iris_xy()
    async with AsyncInferenceClient(gateway_stack.gateway_url, model="iris") as client:
        assert await client.ready() is True
        assert await client.model_ready(version=str(version)) is True
        metadata = await client.metadata()
        assert (metadata.versions, metadata.feature_names) == ([str(version)], IRIS_FEATURES)
        result = await client.infer_all(rows, batch_size=LIMIT, concurrency=4)
    v1 = _v1_rows(gateway_stack, rows)
    assert result.model_version == str(version)
    assert result.labels == [row.label for row in v1]
    expected = np.array([[row.probabilities[c] for c in result.classes] for row in v1])
    np.testing.assert_allclose(result.probabilities, expected, rtol=0, atol=1e-12)
    assert set(result.labels) == set(result.classes) == set(metadata.class_labels)
