"""A fresh stack whose newest model version is broken serves the newest version that loads.

The topic holds [v1 good, v2 broken]. A worker and a gateway started now must both settle on
v1: the worker scores with it, the gateway reports it live and ready, and the broken version
is listed as refused. Before, the worker served nothing (every request 503) and the gateway
reported v2 live on its checksum alone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from irisflow.kafka.model_topic import publish_update
from tests.e2e.conftest import launch_stack, stop_all
from tests.factories import SETOSA, forged_update

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.mark.parametrize("broken", ["checksum", "zip_bomb", "wrong_features"])
def test_a_fresh_worker_and_gateway_serve_the_newest_version_that_loads(
    tmp_path: Path, kafka_bootstrap: str, broken: str
) -> None:
    stack = launch_stack(tmp_path, kafka_bootstrap, roles=(), version=1)
    asyncio.run(publish_update(stack.settings.kafka, forged_update(2, broken)))
    for role in ("worker", "gateway"):
        stack.start(role, role)
    try:
        stack.wait_ready()
        answer = httpx.post(
            f"{stack.gateway_url}/v1/predict", json={"features": SETOSA}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == 1
        models = httpx.get(f"{stack.gateway_url}/v1/models", timeout=10).json()
        assert models["live_version"] == 1
        worker = httpx.get(
            f"http://127.0.0.1:{stack.settings.worker.port}/health", timeout=10
        ).json()
        assert worker["model_version"] == 1
        assert worker["refused_versions"] == [2]
    finally:
        stop_all(stack)


def test_faust_pages_that_would_expose_join_entries_are_off(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """The worker's web port serves /health and /metrics, not Faust's table, router or graph
    views (they showed join entries: features and labels)."""
    stack = launch_stack(tmp_path, kafka_bootstrap, roles=("worker",), version=1)
    try:
        base = f"http://127.0.0.1:{stack.settings.worker.port}"
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
        for page in ("/table/", "/table/join/", "/router/", "/graph/"):
            assert httpx.get(f"{base}{page}", timeout=10).status_code == 404, page
    finally:
        stop_all(stack)
