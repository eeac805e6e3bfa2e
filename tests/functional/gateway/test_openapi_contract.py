"""``/openapi.json`` says exactly what the gateway answers, in-process (no broker).

Each promise here is one schemathesis found broken from its CLI (``tests/e2e/
test_gateway_schemathesis.py`` runs it at full strength): a feature value the schema allowed
was refused, an ``until`` the schema refused was accepted, a status was answered that no
operation documented, and the 422 was documented in a shape the gateway never sends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.feature_domain import accepted_range
from gateway.instants import INSTANT_SCHEMA
from tests.factories import SETOSA, model_update

ClientFactory = Callable[..., TestClient]
_ERROR_BODY = "#/components/schemas/ErrorBody"


def _document(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
    ]


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    return error


def test_every_v1_error_is_documented_as_the_error_body_the_gateway_sends(
    client: TestClient,
) -> None:
    document = _document(client)
    checked = 0
    for method, path, op in _operations(document):
        for status, response in op["responses"].items():
            if path.startswith("/v1/") and int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": _ERROR_BODY}, f"{method} {path} {status}"
                checked += 1
    assert checked >= 30
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_every_operation_with_a_body_documents_400_and_413(client: TestClient) -> None:
    with_body = [
        (method, path, op)
        for method, path, op in _operations(_document(client))
        if "requestBody" in op
    ]
    assert {path for _, path, _ in with_body} >= {"/v1/predict", "/v1/feedback", "/v1/retrain"}
    for method, path, op in with_body:
        assert {"400", "413"} <= set(op["responses"]), f"{method} {path}"


def test_a_body_that_is_not_utf8_is_a_400_naming_the_body(client: TestClient) -> None:
    response = client.post(
        "/v1/feedback",
        content=b'{"request_id": "\xff"}',
        headers={"content-type": "application/json"},
    )
    error = _error(response, 400, "unreadable_body")
    assert [f["field"] for f in error["fields"]] == ["body"]
    assert "UTF-8" in error["message"]


def test_a_body_that_is_not_json_is_a_422_naming_the_body_and_where(client: TestClient) -> None:
    response = client.post(
        "/v1/predict", content=b'{"features":', headers={"content-type": "application/json"}
    )
    error = _error(response, 422, "invalid_request")
    assert [f["field"] for f in error["fields"]] == ["body"]
    assert "not valid JSON at character 12" in error["message"]


def _ranges(document: dict[str, Any], body: str = "PredictBody") -> dict[str, tuple[float, float]]:
    properties = document["components"]["schemas"][body]["properties"]
    vector = properties["features"] if body == "PredictBody" else properties["instances"]["items"]
    return {name: (spec["minimum"], spec["maximum"]) for name, spec in vector["properties"].items()}


def test_each_feature_is_documented_with_the_range_the_gateway_accepts(
    client: TestClient,
) -> None:
    document = _document(client)
    ranges = _ranges(document)
    live = model_update(1).metadata()
    checks = client.app.state.checks  # type: ignore[attr-defined]
    assert set(ranges) == set(live.feature_names)
    for name, (low, high) in ranges.items():
        mean = live.reference_stats[name].mean
        assert (low, high) == accepted_range(checks.feature_schema(), name, mean)
        assert low < mean < high
    assert _ranges(document, "BatchPredictBody") == ranges


@pytest.mark.parametrize("end", ["minimum", "maximum"])
def test_a_documented_end_is_accepted_and_one_double_beyond_it_is_refused(
    client: TestClient, end: str
) -> None:
    """Accepted here means "past validation": with no broker, the next answer is 503."""
    name, (low, high) = next(iter(_ranges(_document(client)).items()))
    edge = low if end == "minimum" else high
    beyond = math.nextafter(edge, -math.inf if end == "minimum" else math.inf)
    inside = client.post("/v1/predict", json={"features": {**SETOSA, name: edge}})
    _error(inside, 503, "kafka_unavailable")
    outside = client.post("/v1/predict", json={"features": {**SETOSA, name: beyond}})
    error = _error(outside, 422, "invalid_request")
    assert [f["field"] for f in error["fields"]] == [f"features.{name}"]


def test_audit_moments_are_documented_and_read_as_the_same_two_spellings(
    client: TestClient,
) -> None:
    (audit,) = [op for _, path, op in _operations(_document(client)) if path == "/v1/audit"]
    moments = {
        p["name"]: p["schema"]["anyOf"]
        for p in audit["parameters"]
        if p["name"] in ("since", "until")
    }
    spellings = INSTANT_SCHEMA["anyOf"]
    assert moments == {"since": spellings, "until": spellings}
    page = client.get("/v1/audit", params={"since": "2026-01-01T00:00:00Z", "until": "0.5"})
    assert page.status_code == 200, page.text
    assert (page.json()["since"], page.json()["until"]) == (1767225600.0, 0.5)
    naive = client.get("/v1/audit", params={"until": "2026-01-01T00:00:00"})
    error = _error(naive, 422, "invalid_request")
    assert [f["field"] for f in error["fields"]] == ["query.until"]
    assert "RFC 3339" in error["message"]


def _link(document: dict[str, Any], path: str, status: str, name: str) -> dict[str, Any]:
    link: dict[str, Any] = document["paths"][path]["post"]["responses"][status]["links"][name]
    return link


def test_links_lead_from_a_prediction_to_its_record_and_feedback_and_from_feedback_back(
    client: TestClient,
) -> None:
    document = _document(client)
    ids = {op["operationId"]: f"{method} {path}" for method, path, op in _operations(document)}
    its_id = "$response.body#/request_id"
    for status in ("200", "202"):
        record = _link(document, "/v1/predict", status, "Record")
        assert ids[record["operationId"]] == "GET /v1/predictions/{request_id}"
        assert record["parameters"] == {"request_id": its_id}
        feedback = _link(document, "/v1/predict", status, "Feedback")
        assert ids[feedback["operationId"]] == "POST /v1/feedback"
        assert feedback["requestBody"] == {"request_id": its_id}
    back = _link(document, "/v1/feedback", "202", "Predict")
    assert ids[back["operationId"]] == "POST /v1/predict"
    assert back["requestBody"] == {"request_id": its_id}


def test_protocol_routes_document_their_own_errors_and_only_the_model_and_version_served(
    client: TestClient,
) -> None:
    """``/v2`` answers a bad parameter 400 in the protocol's shape (never FastAPI's 422), serves
    one model, and only its live version: the document says so, so a schema-valid name or
    version is one that is served."""
    protocol = [(m, p, op) for m, p, op in _operations(_document(client)) if p.startswith("/v2/")]
    assert len(protocol) >= 6
    served = {"model_name": ["iris"], "version": ["1"]}
    for method, path, op in protocol:
        assert "422" not in op["responses"], f"{method} {path}"
        for parameter in op.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["schema"]["enum"] == served[parameter["name"]], path
        if "{model_name}" in path:
            assert "404" in op["responses"], f"{method} {path}"
    assert client.get("/v2/models/iris/ready").status_code == 400  # no broker: not ready
    assert client.get("/v2/models/other/ready").status_code == 404


@pytest.mark.parametrize("datatype", [{}, [], None, 7])
def test_a_tensor_datatype_that_is_not_a_string_is_a_400_naming_it(
    client: TestClient, datatype: object
) -> None:
    tensor = {"name": "input-0", "shape": [1, 4], "datatype": datatype, "data": [1, 2, 3, 4]}
    response = client.post("/v2/models/iris/infer", json={"inputs": [tensor]})
    assert response.status_code == 400, response.text
    assert "datatype" in response.json()["error"]
