"""``irisflow up``: first model trained, worker and gateway up, Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from irisflow.local.broker.runtime import free_port
from tests.conftest import unique_params
from tests.factories import SETOSA

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


def test_up_trains_a_first_model_serves_it_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    gateway_port = free_port()
    params = unique_params(
        tmp_path,
        kafka_bootstrap,
        **{
            "gateway.port": gateway_port,
            "worker.port": free_port(),
            "retraining.port": free_port(),
            "prometheus.port": free_port(),
        },
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRISFLOW_")}
    log = (tmp_path / "up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "irisflow.cli", "--params", str(params), "up"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # like a terminal: Ctrl-C reaches the whole process group
    )
    try:
        body: dict[str, object] = {}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{gateway_port}/v1/predict",
                    json={"features": SETOSA},
                    timeout=10,
                )
                body = response.json()
                if response.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        output = ""
        while time.monotonic() < deadline and "irisflow is up" not in output:
            time.sleep(0.5)  # the banner waits for the worker's readiness too
            output = (tmp_path / "up.log").read_text(errors="replace")
        assert body.get("label") == "setosa", output[-3000:]
        assert body.get("model_version") == 1
        assert "irisflow is up" in output
        assert "version 1" in output  # the bootstrap training published version 1
    finally:
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(60)
    assert code == 0, (tmp_path / "up.log").read_text(errors="replace")[-3000:]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{gateway_port}/health/live", timeout=2)
