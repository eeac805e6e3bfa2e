"""Hostile records and models against real processes: broker, `irisflow worker`, `irisflow gateway`.

Issue #10: a bad record on a topic costs one dead letter, never the audit feed; feedback for an
id nobody requested does not block a later request with that id (finding 4); a model update that
does not load is never reported live (the gateway says what the workers serve). Issue 15:
generated malformed Open Inference Protocol requests and /v1 batches each get a 4xx in their
protocol's error shape, and the gateway goes on serving.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from irisflow.kafka.clients import make_producer
from irisflow.kafka.model_topic import publish_update
from irisflow.registry import serialize_model
from irisflow.schemas import DeadLetter, ModelUpdate
from irisflow.settings import KafkaSettings
from tests.e2e.conftest import (
    GATEWAY_API_KEY,
    Stack,
    eventually,
    launch_stack,
    records_on,
    stop_all,
)
from tests.factories import SETOSA, iris_xy, model_update

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


def _produce(kafka: KafkaSettings, topic: str, key: bytes, value: bytes) -> None:
    async def run() -> None:
        producer = make_producer(kafka)
        await producer.start()
        try:
            await producer.send_and_wait(topic, key=key, value=value)
        finally:
            await producer.stop()

    asyncio.run(run())


def _letters(kafka: KafkaSettings) -> list[DeadLetter]:
    """Every dead letter so far, read from the beginning."""
    return [DeadLetter.from_bytes(r.value) for r in records_on(kafka, kafka.topics.dead_letters)]


def _metric(url: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ------------------------------------------------------------------------- bad records


def test_an_unreadable_feedback_record_is_dead_lettered_and_the_audit_goes_on(
    gateway_stack: Stack,
) -> None:
    """Finding 5: the audit feed used to loop forever on a NaN ``labeled_at``."""
    kafka = gateway_stack.settings.kafka
    url = gateway_stack.gateway_url
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    poison = b'{"request_id":"' + victim.encode() + b'","label":"setosa","labeled_at":NaN}'
    _produce(kafka, kafka.topics.feedback, victim.encode(), poison)
    after = f"after-{uuid.uuid4().hex[:8]}"
    assert httpx.post(
        f"{url}/v1/predict", json={"features": SETOSA, "request_id": after}, timeout=30
    ).is_success
    answered = eventually(
        lambda: httpx.get(f"{url}/v1/predictions/{after}", timeout=10).status_code == 200
    )
    assert answered, "the audit feed stopped after the bad record"

    def lettered() -> list[DeadLetter]:
        return [
            x for x in _letters(kafka) if x.consumer == "gateway.audit" and x.original == poison
        ]

    (letter,) = eventually(lettered)
    assert (letter.source_topic, letter.reason) == (kafka.topics.feedback, "undecodable")
    counted = _metric(
        url,
        "irisflow_dead_letters_total",
        topic=kafka.topics.feedback,
        reason="undecodable",
        consumer="gateway.audit",
    )
    assert counted >= 1
    stats = httpx.get(f"{url}/v1/stats", timeout=30)
    assert stats.status_code == 200


@pytest.mark.parametrize("wait", [True, False])
def test_feedback_for_an_id_never_requested_does_not_block_a_later_request(
    gateway_stack: Stack, wait: bool
) -> None:
    """Finding 4: the audit called such an id pending, so the request was never published."""
    url = gateway_stack.gateway_url
    rid = f"early-{uuid.uuid4().hex[:8]}"
    sent = httpx.post(f"{url}/v1/feedback", json={"request_id": rid, "label": "setosa"})
    assert sent.status_code == 202

    def audited() -> str | None:
        found = httpx.get(f"{url}/v1/predictions/{rid}", timeout=10)
        return found.json()["status"] if found.status_code == 200 else None

    assert eventually(audited) == "unrequested"
    body = {"features": SETOSA, "request_id": rid}
    response = httpx.post(f"{url}/v1/predict?wait={str(wait).lower()}", json=body, timeout=30)
    assert response.status_code == (200 if wait else 202), response.text
    assert eventually(lambda: audited() == "answered")
    record = httpx.get(f"{url}/v1/predictions/{rid}", timeout=10).json()
    assert (record["label"], record["feedback"]["label"]) == ("setosa", "setosa")


# ------------------------------------------------------------------------- bad models


def _bad_checksum() -> ModelUpdate:
    return model_update(2).model_copy(update={"sha256": "0" * 64})


def _zip_bomb() -> ModelUpdate:
    """300 MiB of zeros in a zip of ~300 KB (the limit is 256 MiB uncompressed)."""
    buffer = io.BytesIO()
    block = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("schema.json", "w") as entry,
    ):
        for _ in range(300):
            entry.write(block)
    return model_update(2, artifact=buffer.getvalue())


def _wrong_features() -> ModelUpdate:
    """A classifier fit on three features, published as if it took the four iris features."""
    x, y = iris_xy()
    return model_update(
        2, artifact=serialize_model(LogisticRegression(max_iter=500).fit(x[:, :3], y))
    )


BAD_MODELS = {
    "bad checksum": _bad_checksum,
    "zip bomb": _zip_bomb,
    "wrong features": _wrong_features,
}


@pytest.fixture(params=list(BAD_MODELS))
def fresh_gateway_after_a_bad_update(
    request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str
) -> Iterator[tuple[Stack, Callable[[], ModelUpdate]]]:
    """A gateway started on a topic holding [v1 good, v2 bad] (no worker, no registry)."""
    stack = launch_stack(tmp_path, kafka_bootstrap, roles=())
    bad = BAD_MODELS[request.param]
    asyncio.run(publish_update(stack.settings.kafka, bad()))
    stack.start("gateway", "gateway")
    try:
        stack.wait_ready()
        yield stack, bad
    finally:
        stop_all(stack)


def test_a_fresh_gateway_reports_the_newest_version_that_loads(
    fresh_gateway_after_a_bad_update: tuple[Stack, Callable[[], ModelUpdate]],
) -> None:
    stack, bad = fresh_gateway_after_a_bad_update
    url = stack.gateway_url
    ready = httpx.get(f"{url}/health/ready", timeout=10).json()
    assert (ready["ready"], ready["model_version"]) == (True, 1)
    models = httpx.get(f"{url}/v1/models", timeout=10).json()
    assert models["live_version"] == 1

    # the same bad bytes arriving live: refused, dead-lettered once by this gateway, v1 stays
    asyncio.run(publish_update(stack.settings.kafka, bad().model_copy(update={"version": 3})))

    def refused() -> list[DeadLetter]:
        return [x for x in _letters(stack.settings.kafka) if x.consumer == "gateway.model-feed"]

    (letter,) = eventually(refused)
    assert letter.source_topic == stack.settings.kafka.topics.model_updates
    assert letter.reason == "refused_model"
    assert "version 3" in letter.error
    assert httpx.get(f"{url}/v1/models", timeout=10).json()["live_version"] == 1
    assert httpx.get(f"{url}/health/ready", timeout=10).json()["model_version"] == 1
    counted = _metric(
        url, "irisflow_dead_letters_total", reason="refused_model", consumer="gateway.model-feed"
    )
    assert counted == 1


# ------------------------------------------------------------------------- hostile batches

HOSTILE_EXAMPLES = 60
"""Bodies per endpoint: every field's kind of fault is drawn several times (a few seconds)."""
_JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_VALUES = st.sampled_from(
    ["5.1", "x", True, None, [], {}, 1e39, -1e39, 3.5e38, 1e308, 2**64, -(2**70), float("inf")]
)
"""Values a feature must not take: not numbers, beyond float32 or the model's domain, not JSON."""


_ROW = list(SETOSA.values())
TENSOR_FAULTS = [
    "value",
    "value",
    "name",
    "shape",
    "datatype",
    "value",
    "size",
    "nesting",
    "id",
    "field",
    "outputs",
    "parameters",
    "not_an_object",
    "binary",
]


@st.composite
def _hostile_tensor_body(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A valid inference request of 2 rows with one fault drawn from :data:`TENSOR_FAULTS`."""
    tensor: dict[str, Any] = {
        "name": "input-0",
        "shape": [2, 4],
        "datatype": "FP32",
        "data": _ROW * 2,
    }
    body: dict[str, Any] = {"inputs": [tensor]}
    fault = draw(st.sampled_from(TENSOR_FAULTS))
    if fault == "name":
        tensor["name"] = draw(st.sampled_from(["sepal_length", "", 7, None]))
    elif fault == "shape":
        tensor["shape"] = draw(st.sampled_from([[8], [2, 3], [4, 2], [2, 4, 1], [-2, 4], "2x4"]))
    elif fault == "datatype":
        tensor["datatype"] = draw(st.sampled_from(["BOOL", "BYTES", "fp32", "", 32, {}, ["FP32"]]))
    elif fault == "value":
        tensor["data"][draw(st.integers(0, 7))] = draw(_VALUES)
    elif fault == "size":
        tensor["data"] = tensor["data"][: draw(st.integers(0, 7))]
    elif fault == "nesting":
        tensor["data"] = draw(st.sampled_from([[_ROW, *_ROW], [[_ROW], [_ROW]], "data", {}]))
    elif fault == "id":
        body["id"] = draw(st.sampled_from(["a/b", "", "x" * 200, 42, ["id"]]))
    elif fault == "field":
        body[draw(st.sampled_from(["extra", "input"]))] = draw(_JSON)
    elif fault in ("outputs", "parameters"):
        body[fault] = draw(_JSON)
    elif fault == "not_an_object":
        body = draw(_JSON)
    if fault != "binary":
        return json.dumps(body).encode(), {}  # big ints and Infinity too
    raw = draw(st.binary(max_size=64))
    tensor.pop("data")
    tensor["parameters"] = {"binary_data_size": draw(st.sampled_from([32, len(raw), -1, "32"]))}
    header = json.dumps(body).encode()
    length = draw(st.sampled_from([str(len(header)), str(len(header) + 999), "-1", "x", "0"]))
    return header + raw, {"Inference-Header-Content-Length": length}


@st.composite
def _hostile_batch_body(draw: st.DrawFn) -> bytes:
    """A valid /v1/predict/batch body of 2 instances with one fault."""
    instances: list[Any] = [dict(SETOSA), dict(SETOSA)]
    body: dict[str, Any] = {"instances": instances}
    fault = draw(st.sampled_from(["value", "name", "missing", "instance", "id", "field", "body"]))
    if fault == "value":
        instances[1]["petal_width"] = draw(_VALUES)
    elif fault == "name":
        instances[1][draw(st.sampled_from(["colour", "", "x" * 300]))] = 1.0
    elif fault == "missing":
        del instances[1][draw(st.sampled_from(list(SETOSA)))]
    elif fault == "instance":
        instances[1] = draw(_JSON)
    elif fault == "id":
        body["request_id"] = draw(st.sampled_from(["a/b", "", "x" * 200, 42]))
    elif fault == "field":
        body["extra"] = draw(_JSON)
    else:
        body = draw(_JSON)
    return json.dumps(body).encode()


def _campaign(url: str, path: str, bodies: st.SearchStrategy[Any]) -> list[tuple[int, str]]:
    """Every drawn body posted to ``path``: (status, error) of each refusal."""
    answers: list[tuple[int, str]] = []

    @hypothesis_settings(
        max_examples=HOSTILE_EXAMPLES,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(drawn=bodies)
    def post(drawn: Any) -> None:
        raw, headers = drawn if isinstance(drawn, tuple) else (drawn, {})
        response = httpx.post(
            f"{url}{path}",
            content=raw,
            headers={"content-type": "application/json", **headers},
            timeout=30,
        )
        assert response.status_code < 500, (
            f"{response.status_code} for {raw[:300]!r}: {response.text}"
        )
        if response.status_code >= 400:
            answers.append((response.status_code, response.text))

    post()
    return answers


def test_hostile_tensors_and_batches_get_a_4xx_naming_the_problem_and_the_gateway_goes_on(
    gateway_stack: Stack,
) -> None:
    """Issue 15: malformed Open Inference Protocol requests and /v1 batches, generated, against
    the real gateway: every one is answered below 500 in its protocol's error shape, and good
    calls of both kinds are answered as before."""
    url = gateway_stack.gateway_url
    gateway = gateway_stack.processes["gateway"]
    refused = _campaign(url, "/v2/models/iris/infer", _hostile_tensor_body())
    for status, text in refused:
        body = orjson.loads(text)
        assert list(body) == ["error"], text
        assert body["error"], text
        assert status in (400, 404, 409, 413), text
    refused_v1 = _campaign(url, "/v1/predict/batch", _hostile_batch_body())
    for status, text in refused_v1:
        error = orjson.loads(text)["error"]
        assert (error["status"], bool(error["message"])) == (status, True), text
        assert status in (400, 409, 413, 422), text
    assert len(refused) > HOSTILE_EXAMPLES // 2
    assert len(refused_v1) > HOSTILE_EXAMPLES // 2
    tensor = {
        "name": "input-0",
        "shape": [2, 4],
        "datatype": "FP32",
        "data": [*SETOSA.values(), *SETOSA.values()],
    }
    good = httpx.post(f"{url}/v2/models/iris/infer", json={"inputs": [tensor]}, timeout=30)
    assert good.status_code == 200, good.text
    assert good.json()["outputs"][0]["data"] == ["setosa", "setosa"]
    batch = httpx.post(f"{url}/v1/predict/batch", json={"instances": [SETOSA]}, timeout=30)
    assert (batch.status_code, batch.json()["predictions"][0]["label"]) == (200, "setosa")
    assert gateway.poll() is None, "the gateway died during the campaign"


# ------------------------------------------------------------------- hostile rollout commands

ROLLOUT_FAULTS = ["version", "version", "mode", "share", "share", "automatic", "missing", "field"]


@st.composite
def _hostile_rollout_body(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A valid ``POST /v1/rollout`` body with one fault (and the API key: the body is what is
    hostile here; the key's own refusals are tested with the other admin endpoints)."""
    body: dict[str, Any] = {"version": 2, "mode": "canary", "share": 0.1, "automatic": True}
    fault = draw(st.sampled_from([*ROLLOUT_FAULTS, "not_an_object"]))
    if fault == "version":
        body["version"] = draw(st.sampled_from([0, -1, "2", 2.5, None, True, [2], 2**70]))
    elif fault == "mode":
        body["mode"] = draw(st.sampled_from(["live", "", "SHADOW", 5, None, ["canary"]]))
    elif fault == "share":
        body["share"] = draw(st.sampled_from([0, 0.0, 1.5, -0.1, "0.1", True, [0.1], 1e309]))
    elif fault == "automatic":
        body["automatic"] = draw(st.sampled_from(["yes", 2, None, "true", [True]]))
    elif fault == "missing":
        del body[draw(st.sampled_from(["version", "mode"]))]
    elif fault == "field":
        body[draw(st.sampled_from(["extra", "command_id", "requested_by"]))] = draw(_JSON)
    else:
        body = draw(_JSON)
    return json.dumps(body).encode(), {"X-API-Key": GATEWAY_API_KEY}


def test_hostile_rollout_commands_get_a_422_naming_the_field_and_nothing_is_sent(
    gateway_stack: Stack,
) -> None:
    """Generated malformed ``POST /v1/rollout`` bodies against the real gateway: each one is a
    422 naming what is wrong, never a 202 (a command sent on) nor a 5xx; the gateway goes on."""
    url = gateway_stack.gateway_url
    refused = _campaign(url, "/v1/rollout", _hostile_rollout_body())
    assert len(refused) == HOSTILE_EXAMPLES
    for status, text in refused:
        error = orjson.loads(text)["error"]
        assert (status, error["status"]) == (422, 422), text
        named = ("version", "mode", "share", "automatic", "extra", "command_id", "requested_by")
        assert any(name in error["message"] for name in (*named, "body")), text
    for path, body in (("abort", {"reason": "x" * 501}), ("promote", {"why": "extra"})):
        reply = httpx.post(
            f"{url}/v1/rollout/{path}",
            json=body,
            headers={"X-API-Key": GATEWAY_API_KEY},
            timeout=30,
        )
        assert reply.status_code == 422, reply.text
    good = httpx.post(f"{url}/v1/predict", json={"features": SETOSA}, timeout=30)
    assert good.status_code == 200, good.text
    assert gateway_stack.processes["gateway"].poll() is None, "the gateway died"
