"""The Open Inference Protocol routes in-process: health, metadata, infer, and errors in the
protocol's shape. The bridge is the shared fake (a matrix row is ``setosa`` when its first
value is below 6, else ``virginica``); everything else is the gateway's own code."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.answer_book import AnswerBook
from gateway.predicting import on_late_answer
from irisflow.otel import Spans
from irisflow.schemas import MatrixPredictionRequest
from irisflow.settings import KafkaSettings
from tests.factories import SETOSA, VIRGINICA, model_update
from tests.unit.gateway.fakes import FakeBridge

ClientFactory = Callable[..., TestClient]
ROWS = [list(SETOSA.values()), list(VIRGINICA.values())]
TENSOR = {"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": ROWS}


@pytest.fixture
def oip(client_for: ClientFactory) -> Iterator[tuple[TestClient, FakeBridge]]:
    client = client_for(kafka=True, **{"gateway.max_batch_instances": 3})
    state: Any = client.app.state  # type: ignore[attr-defined]
    answers = AnswerBook(100)
    fake = FakeBridge(KafkaSettings(), on_late=on_late_answer(answers))
    state.scoring = dataclasses.replace(state.scoring, bridge=fake, answers=answers)
    with client:
        yield client, fake


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    message: str = body["error"]
    assert message
    return message


def test_infer_scores_a_tensor_as_one_matrix_record_and_answers_tensors(
    oip: tuple[TestClient, FakeBridge],
) -> None:
    client, fake = oip
    response = client.post(
        "/v2/models/iris/infer", json={"id": "call-1", "inputs": [TENSOR], "parameters": {"a": 1}}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("iris", "1", "call-1")
    assert body["parameters"] == {"a": 1}
    label, probabilities = body["outputs"]
    assert (label["name"], label["datatype"], label["shape"]) == ("label", "BYTES", [2])
    assert label["data"] == ["setosa", "virginica"]
    assert (probabilities["datatype"], probabilities["shape"]) == ("FP64", [2, 3])
    assert probabilities["data"][:3] == [0.9, 0.05, 0.05]
    (record,) = fake.published
    assert isinstance(record, MatrixPredictionRequest)
    assert record.request_id == "call-1"
    assert record.feature_names == list(SETOSA)


def test_an_infer_calls_server_span_is_named_after_its_route(
    oip: tuple[TestClient, FakeBridge],
) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    client, _ = oip
    state: Any = client.app.state  # type: ignore[attr-defined]
    exporter = InMemorySpanExporter()
    spans = Spans.with_processor(SimpleSpanProcessor(exporter), service="gateway")
    state.scoring = dataclasses.replace(state.scoring, spans=spans)
    assert client.post("/v2/models/iris/versions/1/infer", json={"inputs": [TENSOR]}).is_success
    servers = [s.name for s in exporter.get_finished_spans() if s.kind.name == "SERVER"]
    assert servers == ["POST /v2/models/{model_name}/versions/{version}/infer"]


def test_the_same_id_is_answered_once_and_other_rows_under_it_are_a_409(
    oip: tuple[TestClient, FakeBridge],
) -> None:
    client, fake = oip
    first = client.post("/v2/models/iris/infer", json={"id": "same", "inputs": [TENSOR]})
    again = client.post("/v2/models/iris/versions/1/infer", json={"id": "same", "inputs": [TENSOR]})
    assert again.json()["outputs"] == first.json()["outputs"]
    assert len(fake.published) == 1
    other = {**TENSOR, "data": ROWS[::-1]}
    conflict = client.post("/v2/models/iris/infer", json={"id": "same", "inputs": [other]})
    assert "same" in _error(conflict, 409)


def test_the_same_rows_through_v1_and_the_protocol_are_one_input(
    oip: tuple[TestClient, FakeBridge],
) -> None:
    client, fake = oip
    fp64 = {**TENSOR, "datatype": "FP64"}
    client.post("/v2/models/iris/infer", json={"id": "shared", "inputs": [fp64]})
    v1 = client.post(
        "/v1/predict/batch", json={"request_id": "shared", "instances": [SETOSA, VIRGINICA]}
    )
    assert v1.status_code == 200, v1.text
    assert [p["label"] for p in v1.json()["predictions"]] == ["setosa", "virginica"]
    assert len(fake.published) == 1


def test_only_the_live_version_is_served_and_the_refusal_names_it(
    oip: tuple[TestClient, FakeBridge],
) -> None:
    client, _ = oip
    state: Any = client.app.state  # type: ignore[attr-defined]
    state.history.make_live(model_update(2))
    assert client.get("/v2/models/iris/versions/2").json()["versions"] == ["2"]
    assert client.get("/v2/models/iris/versions/2/ready").status_code == 200
    assert client.get("/v2/models/iris/versions/1/ready").status_code == 400
    old = client.post("/v2/models/iris/versions/1/infer", json={"inputs": [TENSOR]})
    assert "version 2 is" in _error(old, 400)
    assert "version 2 is" in _error(client.get("/v2/models/iris/versions/1"), 400)
    assert "no version '9'" in _error(client.get("/v2/models/iris/versions/9"), 404)
    assert "no version 'x'" in _error(
        client.post("/v2/models/iris/versions/x/infer", json={"inputs": [TENSOR]}), 404
    )


def test_a_worker_refusing_the_rows_is_a_400_with_its_reason(
    oip: tuple[TestClient, FakeBridge],
) -> None:
    client, fake = oip
    fake.refusal = "out_of_domain"  # e.g. the live model changed since the gateway checked
    refused = client.post("/v2/models/iris/infer", json={"inputs": [TENSOR]})
    assert "the worker refused it (out_of_domain)" in _error(refused, 400)


def test_one_input_named_after_a_feature_is_that_feature_not_the_matrix(
    oip: tuple[TestClient, FakeBridge],
) -> None:
    client, _ = oip
    named = {**TENSOR, "name": "sepal_length"}
    missing = client.post("/v2/models/iris/infer", json={"inputs": [named]})
    assert "'sepal_width': missing" in _error(missing, 400)


def test_an_unknown_model_is_a_404_naming_the_served_one(
    oip: tuple[TestClient, FakeBridge],
) -> None:
    client, _ = oip
    assert "'iris'" in _error(client.get("/v2/models/rose"), 404)
    assert "'iris'" in _error(client.post("/v2/models/rose/infer", json={"inputs": [TENSOR]}), 404)
    assert client.get("/v2/models/rose/ready").status_code == 404


def test_metadata_lists_the_inputs_outputs_features_and_class_order(
    oip: tuple[TestClient, FakeBridge],
) -> None:
    client, _ = oip
    assert client.get("/v2").json() == {"name": "irisflow", "version": "0.1.0", "extensions": []}
    meta = client.get("/v2/models/iris").json()
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert meta["parameters"]["class_labels"] == '["setosa","versicolor","virginica"]'
    assert meta["parameters"]["feature_names"].startswith('["sepal_length"')


def test_health_is_a_bodiless_200_or_400(client_for: ClientFactory) -> None:
    up = client_for(kafka=True)
    assert (up.get("/v2/health/live").status_code, up.get("/v2/health/live").content) == (200, b"")
    assert up.get("/v2/health/ready").status_code == 200
    assert up.get("/v2/models/iris/ready").status_code == 200
    down = client_for(kafka=False)
    assert (down.get("/v2/health/ready").status_code, down.get("/v2/health/ready").content) == (
        400,
        b"",
    )
    assert down.get("/v2/models/iris/ready").status_code == 400
    none = client_for(live=False, kafka=True)
    assert none.get("/v2/health/ready").status_code == 400
    assert "no version" in _error(none.get("/v2/models/iris"), 503)


def test_errors_have_the_protocols_shape_and_status(client_for: ClientFactory) -> None:
    client = client_for(
        kafka=True, **{"gateway.max_batch_instances": 1, "gateway.max_body_bytes": 4096}
    )
    assert "not a JSON object" in _error(
        client.post("/v2/models/iris/infer", content=b"{", headers={"content-type": "x"}), 400
    )
    assert "input 'input-0'" in _error(
        client.post("/v2/models/iris/infer", json={"inputs": [{**TENSOR, "shape": [4, 2]}]}), 400
    )
    assert "limit is 1" in _error(
        client.post("/v2/models/iris/infer", json={"inputs": [TENSOR]}), 413
    )
    huge = {"inputs": [{**TENSOR, "data": [1.0] * 2000}]}
    assert "max_body_bytes" in _error(client.post("/v2/models/iris/infer", json=huge), 413)
    single = {"inputs": [{**TENSOR, "shape": [1, 4], "data": ROWS[0]}]}
    down = client_for(kafka=False)
    assert "unreachable" in _error(down.post("/v2/models/iris/infer", json=single), 503)
