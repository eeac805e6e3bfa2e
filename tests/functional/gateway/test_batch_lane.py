"""``/v1/predict/batch`` in-process: a plain body takes the fast lane into one matrix record, and
every body the lane declines gets exactly what the declared pydantic route gives it.

The app's bridge is the shared fake (``tests/unit/gateway/fakes.py``): records go to a list and a
fake worker answers each matrix (``setosa`` when a row's first value is below 6); everything else
is the gateway's own code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any
from unittest.mock import patch

import pytest
from fastapi.testclient import TestClient

from gateway.answer_book import AnswerBook
from gateway.bodies import BatchPredictionPublic
from gateway.predicting import on_late_answer
from gateway.routes import predict
from irisflow.schemas import MatrixPredictionRequest
from irisflow.settings import KafkaSettings
from tests.factories import SETOSA, VIRGINICA
from tests.unit.gateway.fakes import FakeBridge

ClientFactory = Callable[..., TestClient]
NAMES = list(SETOSA)
JSON = {"content-type": "application/json"}
_OTHERS = b', "sepal_width": 1, "petal_length": 1, "petal_width": 1}]}'


@pytest.fixture
def lane(client_for: ClientFactory) -> Iterator[tuple[TestClient, FakeBridge]]:
    """A client of an app whose bridge is the fake (Kafka reachable, a model live)."""
    client = client_for(kafka=True, **{"gateway.max_batch_instances": 5})
    state: Any = client.app.state  # type: ignore[attr-defined]
    answers = AnswerBook(100)
    fake = FakeBridge(KafkaSettings(), on_late=on_late_answer(answers))
    state.scoring = dataclasses.replace(state.scoring, bridge=fake, answers=answers)
    state.bridge = fake
    with client:  # no lifespan here: the app's own connects to Kafka
        yield client, fake


@pytest.fixture
def with_client(client_for: ClientFactory) -> TestClient:
    return client_for(kafka=True, **{"gateway.max_batch_instances": 5})


def _matrices(fake: FakeBridge) -> list[MatrixPredictionRequest]:
    published = [r for r in fake.published if isinstance(r, MatrixPredictionRequest)]
    assert len(published) == len(fake.published)
    return published


def test_a_plain_batch_is_one_matrix_record_answered_in_request_order(
    lane: tuple[TestClient, FakeBridge],
) -> None:
    client, fake = lane
    shuffled = dict(reversed(list(VIRGINICA.items())))  # key order does not matter
    with patch.object(predict, "instances_matrix", wraps=predict.instances_matrix) as declared:
        response = client.post("/v1/predict/batch", json={"instances": [SETOSA, shuffled]})
    assert response.status_code == 200, response.text
    declared.assert_not_called()  # the fast lane answered: no pydantic body was built
    answer = BatchPredictionPublic.model_validate(response.json())
    assert list(response.json()) == list(BatchPredictionPublic.model_fields)
    assert [p.label for p in answer.predictions] == ["setosa", "virginica"]
    assert answer.predictions[0].probabilities == {
        "setosa": 0.9,
        "versicolor": 0.05,
        "virginica": 0.05,
    }
    (record,) = _matrices(fake)
    assert record.feature_names == NAMES
    assert record.rows == [list(SETOSA.values()), list(VIRGINICA.values())]
    assert record.request_id == answer.request_id


def test_a_body_pydantic_coerces_takes_the_declared_route_and_travels_as_a_matrix(
    lane: tuple[TestClient, FakeBridge],
) -> None:
    client, fake = lane
    coerced = {**SETOSA, "sepal_length": "5.1", "petal_width": 1}
    with patch.object(predict, "instances_matrix", wraps=predict.instances_matrix) as declared:
        response = client.post("/v1/predict/batch", json={"instances": [coerced]})
    assert response.status_code == 200, response.text
    declared.assert_called_once()
    (record,) = _matrices(fake)
    assert record.rows == [[5.1, 3.5, 1.4, 1.0]]


def test_a_repeated_request_id_is_answered_once_and_other_rows_under_it_conflict(
    lane: tuple[TestClient, FakeBridge],
) -> None:
    client, fake = lane
    body = {"instances": [SETOSA, VIRGINICA], "request_id": "batch-7"}
    first = client.post("/v1/predict/batch", json=body)
    again = client.post("/v1/predict/batch", json=body)
    assert first.status_code == again.status_code == 200
    assert again.json()["predictions"] == first.json()["predictions"]
    assert len(fake.published) == 1
    other = client.post("/v1/predict/batch", json={**body, "instances": [VIRGINICA, SETOSA]})
    assert (other.status_code, other.json()["error"]["code"]) == (409, "request_id_conflict")


def test_a_plain_batch_without_waiting_is_accepted_once_on_the_broker(
    lane: tuple[TestClient, FakeBridge],
) -> None:
    client, fake = lane
    body = {"instances": [SETOSA], "request_id": "later-1"}
    response = client.post("/v1/predict/batch?wait=false", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["result_url"] == "/v1/predictions/later-1"
    assert [r.request_id for r in _matrices(fake)] == ["later-1"]


def test_a_batch_answered_no_model_by_the_worker_is_a_503_not_a_timeout(
    lane: tuple[TestClient, FakeBridge],
) -> None:
    client, fake = lane
    fake.no_model = True  # the worker's error answer has no result, so no batch shape
    response = client.post("/v1/predict/batch", json={"instances": [SETOSA]})
    assert (response.status_code, response.json()["error"]["code"]) == (503, "no_model")


def test_an_unknown_query_parameter_is_ignored_as_the_declared_route_ignores_it(
    lane: tuple[TestClient, FakeBridge],
) -> None:
    client, _ = lane
    response = client.post("/v1/predict/batch?nowait=false", json={"instances": [SETOSA]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "setosa"


def test_a_plain_batch_with_kafka_unreachable_is_a_503(client_for: ClientFactory) -> None:
    client = client_for(kafka=False)
    response = client.post("/v1/predict/batch", json={"instances": [SETOSA]})
    assert (response.status_code, response.json()["error"]["code"]) == (503, "kafka_unavailable")


_FAR = {**SETOSA, "petal_width": 1e30}
DECLINED: list[tuple[str, bytes | dict[str, Any], dict[str, str], str]] = [
    ("not JSON", b"{not json", JSON, ""),
    ("JSON but not UTF-8", b'{"instances": ["\xff"]}', JSON, ""),
    ("an empty batch", {"instances": []}, JSON, ""),
    ("no instances", {"instance": [SETOSA]}, JSON, ""),
    ("another key", {"instances": [SETOSA], "priority": 1}, JSON, ""),
    ("an unknown feature", {"instances": [SETOSA, {**SETOSA, "colour": 1.0}]}, JSON, ""),
    (
        "a missing feature",
        {"instances": [{k: v for k, v in SETOSA.items() if k != "sepal_width"}]},
        JSON,
        "",
    ),
    ("a word", {"instances": [{**SETOSA, "petal_width": "wide"}]}, JSON, ""),
    ("a boolean", {"instances": [{**SETOSA, "petal_width": True}]}, JSON, ""),
    ("a null", {"instances": [{**SETOSA, "petal_width": None}]}, JSON, ""),
    ("a list", {"instances": [{**SETOSA, "petal_width": [1.0]}]}, JSON, ""),
    ("an instance that is a list", {"instances": [[5.1, 3.5, 1.4, 0.2]]}, JSON, ""),
    ("instances that are an object", {"instances": SETOSA}, JSON, ""),
    ("a body that is a list", [SETOSA], JSON, ""),
    ("beyond float32", {"instances": [SETOSA, {**SETOSA, "sepal_width": 1e39}]}, JSON, ""),
    ("far from the training data", {"instances": [_FAR] * 30}, JSON, ""),
    (
        "a NaN literal",
        b'{"instances": [{"sepal_length": NaN' + _OTHERS,
        JSON,
        "",
    ),
    (
        "1e309",
        b'{"instances": [{"sepal_length": 1e309' + _OTHERS,
        JSON,
        "",
    ),
    (
        "a huge integer",
        b'{"instances": [{"sepal_length": 1'
        + b"0" * 400
        + b', "sepal_width": 1, "petal_length": 1, "petal_width": 1}]}',
        JSON,
        "",
    ),
    ("a bad request id", {"instances": [SETOSA], "request_id": "../etc"}, JSON, ""),
    ("a request id with a newline", {"instances": [SETOSA], "request_id": "abc\n"}, JSON, ""),
    ("a request id that is a number", {"instances": [SETOSA], "request_id": 7}, JSON, ""),
    ("over the instance limit", {"instances": [SETOSA] * 6}, JSON, ""),
    ("text/plain", {"instances": [SETOSA]}, {"content-type": "text/plain"}, ""),
    ("no content type", b'{"instances": []}', {}, ""),
    ("a bad wait", {"instances": [SETOSA]}, JSON, "?wait=maybe"),
]


@pytest.mark.parametrize(
    ("body", "headers", "query"),
    [case[1:] for case in DECLINED],
    ids=[case[0] for case in DECLINED],
)
def test_every_body_the_lane_declines_is_answered_exactly_as_the_declared_route_answers_it(
    with_client: TestClient, body: bytes | dict[str, Any], headers: dict[str, str], query: str
) -> None:
    def post() -> Any:
        raw = body if isinstance(body, bytes) else None
        data = None if isinstance(body, bytes) else body
        return with_client.post(
            f"/v1/predict/batch{query}", content=raw, json=data, headers=headers
        )

    parsed: list[object] = []
    lane = predict.parse_instances

    def parse(*args: Any, **kwargs: Any) -> Any:
        parsed.append(result := lane(*args, **kwargs))
        return result

    with patch.object(predict, "parse_instances", parse):
        served = post()
    with patch.object(predict, "parse_instances", return_value=None):
        declared = post()
    assert parsed in ([], [None]), "the lane took a body it must leave to the declared route"
    assert served.status_code != 200
    assert (served.status_code, served.json()) == (declared.status_code, declared.json())
