"""The Python clients against the gateway's own app, in-process (no broker, no sockets).

The app is ``create_app`` as ``irisflow gateway`` builds it, with a live model and the shared
fake bridge as its worker (a row is ``setosa`` when its first value is below 6, else
``virginica``); the sync clients talk to it through FastAPI's test client, the async ones
through ``httpx.ASGITransport``. What is checked is the client's side of the contract: calls as
the routes expect them, answers read into typed results in row order, batches cut as asked,
refusals raised with the gateway's fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.answer_book import AnswerBook
from gateway.app import create_app
from gateway.predicting import on_late_answer
from irisflow.schemas import MatrixPredictionRequest
from irisflow.settings import KafkaSettings
from producers.client import (
    AsyncInferenceClient,
    AsyncIrisflowClient,
    GatewayError,
    InferenceClient,
    IrisflowClient,
)
from tests.conftest import SettingsFactory
from tests.factories import IRIS_FEATURES, SETOSA, VIRGINICA, model_update
from tests.unit.gateway.fakes import PROBS, FakeBridge

ROWS = np.array([list(SETOSA.values()), list(VIRGINICA.values())] * 4)  # 8 rows
EXPECTED = ["setosa", "virginica"] * 4
LIMIT = 3
"""``gateway.max_batch_instances`` of the app under test."""


@pytest.fixture
def app(make_settings: SettingsFactory) -> FastAPI:
    # Kafka is marked up; the lifespan's connection attempts go to a port nothing listens on.
    app = create_app(
        make_settings(**{"gateway.max_batch_instances": LIMIT, "kafka.bootstrap": "127.0.0.1:9"})
    )
    app.state.history.make_live(model_update(1))
    app.state.kafka.ready = True
    answers = AnswerBook(100)
    fake = FakeBridge(KafkaSettings(), on_late=on_late_answer(answers))
    app.state.scoring = dataclasses.replace(app.state.scoring, bridge=fake, answers=answers)
    return app


def _published(app: FastAPI) -> list[Any]:
    fake: FakeBridge = app.state.scoring.bridge
    return fake.published


@pytest.fixture
def sync_http(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as http:  # one event loop for the app and the fake worker
        yield http


def test_predict_and_submit_are_typed_and_a_refusal_names_the_field(
    sync_http: TestClient,
) -> None:
    client = IrisflowClient(http=sync_http)
    result = client.predict(SETOSA, request_id="client-1")
    assert (result.request_id, result.label, result.model_version) == ("client-1", "setosa", 1)
    assert result.probabilities == PROBS
    accepted = client.submit(VIRGINICA, request_id="client-2")
    assert (accepted.status, accepted.result_url) == ("accepted", "/v1/predictions/client-2")
    with pytest.raises(GatewayError) as raised:
        client.predict({**SETOSA, "petal_width": 1e300})
    assert raised.value.status == 422
    assert [f.field for f in raised.value.fields] == ["features.petal_width"]


def test_rows_without_names_take_the_live_models_feature_order(
    app: FastAPI, sync_http: TestClient
) -> None:
    client = IrisflowClient(http=sync_http)
    batch = client.predict_batch(ROWS[:2])
    assert [row.label for row in batch.predictions] == EXPECTED[:2]
    assert client.feature_names == IRIS_FEATURES
    (record,) = _published(app)
    assert isinstance(record, MatrixPredictionRequest)
    assert record.feature_names == IRIS_FEATURES


def test_predict_all_cuts_rows_into_calls_keeps_their_order_and_ids_make_reruns_free(
    app: FastAPI, sync_http: TestClient
) -> None:
    client = IrisflowClient(http=sync_http, feature_names=IRIS_FEATURES)
    rows = client.predict_all(ROWS, batch_size=LIMIT, id_prefix="job-7")
    assert [row.label for row in rows] == EXPECTED
    assert [row.request_id for row in rows] == ["job-7-0"] * 3 + ["job-7-1"] * 3 + ["job-7-2"] * 2
    assert {row.model_version for row in rows} == {1}
    assert len(_published(app)) == 3
    again = client.predict_all(ROWS, batch_size=LIMIT, id_prefix="job-7")
    assert again == rows
    assert len(_published(app)) == 3  # answered from the gateway's memory


def test_a_batch_over_the_gateways_limit_is_refused_with_the_limit(sync_http: TestClient) -> None:
    client = IrisflowClient(http=sync_http, feature_names=IRIS_FEATURES)
    with pytest.raises(GatewayError) as raised:
        client.predict_batch(ROWS[: LIMIT + 1])
    assert (raised.value.status, raised.value.limit) == (413, LIMIT)


def test_a_request_the_audit_does_not_know_is_a_404_not_found(sync_http: TestClient) -> None:
    with pytest.raises(GatewayError) as raised:
        IrisflowClient(http=sync_http).prediction("never-sent")
    assert (raised.value.status, raised.value.code) == (404, "not_found")


def test_the_catalog_names_the_live_version(sync_http: TestClient) -> None:
    catalog = IrisflowClient(http=sync_http).models()
    live = catalog.live()
    assert live is not None
    assert (catalog.live_version, live.feature_names) == (1, IRIS_FEATURES)


def test_the_inference_client_reads_metadata_and_infers_arrays_and_named_rows(
    app: FastAPI, sync_http: TestClient
) -> None:
    client = InferenceClient(model="iris", http=sync_http)
    assert client.ready() is True
    assert client.model_ready() is True
    assert client.model_ready(version="9") is False
    metadata = client.metadata()
    assert (metadata.name, metadata.versions, metadata.feature_names) == (
        "iris",
        ["1"],
        IRIS_FEATURES,
    )
    result = client.infer(ROWS[:2], request_id="oip-1")
    assert (result.id, result.model_version, result.labels) == ("oip-1", "1", EXPECTED[:2])
    assert result.classes == list(PROBS)
    np.testing.assert_array_equal(result.probabilities[0], list(PROBS.values()))
    named = client.infer([VIRGINICA, SETOSA])
    assert named.labels == ["virginica", "setosa"]
    assert len(_published(app)) == 2


def test_infer_all_joins_the_calls_in_row_order(app: FastAPI, sync_http: TestClient) -> None:
    result = InferenceClient(model="iris", http=sync_http).infer_all(ROWS, batch_size=LIMIT)
    assert result.labels == EXPECTED
    assert result.probabilities.shape == (8, 3)
    assert (result.model_version, result.id) == ("1", None)
    assert len(_published(app)) == 3


def test_the_inference_client_raises_the_protocols_message(sync_http: TestClient) -> None:
    with pytest.raises(GatewayError, match=r"^HTTP 404: no model 'nope'"):
        InferenceClient(model="nope", http=sync_http).metadata()
    with pytest.raises(GatewayError, match=r"^HTTP 400: input 'input-0': shape \[2, 3\]"):
        InferenceClient(model="iris", http=sync_http).infer(np.ones((2, 3)))


def _asgi(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def test_the_async_clients_give_what_the_sync_ones_give(app: FastAPI) -> None:
    async with _asgi(app) as http:
        rest = AsyncIrisflowClient(http=http)
        single = await rest.predict(SETOSA)
        assert single.label == "setosa"
        rows = await rest.predict_all(ROWS, batch_size=LIMIT, concurrency=2)
        assert [row.label for row in rows] == EXPECTED
        oip = AsyncInferenceClient(model="iris", http=http)
        assert await oip.ready() is True
        inferred = await oip.infer_all(ROWS.tolist(), batch_size=2, concurrency=3)
        assert inferred.labels == EXPECTED
        named = await oip.infer([dict(zip(IRIS_FEATURES, row, strict=True)) for row in ROWS[:2]])
        assert named.labels == EXPECTED[:2]
    assert len(_published(app)) == 1 + 3 + 4 + 1
