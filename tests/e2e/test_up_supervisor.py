"""``irisflow up`` keeps the stack running: a killed role comes back, a broken one stops it all.

Before, one role exiting (a worker killed by the OOM killer, a crash on one bad record) stopped
every other role with it.

The first test stops the stack with SIGTERM to ``irisflow up`` alone (as a service manager
would), not Ctrl-C to the whole process group: then no role hears the signal itself, and only
``up`` stopping each of them ends them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from irisflow.local.broker.runtime import free_port
from tests.conftest import unique_params
from tests.factories import SETOSA
from tests.processes import descendants, wait_gone

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

FAST = {"logistic_regression": {"max_iter": 300}, "naive_bayes": {}}


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    log: Path
    gateway: str
    worker_health: str
    prometheus_port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self, role: str) -> list[int]:
        return [int(pid) for pid in re.findall(rf"started {role} \(pid (\d+)\)", self.output())]

    def interrupt(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        return self.process.wait(90)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)  # to `irisflow up` only, as systemd would
        return self.process.wait(90)


def _start_up(tmp_path: Path, bootstrap: str, **changes: object) -> Up:
    ports = {key: free_port() for key in ("gateway", "worker", "retraining", "prometheus")}
    params = unique_params(
        tmp_path,
        bootstrap,
        **{
            **{f"{key}.port": port for key, port in ports.items()},
            "training.candidates": FAST,
            "training.cv_folds": 3,
            **changes,
        },
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRISFLOW_")}
    log = tmp_path / "up.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "irisflow.cli", "--params", str(params), "up"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    return Up(
        process,
        log,
        f"http://127.0.0.1:{ports['gateway']}",
        f"http://127.0.0.1:{ports['worker']}/health",
        ports["prometheus"],
    )


def _until(condition: Callable[[], bool], up: Up, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert up.process.poll() is None, f"irisflow up exited:\n{up.output()[-4000:]}"
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f}s:\n{up.output()[-4000:]}"
        time.sleep(0.5)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None


def _predicts(up: Up) -> bool:
    try:
        response = httpx.post(f"{up.gateway}/v1/predict", json={"features": SETOSA}, timeout=10)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("label") == "setosa"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_worker_is_restarted_and_the_stack_keeps_serving(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    up = _start_up(tmp_path, kafka_bootstrap)
    try:
        _until(lambda: _predicts(up) and "irisflow is up" in up.output(), up, 240, "serving")
        (worker,) = up.pids("worker")

        os.kill(worker, signal.SIGKILL)

        _until(
            lambda: "restarts so far: worker 1, gateway 0, trainer 0" in up.output(),
            up,
            30,
            "a new worker",
        )
        assert "worker exited with code -9; restarting in 1 s (restart 1)" in up.output()
        assert len(up.pids("worker")) == 2
        replacement = up.pids("worker")[1]
        assert replacement != worker
        assert not _alive(worker)
        _until(lambda: _status(up.worker_health) == 200, up, 180, "the new worker ready")
        _until(lambda: _predicts(up), up, 60, "serving again")
        running = descendants(up.process.pid)
        assert {p.pid for p in running} >= {replacement, *up.pids("gateway"), *up.pids("trainer")}
    finally:
        code = up.terminate()
    assert code == 0, up.output()[-4000:]
    left = wait_gone(running, timeout=30)
    assert left == [], "still running after SIGTERM:\n" + "\n".join(map(str, left))
    assert _status(f"{up.gateway}/health/live") is None
    assert _status(f"http://127.0.0.1:{up.prometheus_port}/-/ready") is None
    assert "stopping worker, gateway, trainer (restarts: worker 1, gateway 0, trainer 0)" in (
        up.output()
    )


def test_a_role_that_keeps_exiting_stops_the_stack_showing_its_last_error(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        up = _start_up(tmp_path, kafka_bootstrap, **{"gateway.port": taken})
        try:
            code = up.process.wait(240)
        finally:
            if up.process.poll() is None:
                up.interrupt()
    output = up.output()
    assert code == 1, output[-4000:]
    for pause, restart in ((1, 1), (2, 2), (4, 3), (8, 4)):
        expected = rf"gateway exited with code \d+; restarting in {pause} s \(restart {restart}\)"
        assert re.search(expected, output), output[-4000:]
    assert "gateway keeps exiting; its last lines of stderr:" in output
    shown = output.split("its last lines of stderr:")[1].split("irisflow.local: stopping")[0]
    assert "address already in use" in shown
    assert shown.count("Started server process") == 1  # the last run's lines, not all five
    assert re.search(
        r"irisflow: error: gateway exited 5 times within 300 s \(last exit code \d+; "
        r"last error: ERROR: +\[Errno 98\].*address already in use\); stopped the stack",
        output,
    )
    children = [pid for role in ("worker", "gateway", "trainer") for pid in up.pids(role)]
    assert len(up.pids("gateway")) == 5
    assert [pid for pid in children if _alive(pid)] == []
    assert _status(f"http://127.0.0.1:{up.prometheus_port}/-/ready") is None
