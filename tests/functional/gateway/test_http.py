"""The gateway's HTTP contract in-process, with no broker: validation, errors, keys, static files.

The app's lifespan (which connects to Kafka) is not entered, so the gateway behaves as one
whose broker is unreachable: everything that needs Kafka answers 503, everything else works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.model_versions import ModelHistory
from irisflow.registry import LocalRegistry
from tests.conftest import SettingsFactory
from tests.factories import SETOSA, model_update

ClientFactory = Callable[..., TestClient]


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["status"] == status
    assert error["code"] == code
    assert error["message"]
    return error


def _fields(error: dict[str, Any]) -> list[str]:
    return [f["field"] for f in error["fields"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"features": {**SETOSA, "petal_width": "wide"}}, "features.petal_width"),
        ({"features": {**SETOSA, "petal_width": None}}, "features.petal_width"),
        (
            {"features": {k: v for k, v in SETOSA.items() if k != "sepal_width"}},
            "features.sepal_width",
        ),
        ({"features": {**SETOSA, "colour": 1.0}}, "features.colour"),
        ({"features": SETOSA, "priority": "high"}, "priority"),
        ({"feature": SETOSA}, "features"),
        ({"features": SETOSA, "request_id": ""}, "request_id"),
        ({"features": [1, 2, 3, 4]}, "features"),
    ],
)
def test_a_bad_predict_body_is_a_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    error = _error(client.post("/v1/predict", json=body), 422, "invalid_request")
    assert field in _fields(error)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_feature_is_a_422_naming_it(client: TestClient, literal: str) -> None:
    others = '"sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2'
    raw = '{"features": {"sepal_length": ' + literal + ", " + others + "}}"
    response = client.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
    assert "features.sepal_length" in _fields(_error(response, 422, "invalid_request"))


def test_a_body_that_is_not_json_is_a_422(client: TestClient) -> None:
    response = client.post(
        "/v1/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    _error(response, 422, "invalid_request")


def test_with_kafka_unreachable_predict_is_a_503_and_not_ready(client: TestClient) -> None:
    error = _error(client.post("/v1/predict", json={"features": SETOSA}), 503, "kafka_unavailable")
    assert "unreachable" in error["message"]
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert ready.json()["kafka"] is False
    assert client.get("/health/live").status_code == 200


def test_a_batch_over_the_limit_is_a_413_with_the_limit(client_for: ClientFactory) -> None:
    client = client_for(**{"gateway.max_batch_instances": 3})
    response = client.post("/v1/predict/batch", json={"instances": [SETOSA] * 4})
    error = _error(response, 413, "too_many_instances")
    assert error["limit"] == 3
    assert "3" in error["message"]
    assert _fields(error) == ["instances"]


def test_a_batch_names_the_instance_whose_feature_is_wrong(client: TestClient) -> None:
    bad = {**SETOSA, "colour": 2.0}
    response = client.post("/v1/predict/batch", json={"instances": [SETOSA, bad]})
    assert _fields(_error(response, 422, "invalid_request")) == ["instances.1.colour"]


def test_an_empty_batch_is_a_422(client: TestClient) -> None:
    _error(client.post("/v1/predict/batch", json={"instances": []}), 422, "invalid_request")


def test_feedback_with_a_label_the_model_does_not_know_is_a_422(client: TestClient) -> None:
    response = client.post("/v1/feedback", json={"request_id": "r1", "label": "rose"})
    error = _error(response, 422, "invalid_request")
    assert _fields(error) == ["label"]
    assert "setosa" in error["fields"][0]["message"]


def test_feedback_before_any_model_is_live_is_a_503(client_for: ClientFactory) -> None:
    client = client_for(live=False)
    response = client.post("/v1/feedback", json={"request_id": "r1", "label": "setosa"})
    _error(response, 503, "no_model")


@pytest.mark.parametrize(
    ("method", "path"), [("post", "/v1/retrain"), ("post", "/v1/models/1/promote")]
)
def test_admin_endpoints_refuse_everyone_when_no_key_is_configured(
    client: TestClient, method: str, path: str
) -> None:
    for headers in ({}, {"X-API-Key": "anything"}):
        response = client.request(method, path, headers=headers)
        assert "IRISFLOW_API_KEY" in _error(response, 403, "admin_disabled")["message"]


@pytest.mark.parametrize(
    ("method", "path"), [("post", "/v1/retrain"), ("post", "/v1/models/1/promote")]
)
def test_admin_endpoints_need_the_right_key(
    client_for: ClientFactory, method: str, path: str
) -> None:
    client = client_for(**{"gateway.api_key": "s3cret"})
    _error(client.request(method, path), 401, "unauthorized")
    _error(client.request(method, path, headers={"X-API-Key": "s3cre"}), 403, "forbidden")
    # the right key passes the check and reaches Kafka, which is down here
    right = client.request(method, path, headers={"X-API-Key": "s3cret"})
    _error(right, 503, "kafka_unavailable")


def test_models_lists_the_registry_and_kafka_versions_with_the_live_one(
    client_for: ClientFactory, make_settings: SettingsFactory
) -> None:
    client = client_for(live=False)
    history: ModelHistory = client.app.state.history  # type: ignore[attr-defined]
    LocalRegistry(history.registry.root).save(model_update(1))
    history.make_live(model_update(2, kind="naive_bayes"))
    body = client.get("/v1/models").json()
    assert body["live_version"] == 2
    assert [(v["version"], v["live"], v["sources"]) for v in body["versions"]] == [
        (1, False, ["registry"]),
        (2, True, ["kafka"]),
    ]
    detail = client.get("/v1/models/2").json()
    assert detail["algorithm"] == "naive_bayes"
    assert set(detail["reference_stats"]) == set(SETOSA)
    _error(client.get("/v1/models/7"), 404, "not_found")


def test_an_unknown_prediction_is_a_404(client: TestClient) -> None:
    _error(client.get("/v1/predictions/never-sent"), 404, "not_found")


def test_unknown_routes_and_methods_keep_the_error_shape(client: TestClient) -> None:
    _error(client.get("/v1/nothing"), 404, "not_found")
    _error(client.get("/v1/predict"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    "query", ["since=yesterday", "limit=0", "limit=100000", "order=sideways", "window=1"]
)
def test_bad_query_parameters_are_422(client: TestClient, query: str) -> None:
    path = "/v1/stats" if query.startswith("window") else "/v1/audit"
    _error(client.get(f"{path}?{query}"), 422, "invalid_request")


def test_the_dashboard_and_its_chart_library_come_from_the_gateway(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "/static/vendor/chart.umd.min.js" in page.text
    assert "http://" not in page.text
    assert "https://" not in page.text
    chart = client.get("/static/vendor/chart.umd.min.js")
    assert chart.status_code == 200
    assert "Chart.js v4" in chart.text[:200]
    assert client.get("/static/dashboard.js").status_code == 200


def test_the_api_docs_load_their_assets_from_the_gateway(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "cdn." not in docs.text
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/predict",
        "/v1/predict/batch",
        "/v1/feedback",
        "/v1/predictions/{request_id}",
        "/v1/audit",
        "/v1/models",
        "/v1/models/{version}",
        "/v1/models/{version}/promote",
        "/v1/retrain",
        "/v1/stats",
        "/health/ready",
    ):
        assert path in paths
