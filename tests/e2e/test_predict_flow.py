"""HTTP → gateway → Kafka → Faust worker → Kafka → HTTP, with real processes and a real broker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_iris

from tests.e2e.conftest import Stack, live_version, records_on, requests_published
from tests.factories import SETOSA, VIRGINICA

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


def _predict(stack: Stack, features: object, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{stack.gateway_url}/v1/predict", json={"features": features, **extra}, timeout=30
    )


def test_a_prediction_goes_round_trip_through_kafka_and_the_worker(stack: Stack) -> None:
    live = live_version(stack)
    response = _predict(stack, SETOSA)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] == "setosa"
    assert set(body["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert body["probabilities"]["setosa"] > 0.9
    assert body["model_version"] == live
    assert _predict(stack, VIRGINICA).json()["label"] == "virginica"


def test_a_client_request_id_is_echoed(stack: Stack) -> None:
    assert _predict(stack, SETOSA, request_id="client-42").json()["request_id"] == "client-42"


@pytest.mark.parametrize(
    ("features", "field"),
    [
        ({**SETOSA, "petal_width": "wide"}, "features.petal_width"),
        ({k: v for k, v in SETOSA.items() if k != "sepal_width"}, "features.sepal_width"),
        ({**SETOSA, "colour": 1.0}, "features.colour"),
    ],
)
def test_a_malformed_body_is_a_422_naming_the_field(
    stack: Stack, features: object, field: str
) -> None:
    response = _predict(stack, features)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in [f["field"] for f in error["fields"]]


def test_a_missing_features_object_is_a_422_naming_it(stack: Stack) -> None:
    response = httpx.post(f"{stack.gateway_url}/v1/predict", json={"feature": {}}, timeout=10)
    assert response.status_code == 422
    assert "features" in [f["field"] for f in response.json()["error"]["fields"]]


def test_a_new_model_version_is_served_without_restarting_the_worker(stack: Stack) -> None:
    worker_pid = stack.processes["worker"].pid
    new = live_version(stack) + 1
    stack.publish(new, kind="naive_bayes")
    deadline = time.monotonic() + 30
    version = None
    while time.monotonic() < deadline:
        version = _predict(stack, SETOSA).json().get("model_version")
        if version == new:
            break
        time.sleep(0.2)
    assert version == new
    assert stack.processes["worker"].pid == worker_pid
    assert stack.processes["worker"].poll() is None


def test_irisflow_train_publishes_a_version_that_the_running_worker_serves(stack: Stack) -> None:
    before = live_version(stack)
    done = subprocess.run(
        [sys.executable, "-m", "irisflow.cli", "--params", str(stack.params), "train"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # The version train chose (an earlier test may have published one the gateway has not
    # reported live yet, so it is read from the output, not predicted).
    published = re.search(r"version (\d+): .* published to", done.stdout)
    assert published is not None, done.stdout
    new = int(published.group(1))
    assert new > before
    card = stack.settings.registry_dir / f"v{new:04d}" / "card.md"
    assert "Model card" in card.read_text()
    deadline = time.monotonic() + 30
    body: dict[str, object] = {}
    while time.monotonic() < deadline:
        body = _predict(stack, SETOSA).json()
        if body.get("model_version") == new:
            break
        time.sleep(0.2)
    assert body.get("model_version") == new
    assert body.get("label") == "setosa"


def _replayed(stack: Stack) -> dict[str, float]:
    """``irisflow_gateway_replayed_answers_total`` by source (memory, audit)."""
    text = httpx.get(f"{stack.gateway_url}/metrics", timeout=10).text
    found = {"memory": 0.0, "audit": 0.0}
    for source in found:
        prefix = f'irisflow_gateway_replayed_answers_total{{source="{source}"}} '
        for line in text.splitlines():
            if line.startswith(prefix):
                found[source] = float(line.rsplit(" ", 1)[1])
    return found


def _status(stack: Stack, rid: str) -> str | None:
    found = httpx.get(f"{stack.gateway_url}/v1/predictions/{rid}", timeout=10)
    return found.json()["status"] if found.status_code == 200 else None


def test_a_request_that_timed_out_is_answered_on_retry_once_the_worker_catches_up(
    stack: Stack,
) -> None:
    """README: no worker answering is a 504 after ``gateway.predict_timeout_seconds``, and an
    answer that arrives after the 504 is kept for the retry, which publishes nothing.

    The retry is sent once the audit shows the answer, by which time the gateway's reply reader
    (which reads the same record, with less to do) has handed it to the late-answer handler. The
    worker is restarted before the test ends, so the stack serves the next test as before.
    """
    rid = f"late-{uuid.uuid4().hex[:8]}"
    stack.stop("worker")
    try:
        started = time.monotonic()
        response = _predict(stack, SETOSA, request_id=rid)
        elapsed = time.monotonic() - started
        assert response.status_code == 504, response.text
        error = response.json()["error"]
        assert error["code"] == "timeout"
        assert "irisflow worker" in error["message"]
        timeout = stack.settings.gateway.predict_timeout_seconds
        assert timeout <= elapsed < timeout + 2.0
    finally:
        stack.start("worker", "worker")
        stack.wait_ready()

    deadline = time.monotonic() + 60
    while _status(stack, rid) != "answered" and time.monotonic() < deadline:
        time.sleep(0.3)  # the restarted worker reads the request it missed and answers it
    assert _status(stack, rid) == "answered"
    kafka = stack.settings.kafka
    on_topic = len(records_on(kafka, kafka.topics.requests))
    before = _replayed(stack)
    retry = _predict(stack, SETOSA, request_id=rid)
    assert retry.status_code == 200, retry.text
    assert (retry.json()["request_id"], retry.json()["label"]) == (rid, "setosa")
    after = _replayed(stack)
    # from the gateway's memory (the late answer kept), not only from the audit, which knows it too
    assert (after["memory"], after["audit"]) == (before["memory"] + 1, before["audit"])
    assert len(records_on(kafka, kafka.topics.requests)) == on_topic  # nothing published
    assert len(requests_published(kafka, rid)) == 1


def _oip_rows(n: int) -> np.ndarray:
    """``n`` Iris-like rows as FP32, seeded: the data set's rows, slightly moved."""
    data = load_iris().data
    noise = np.random.default_rng(15).normal(0.0, 0.05, size=(n, data.shape[1]))
    return (data[np.arange(n) % len(data)] + noise).astype(np.float32)


def test_an_independent_oip_client_reads_the_labels_and_probabilities_v1_gives(
    stack: Stack,
) -> None:
    """The Done-means of issue 15: tritonclient (PyPI, not ours) sends a 1,000-row FP32 tensor
    (as binary tensor data, its default, and as JSON) and reads what /v1 answers for the rows."""
    from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

    live = live_version(stack)
    rows = _oip_rows(1000)
    client = InferenceServerClient(url=stack.gateway_url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("iris")
        metadata = client.get_model_metadata("iris")
        names = json.loads(metadata["parameters"]["feature_names"])
        classes = json.loads(metadata["parameters"]["class_labels"])
        answers = []
        for binary in (True, False):
            tensor = InferInput("input-0", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows, binary_data=binary)
            outputs = [
                InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")
            ]
            result = client.infer("iris", [tensor], outputs=outputs, request_id=f"oip-{binary}")
            assert result.get_response()["id"] == f"oip-{binary}"
            assert result.get_response()["model_version"] == str(live)
            answers.append((result.as_numpy("label"), result.as_numpy("probabilities")))
    finally:
        client.close()
    instances = [dict(zip(names, map(float, row), strict=True)) for row in rows]
    v1 = httpx.post(
        f"{stack.gateway_url}/v1/predict/batch", json={"instances": instances}, timeout=60
    )
    assert v1.status_code == 200, v1.text
    predictions = v1.json()["predictions"]
    expected_labels = [p["label"] for p in predictions]
    expected = np.array([[p["probabilities"][c] for c in classes] for p in predictions])
    assert len(set(expected_labels)) == 3
    for labels, probabilities in answers:
        assert probabilities.shape == (1000, 3)
        assert [str(label) for label in labels] == expected_labels
        np.testing.assert_allclose(probabilities, expected, rtol=1e-9, atol=1e-12)
