"""irisflow processes started exactly as a user starts them, against the session broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.structs import ConsumerRecord

from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.clients import assign_all, behind, make_consumer
from irisflow.kafka.model_topic import publish_update
from irisflow.local.broker.runtime import free_port
from irisflow.settings import KafkaSettings, Settings, load_settings
from irisflow.tracing import HEDGE_OF
from tests.conftest import unique_params
from tests.factories import SETOSA, model_update


def records_on(kafka: KafkaSettings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topic`` so far, read from the beginning through the core's follow."""

    async def read() -> list[ConsumerRecord[bytes, bytes]]:
        consumer = make_consumer(kafka, group_id=None)
        await consumer.start()
        try:
            tps = await assign_all(consumer, topic, start="beginning")
            end = await consumer.end_offsets(tps)
            found: list[ConsumerRecord[bytes, bytes]] = []
            while await behind(consumer, end):
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    found += records
            return found
        finally:
            await consumer.stop()

    return asyncio.run(read())


def requests_published(kafka: KafkaSettings, request_id: str) -> list[ConsumerRecord[bytes, bytes]]:
    """The records published for ``request_id`` on the requests topic, hedged copies left out.

    A gateway may send a late request's copy to another partition (``irisflow-hedge-of``
    header): the same publish, answered once by id. Every other record under the id is a
    publish of its own, which a repeated id must never cause."""
    return [
        r
        for r in records_on(kafka, kafka.topics.requests)
        if r.key == request_id.encode() and HEDGE_OF not in dict(r.headers or ())
    ]


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _connected(url: str) -> bool:
    """A gateway's readiness says Kafka is reachable (ready or not: no model may be live)."""
    try:
        return httpx.get(url, timeout=2).json().get("kafka") is True
    except (httpx.HTTPError, ValueError):
        return False


@dataclass
class Stack:
    """A params file, its settings, and the irisflow processes running with it."""

    params: Path
    settings: Settings
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.gateway.port}"

    def start(self, role: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{role}.log").open("ab")
        command = [sys.executable, "-m", "irisflow.cli", "--params", str(self.params), *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("IRISFLOW_")}
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.processes[role] = process
        return process

    def stop(self, role: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(role)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def publish(self, version: int, kind: str = "logistic_regression") -> None:
        asyncio.run(publish_update(self.settings.kafka, model_update(version, kind=kind)))

    def health_urls(self) -> list[str]:
        urls = [f"{self.gateway_url}/health/ready"] if "gateway" in self.processes else []
        if "worker" in self.processes:
            urls.append(f"http://127.0.0.1:{self.settings.worker.port}/health")
        return urls

    def wait_ready(self, timeout: float = 90.0, *, model: bool = True) -> None:
        """Until every role started is ready; with ``model=False`` a gateway counts once it
        reaches Kafka (it cannot be ready while no model is live)."""
        deadline = time.monotonic() + timeout
        gateway = f"{self.gateway_url}/health/ready"
        while time.monotonic() < deadline:
            for role, process in self.processes.items():
                if process.poll() is not None:
                    log = (self.logs / f"{role}.log").read_text(errors="replace")
                    raise AssertionError(
                        f"{role} exited with {process.returncode}; why:\n{_why(log)}\n"
                        f"its last lines:\n{log[-3000:]}"
                    )
            urls = self.health_urls()
            if all((_ok if url != gateway or model else _connected)(url) for url in urls):
                return
            time.sleep(0.3)
        raise AssertionError("the gateway did not become ready")


def _why(log: str) -> str:
    """A stopped process's errors and tracebacks: its last lines are Faust's shutdown, which
    says that it stopped and never why."""
    lines = log.splitlines()
    told = [
        line
        for line in lines
        if ("ERROR" in line or "CRITICAL" in line or "Traceback" in line or "Error:" in line)
        and "aiokafka" not in line
    ]
    return "\n".join(told[:30]) or "(no error logged)"


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``check()``'s first truthy result, polling every 0.3 s; its last result at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def live_version(stack: Stack, timeout: float = 60) -> int:
    """The version served now, once the gateway and the worker agree on it.

    The newest record on the topic may be one every reader refused, and the gateway checks a
    new version in a child process, so it may report it a little after the worker serves it:
    tests must not assume which test ran before, nor read one side alone.
    """
    deadline = time.monotonic() + timeout
    while True:
        live = httpx.get(f"{stack.gateway_url}/v1/models", timeout=10).json()["live_version"]
        served = httpx.post(
            f"{stack.gateway_url}/v1/predict", json={"features": SETOSA}, timeout=10
        ).json()["model_version"]
        if live == served or time.monotonic() > deadline:
            assert isinstance(live, int)
            assert live == served, f"the gateway reports {live} live, the worker serves {served}"
            return live
        time.sleep(0.3)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Stack]:
    """A worker and a gateway serving model version 1."""
    folder = tmp_path_factory.mktemp("stack")
    params = unique_params(
        folder,
        kafka_bootstrap,
        **{
            "gateway.port": free_port(),
            "gateway.predict_timeout_seconds": 3.0,
            "worker.port": free_port(),
        },
    )
    settings = load_settings(params, environ={})
    stack = Stack(params=params, settings=settings, logs=folder)
    asyncio.run(ensure_topics(settings.kafka))
    stack.publish(1)
    stack.start("worker", "worker")
    stack.start("gateway", "gateway")
    try:
        stack.wait_ready()
        yield stack
    finally:
        for role in list(stack.processes):
            stack.stop(role)


# ----------------------------------------------------------------- gateway tests (issue #5)

GATEWAY_API_KEY = "e2e-secret-key"
GATEWAY_SETTINGS: dict[str, Any] = {
    "gateway.api_key": GATEWAY_API_KEY,
    "gateway.max_batch_instances": 5,
}
"""The params the shared ``gateway_stack`` changes (a test's own gateway may take them too)."""


def launch_stack(
    folder: Path,
    bootstrap: str,
    *,
    roles: tuple[str, ...] = ("worker", "gateway"),
    version: int | None = 1,
    **changes: object,
) -> Stack:
    """Like the ``stack`` fixture, with params changed by dotted keys; the caller stops it.

    ``version=None`` publishes no model: the stack starts with none live (its gateway is then
    waited for until it reaches Kafka, since it is not ready without a model)."""
    folder.mkdir(parents=True, exist_ok=True)
    params = unique_params(
        folder,
        bootstrap,
        **{
            "gateway.port": free_port(),
            "gateway.predict_timeout_seconds": 5.0,
            "worker.port": free_port(),
            **changes,
        },
    )
    settings = load_settings(params, environ={})
    stack = Stack(params=params, settings=settings, logs=folder)
    asyncio.run(ensure_topics(settings.kafka))
    if version is not None:
        stack.publish(version)
    for role in roles:
        stack.start(role, role)
    try:
        stack.wait_ready(model=version is not None)
    except BaseException:
        stop_all(stack)
        raise
    return stack


def stop_all(stack: Stack) -> None:
    for role in list(stack.processes):
        stack.stop(role)


@pytest.fixture(scope="session")
def gateway_stack(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str
) -> Iterator[Stack]:
    """One worker and one gateway (API key set, batches of at most 5) shared by gateway tests."""
    stack = launch_stack(
        tmp_path_factory.mktemp("gateway-stack"), kafka_bootstrap, **GATEWAY_SETTINGS
    )
    try:
        yield stack
    finally:
        stop_all(stack)
