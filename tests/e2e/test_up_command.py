"""``irisflow up``: broker started, first model trained, every role up, Ctrl-C stops everything.

This run starts its own embedded broker (as ``make run`` does on a fresh machine), not the
session's: the README promises that Ctrl-C stops the worker, the gateway, the trainer, the local
Prometheus and the broker ``up`` started, and only a broker ``up`` started can show that. Every
process below ``irisflow up`` is collected from /proc while the stack runs, and after Ctrl-C each
of them must be gone, whichever of them the log does not name.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from irisflow.local.broker.runtime import free_port
from tests.conftest import unique_params
from tests.factories import SETOSA
from tests.processes import descendants, wait_gone

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

FAST = {"logistic_regression": {"max_iter": 300}, "naive_bayes": {}}


def _until(condition: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 240
    while not condition():
        output = log.read_text(errors="replace")[-4000:]
        assert process.poll() is None, f"irisflow up exited:\n{output}"
        assert time.monotonic() < deadline, f"not up within 240 s:\n{output}"
        time.sleep(0.5)


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None


def _predicted(gateway: str) -> dict[str, object]:
    try:
        response = httpx.post(f"{gateway}/v1/predict", json={"features": SETOSA}, timeout=10)
    except httpx.HTTPError:
        return {}
    return dict(response.json()) if response.status_code == 200 else {}


def _listens(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _banner_url(output: str, name: str) -> str:
    match = re.search(rf"^  {name} +(http://\S+)", output, re.MULTILINE)
    assert match, f"no {name} line in the banner:\n{output[-3000:]}"
    return match.group(1)


def test_up_starts_broker_model_and_roles_and_ctrl_c_stops_every_process_it_started(
    tmp_path: Path,
) -> None:
    ports = {key: free_port() for key in ("gateway", "worker", "retraining", "prometheus")}
    broker_port = free_port()
    params = unique_params(
        tmp_path,
        None,  # no bootstrap: `up` starts the embedded broker, as on a fresh machine
        **{f"{key}.port": port for key, port in ports.items()},
        **{
            "kafka.embedded_port": broker_port,
            "kafka.embedded_controller_port": free_port(),
            "kafka.embedded_heap": "384m",
            "training.candidates": FAST,
            "training.cv_folds": 3,
        },
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRISFLOW_")}
    log = tmp_path / "up.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "irisflow.cli", "--params", str(params), "up"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # like a terminal: Ctrl-C reaches the whole process group
    )
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    try:
        body: dict[str, object] = {}

        def serving() -> bool:
            nonlocal body
            body = _predicted(gateway)
            return bool(body) and "irisflow is up" in log.read_text(errors="replace")

        _until(serving, process, log)  # the banner waits for the worker's readiness too
        output = log.read_text(errors="replace")
        assert body.get("label") == "setosa", output[-3000:]
        assert body.get("model_version") == 1  # the bootstrap training published version 1
        assert "version 1" in output

        # What the banner promises answers.
        assert _get(_banner_url(output, "dashboard")) == 200
        assert _get(_banner_url(output, "gateway") + "/docs") == 200
        assert _get(_banner_url(output, "worker")) == 200
        assert _get(_banner_url(output, "trainer")) == 200
        if shutil.which("prometheus"):
            assert _get(_banner_url(output, "metrics") + "/-/ready") == 200
        else:
            assert "no local Prometheus" in output

        started = descendants(process.pid)
        roles = sorted(p.role for p in started)
        expected = ["broker", "gateway", "trainer", "worker"]
        if shutil.which("prometheus"):
            expected.append("prometheus")
        assert all(role in roles for role in expected), "\n".join(map(str, started))
        (broker,) = [p for p in started if p.role == "broker"]
        assert (tmp_path / "home" / "kafka" / "broker.pid").read_text().strip() == str(broker.pid)
        assert _listens(broker_port)
    finally:
        os.killpg(process.pid, signal.SIGINT)  # the broker runs in its own session: `up` stops it
        code = process.wait(90)
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    left = wait_gone(started, timeout=30)
    assert left == [], "still running after Ctrl-C:\n" + "\n".join(map(str, left))
    assert not _listens(broker_port)
    for port in ports.values():
        assert not _listens(port), f"port {port} still answers:\n{output[-3000:]}"
    assert "stopping the embedded Kafka broker" in output
    # its data is kept (README: "its data is kept in .irisflow/"): the next `up` finds version 1
    assert (tmp_path / "home" / "kafka" / "logs" / "meta.properties").exists()
    assert not (tmp_path / "home" / "kafka" / "broker.pid").exists()
