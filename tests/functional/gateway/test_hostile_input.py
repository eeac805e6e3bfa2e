"""What the gateway does with hostile HTTP input, in-process and with no broker (issue #10).

Every case here is refused before anything reaches Kafka, with a bounded answer: request ids
outside their charset (finding 9), bodies over ``gateway.max_body_bytes`` (finding 6), feature
names and values the live model cannot take, and error lists that would echo a huge input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from fastapi.testclient import TestClient

from gateway.audit.store import AuditBatch, AuditStore
from gateway.audit.tables import records
from tests.factories import SETOSA

ClientFactory = Callable[..., TestClient]
JSON = {"content-type": "application/json"}


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:2000]
    error: dict[str, Any] = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    return error


def _fields(error: dict[str, Any]) -> list[str]:
    return [f["field"] for f in error["fields"]]


HOSTILE_IDS = ["a/b", "x" * 129, "", "tab\there", "bidi\u202eevil", "sp ace", "é", "a;b"]


@pytest.mark.parametrize("request_id", HOSTILE_IDS)
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/predict", {"features": SETOSA}),
        ("/v1/predict/batch", {"instances": [SETOSA]}),
        ("/v1/feedback", {"label": "setosa"}),
    ],
)
def test_a_request_id_outside_its_charset_is_a_422_naming_it(
    client: TestClient, request_id: str, path: str, body: dict[str, Any]
) -> None:
    response = client.post(path, json={**body, "request_id": request_id})
    assert _fields(_error(response, 422, "invalid_request")) == ["request_id"]


@pytest.mark.parametrize("request_id", [i for i in HOSTILE_IDS if i and "/" not in i])
def test_a_request_id_outside_its_charset_in_a_path_is_a_422(
    client: TestClient, request_id: str
) -> None:
    response = client.get(f"/v1/predictions/{quote(request_id, safe='')}")
    assert _fields(_error(response, 422, "invalid_request")) == ["request_id"]


def test_a_request_id_inside_its_charset_passes_the_check(client: TestClient) -> None:
    # reaches the audit (which does not know it), not the validator
    _error(client.get("/v1/predictions/Client-42.retry_1:a"), 404, "not_found")


def test_a_body_over_the_limit_is_a_413_before_it_is_parsed(client_for: ClientFactory) -> None:
    client = client_for(**{"gateway.max_body_bytes": 4096})
    body = orjson.dumps({"instances": [SETOSA] * 200})
    assert len(body) > 4096
    error = _error(client.post("/v1/predict/batch", content=body, headers=JSON), 413, "too_large")
    assert error["limit"] == 4096
    assert "gateway.max_body_bytes" in error["message"]


def test_a_chunked_body_over_the_limit_is_a_413(client_for: ClientFactory) -> None:
    client = client_for(**{"gateway.max_body_bytes": 4096})

    def chunks() -> Iterator[bytes]:
        yield b'{"instances": ['
        for _ in range(500):
            yield orjson.dumps(SETOSA) + b","
        yield orjson.dumps(SETOSA) + b"]}"

    response = client.post("/v1/predict/batch", content=chunks(), headers=JSON)
    _error(response, 413, "too_large")


def test_a_body_under_the_limit_is_served(client_for: ClientFactory) -> None:
    client = client_for(**{"gateway.max_body_bytes": 4096})
    response = client.post("/v1/predict", json={"features": {**SETOSA, "colour": 1.0}})
    assert _fields(_error(response, 422, "invalid_request")) == ["features.colour"]


def test_fifty_thousand_unknown_feature_names_make_a_small_422(client: TestClient) -> None:
    features = {**SETOSA, **{f"junk_{i:05d}": 1.0 for i in range(50_000)}}
    response = client.post("/v1/predict", json={"features": features})
    error = _error(response, 422, "invalid_request")
    assert len(response.content) < 8 * 1024
    assert len(error["fields"]) <= 21
    assert "49990 more" in response.text


def test_fifty_thousand_invalid_values_make_a_small_422(client: TestClient) -> None:
    features = {f"junk_{i:05d}": "not a number" for i in range(50_000)}
    response = client.post("/v1/predict", json={"features": features})
    error = _error(response, 422, "invalid_request")
    assert len(response.content) < 8 * 1024
    assert len(error["fields"]) == 21
    assert error["fields"][-1]["message"] == "and 49980 more"


def test_a_batch_of_many_bad_rows_lists_twenty_problems_and_a_count(client: TestClient) -> None:
    bad = {**SETOSA, "colour": 1.0}
    response = client.post("/v1/predict/batch", json={"instances": [bad] * 100})
    error = _error(response, 422, "invalid_request")
    assert len(error["fields"]) == 21
    assert error["fields"][-1]["message"].endswith("more")
    assert len(error["message"]) <= 4000


@pytest.mark.parametrize("value", [1e39, -1e39, 1e308])
def test_a_value_beyond_float32_is_a_422_naming_the_feature(
    client: TestClient, value: float
) -> None:
    response = client.post("/v1/predict", json={"features": {**SETOSA, "sepal_length": value}})
    error = _error(response, 422, "invalid_request")
    assert _fields(error) == ["features.sepal_length"]
    assert "float32" in error["fields"][0]["message"]


def test_a_value_far_outside_the_training_range_is_a_422(client: TestClient) -> None:
    # iris petal widths: mean 1.2, std 0.76; 100 std devs away is about 77
    response = client.post("/v1/predict", json={"features": {**SETOSA, "petal_width": 500.0}})
    error = _error(response, 422, "invalid_request")
    assert _fields(error) == ["features.petal_width"]
    assert "features.max_reference_std" in error["fields"][0]["message"]


def test_the_domain_limit_follows_the_setting(client_for: ClientFactory) -> None:
    client = client_for(**{"features.max_reference_std": 1000.0})
    response = client.post("/v1/predict", json={"features": {**SETOSA, "petal_width": 500.0}})
    _error(response, 503, "kafka_unavailable")  # passed every check, then needs Kafka


def test_a_batch_names_the_row_whose_value_is_out_of_domain(client: TestClient) -> None:
    response = client.post(
        "/v1/predict/batch", json={"instances": [SETOSA, {**SETOSA, "sepal_width": 1e39}]}
    )
    assert _fields(_error(response, 422, "invalid_request")) == ["instances.1.sepal_width"]


def test_stats_survive_stored_values_that_are_not_finite(client: TestClient) -> None:
    """Rows written before the feed refused NaN and Infinity must not break the dashboard."""
    audit: AuditStore = client.app.state.audit  # type: ignore[attr-defined]
    now = 1.0e9
    audit.write(
        AuditBatch(
            requests=[
                {
                    "request_id": "ok",
                    "kind": "single",
                    "at": now,
                    "features": SETOSA,
                    "n_instances": 1,
                },
            ],
        )
    )
    bad = {
        "kind": "single",
        "n_instances": 1,
        "features": {"sepal_length": math.nan, "petal_width": math.inf},
        "latency_seconds": math.inf,
        "label": "setosa",
        "true_label": "setosa",
    }
    with audit.engine.begin() as conn:
        for i, (at, scored, labeled) in enumerate(
            [(math.inf, math.inf, -math.inf), (1e300, math.nan, 1e300), (-1e300, 1e300, 0.0)]
        ):
            conn.execute(
                records.insert().values(
                    request_id=f"bad-{i}", at=at, scored_at=scored, labeled_at=labeled, **bad
                )
            )
    response = client.get("/v1/stats?window=86400")
    assert response.status_code == 200, response.text
    assert all(value is None or math.isfinite(value) for value in response.json()["throughput"])
