"""Two gateway processes at once, as behind a load balancer: each answers its own clients."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from irisflow.local.broker.runtime import free_port
from irisflow.settings import load_settings
from tests.e2e.conftest import GATEWAY_API_KEY, Stack, stop_all
from tests.factories import SETOSA, VIRGINICA

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


@pytest.fixture(scope="module")
def second_gateway(
    gateway_stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Same topics and audit database as ``gateway_stack``'s gateway; no API key configured."""
    folder = tmp_path_factory.mktemp("gateway-b")
    params = yaml.safe_load(gateway_stack.params.read_text())
    params["gateway"]["port"] = free_port()
    params["gateway"].pop("api_key", None)
    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    stack = Stack(params=path, settings=load_settings(path, environ={}), logs=folder)
    stack.start("gateway", "gateway")
    try:
        stack.wait_ready()
        yield stack
    finally:
        stop_all(stack)


def _published(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith('irisflow_gateway_published_total{kind="request"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _instance(url: str) -> str:
    return str(httpx.get(f"{url}/health/ready", timeout=10).json()["instance_id"])


def test_two_gateways_serve_concurrently_each_answering_its_own_clients(
    gateway_stack: Stack, second_gateway: Stack
) -> None:
    urls = [gateway_stack.gateway_url, second_gateway.gateway_url]
    before = [_published(url) for url in urls]
    jobs = [
        (urls[i % 2], f"lb-{i}-{uuid.uuid4().hex[:6]}", SETOSA if i % 3 else VIRGINICA)
        for i in range(40)
    ]

    def call(job: tuple[str, str, dict[str, float]]) -> httpx.Response:
        url, rid, features = job
        return httpx.post(
            f"{url}/v1/predict", json={"features": features, "request_id": rid}, timeout=30
        )

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, jobs))

    for (_, rid, features), response in zip(jobs, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["request_id"] == rid
        assert response.json()["label"] == ("setosa" if features is SETOSA else "virginica")
    after = [_published(url) for url in urls]
    assert [a - b for a, b in zip(after, before, strict=True)] == [20, 20]

    instances = [_instance(url) for url in urls]
    assert instances[0] != instances[1]
    rid = jobs[1][1]  # sent through the second gateway, read back through the first
    deadline = time.monotonic() + 30
    record = httpx.get(f"{urls[0]}/v1/predictions/{rid}", timeout=10)
    while record.status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.2)
        record = httpx.get(f"{urls[0]}/v1/predictions/{rid}", timeout=10)
    assert record.json()["reply_to"] == instances[1]


def test_a_gateway_without_a_key_refuses_admin_even_with_its_siblings_key(
    gateway_stack: Stack, second_gateway: Stack
) -> None:
    refused = httpx.post(f"{second_gateway.gateway_url}/v1/retrain", timeout=10)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_disabled"
    assert "IRISFLOW_API_KEY" in refused.json()["error"]["message"]
    with_key = httpx.post(
        f"{second_gateway.gateway_url}/v1/retrain",
        headers={"X-API-Key": GATEWAY_API_KEY},
        timeout=10,
    )
    assert with_key.status_code == 403


def _metric(url: str, name: str, labels: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(f"{name}{{{labels}}}"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_request_id_answered_by_one_gateway_is_replayed_by_the_other_from_the_audit(
    gateway_stack: Stack, second_gateway: Stack
) -> None:
    first, second = gateway_stack.gateway_url, second_gateway.gateway_url
    rid = f"retry-elsewhere-{uuid.uuid4().hex[:6]}"
    body = {"features": VIRGINICA, "request_id": rid}
    answer = httpx.post(f"{first}/v1/predict", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = httpx.get(f"{second}/v1/predictions/{rid}", timeout=10)
        if record.status_code == 200 and record.json()["status"] == "answered":
            break
        time.sleep(0.2)
    published = _published(second)
    replayed = _metric(second, "irisflow_gateway_replayed_answers_total", 'source="audit"')
    again = httpx.post(f"{second}/v1/predict", json=body, timeout=30)
    assert again.status_code == 200, again.text
    assert {
        k: again.json()[k] for k in ("request_id", "label", "probabilities", "model_version")
    } == {k: answer.json()[k] for k in ("request_id", "label", "probabilities", "model_version")}
    assert _published(second) == published
    assert (
        _metric(second, "irisflow_gateway_replayed_answers_total", 'source="audit"') == replayed + 1
    )
