"""Kafka goes away: the gateway answers 503 and is not ready; it recovers by itself.

The session broker is shared by every test, so this one runs its own embedded broker on free
ports, stops it, and starts it again on the same ports and data folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from irisflow.local.broker.runtime import EmbeddedKafka, ensure_kafka_jars, free_port
from tests.e2e.conftest import Stack, launch_stack, stop_all
from tests.factories import SETOSA

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    cache = Path(os.environ.get("IRISFLOW_CACHE_DIR", Path.home() / ".cache" / "irisflow"))
    broker = EmbeddedKafka(
        libs=ensure_kafka_jars(cache),
        data_dir=tmp_path / "kafka",
        port=free_port(),
        controller_port=free_port(),
        heap="512m",
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _predict(stack: Stack) -> httpx.Response:
    return httpx.post(f"{stack.gateway_url}/v1/predict", json={"features": SETOSA}, timeout=30)


def _wait_for(check: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s")


def _ready(stack: Stack) -> dict[str, object]:
    response = httpx.get(f"{stack.gateway_url}/health/ready", timeout=10)
    body: dict[str, object] = response.json()
    body["status"] = response.status_code
    return body


def test_with_kafka_down_the_gateway_answers_503_and_recovers_when_it_returns(
    tmp_path: Path, own_broker: EmbeddedKafka
) -> None:
    stack = launch_stack(tmp_path / "stack", own_broker.bootstrap)
    try:
        assert _predict(stack).status_code == 200

        own_broker.stop()
        _wait_for(lambda: _ready(stack)["status"] == 503, "readiness turning false", 60)
        ready = _ready(stack)
        assert (ready["ready"], ready["kafka"]) == (False, False)
        response = _predict(stack)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "kafka_unavailable"
        assert stack.processes["gateway"].poll() is None

        own_broker.start()
        _wait_for(lambda: _ready(stack)["status"] == 200, "readiness coming back", 120)
        if stack.processes["worker"].poll() is not None:  # the worker is not under test here
            stack.start("worker", "worker")
        _wait_for(lambda: _predict(stack).status_code == 200, "a prediction after recovery", 120)
        assert _predict(stack).json()["label"] == "setosa"
    finally:
        stop_all(stack)
