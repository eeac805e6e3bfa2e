"""README promises about the gateway that hold in-process, without a broker.

Readiness means Kafka reachable *and* a model live; ``/openapi.json`` documents the live model;
an answer to other input under an awaited id is ignored and counted in
``irisflow_gateway_mismatched_answers_total``; every metric the README names is exposed. These
go through the app as ``irisflow gateway`` builds it (``create_app``), so the wiring between its
parts is what is checked, not each part alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from irisflow.schemas import Prediction
from tests.conftest import ROOT
from tests.factories import SETOSA, model_update

ClientFactory = Callable[..., TestClient]


def _app(client: TestClient) -> FastAPI:
    app = client.app
    assert isinstance(app, FastAPI)
    return app


def _sample(client: TestClient, name: str) -> float | None:
    """The value of an unlabelled sample on ``/metrics`` (``None`` if it is not there)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_gateway_is_not_ready_until_a_model_is_live(client_for: ClientFactory) -> None:
    waiting = client_for(live=False, kafka=True).get("/health/ready")
    assert waiting.status_code == 503
    body = waiting.json()
    assert (body["ready"], body["kafka"], body["model_version"]) == (False, True, None)
    serving = client_for(live=True, kafka=True).get("/health/ready")
    assert serving.status_code == 200
    assert (serving.json()["ready"], serving.json()["model_version"]) == (True, 1)


def test_answers_to_other_input_under_an_awaited_id_are_counted_on_metrics(
    client: TestClient,
) -> None:
    """The app wires its bridge's ``on_mismatch`` to the metric the README names: an answer
    with another input's digest, or with none, is ignored and counted."""
    bridge = _app(client).state.bridge
    assert _sample(client, "irisflow_gateway_mismatched_answers_total") == 0
    bridge.watch("r1", Prediction, "ctx", 0.0, "single:mine")
    probabilities = {"setosa": 0.9, "versicolor": 0.05, "virginica": 0.05}
    for digest in ("single:theirs", None):
        other = Prediction(
            request_id="r1",
            label="virginica",
            probabilities=probabilities,
            model_version=1,
            input_digest=digest,
        )
        bridge.deliver("r1", other.to_bytes())
    assert _sample(client, "irisflow_gateway_mismatched_answers_total") == 2


def _readme_gateway_metrics() -> list[str]:
    """The metric names of the README's "Gateway metrics" paragraph (labels left out)."""
    text = (ROOT / "README.md").read_text()
    start = text.index("**Gateway metrics**")
    paragraph = text[start : text.index("\n\n", start)]
    return sorted({m.group(1) for m in re.finditer(r"`(irisflow_[a-z_]+)", paragraph)})


def test_every_metric_the_readme_lists_for_the_gateway_is_exposed(client: TestClient) -> None:
    names = _readme_gateway_metrics()
    assert len(names) >= 13  # the paragraph was found and read
    text = client.get("/metrics").text
    missing = [name for name in names if f"# TYPE {name} " not in text]
    assert missing == []


def _schemas(client: TestClient) -> dict[str, Any]:
    schemas: dict[str, Any] = client.get("/openapi.json").json()["components"]["schemas"]
    return schemas


def test_openapi_documents_the_live_models_features_classes_and_batch_limit(
    client_for: ClientFactory,
) -> None:
    live = model_update(1).metadata()
    schemas = _schemas(client_for(**{"gateway.max_batch_instances": 7}))
    features = schemas["PredictBody"]["properties"]["features"]
    assert set(features["properties"]) == set(live.feature_names) == set(SETOSA)
    assert {p["type"] for p in features["properties"].values()} == {"number"}
    assert sorted(features["required"]) == sorted(live.feature_names)
    assert features["additionalProperties"] is False
    instances = schemas["BatchPredictBody"]["properties"]["instances"]
    assert instances["items"] == features
    assert instances["maxItems"] == 7
    assert schemas["FeedbackBody"]["properties"]["label"]["enum"] == list(live.class_labels)
