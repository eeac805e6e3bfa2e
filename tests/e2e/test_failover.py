"""A worker killed with ``kill -9`` under load: no client sees an error or needs to retry.

Two workers share the requests' partitions; one is killed mid-stream. Its partitions stay with
it until its group session expires, so the gateway's hedged copies (``gateway.hedge_after_seconds``)
are what answers those requests meanwhile. How long the slowest one waited is measured by
``bench/http_latency.py``; here every request must simply be answered, 200, once.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from irisflow.local.broker.runtime import free_port
from tests.e2e.conftest import launch_stack, stop_all
from tests.factories import SETOSA, VIRGINICA

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]

RATE = 40  # requests per second, open loop
SECONDS = 14.0  # the kill comes at a third of it; a 6 s session expires well within


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _load(url: str, *, kill: Callable[[], None]) -> list[httpx.Response | BaseException]:
    """Send RATE requests a second for SECONDS, whatever the answers take; kill at a third."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=400)) as client:
        calls = []
        started = time.monotonic()
        for i in range(int(RATE * SECONDS)):
            await asyncio.sleep(max(0.0, started + i / RATE - time.monotonic()))
            if i == int(RATE * SECONDS / 3):
                kill()
            body = {
                "request_id": f"fo-{i}-{uuid.uuid4().hex[:6]}",
                "features": SETOSA if i % 2 else VIRGINICA,
            }
            calls.append(asyncio.ensure_future(client.post(f"{url}/v1/predict", json=body)))
        return await asyncio.gather(*calls, return_exceptions=True)


def test_a_worker_killed_under_load_costs_no_client_an_error(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    stack = launch_stack(
        tmp_path / "failover", kafka_bootstrap, **{"gateway.predict_timeout_seconds": 5.0}
    )
    try:
        second = free_port()
        stack.start("worker-2", "worker", "--port", str(second))
        _wait_for_both_workers(
            [stack.settings.worker.port, second], stack.settings.kafka.partitions
        )
        victim = stack.processes["worker"]
        responses = asyncio.run(
            _load(stack.gateway_url, kill=lambda: victim.send_signal(signal.SIGKILL))
        )
        assert victim.wait(10) == -signal.SIGKILL
        failures = [
            r if isinstance(r, BaseException) else f"{r.status_code} {r.text[:200]}"
            for r in responses
            if isinstance(r, BaseException) or r.status_code != 200
        ]
        assert failures == [], f"{len(failures)} of {len(responses)} failed: {failures[:5]}"
        labels = {r.json()["label"] for r in responses if isinstance(r, httpx.Response)}
        assert labels == {"setosa", "virginica"}
        assert _metric(stack.gateway_url, "irisflow_gateway_hedged_requests_total") > 0
    finally:
        stop_all(stack)


def _partitions(port: int) -> list[int]:
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    except httpx.HTTPError:
        return []
    return health.json()["partitions"] if health.status_code == 200 else []


def _wait_for_both_workers(ports: list[int], partitions: int) -> None:
    """Until both workers are ready and own disjoint shares of every partition."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        owned = [_partitions(port) for port in ports]
        if all(owned) and sorted(owned[0] + owned[1]) == list(range(partitions)):
            return
        time.sleep(0.3)
    raise AssertionError(f"the two workers did not share the partitions within 90 s: {owned}")
