"""The Prometheus ``irisflow up`` runs: the real binary (Debian package), no broker needed."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from irisflow.local.broker.runtime import free_port
from irisflow.local.prometheus import JOBS, local_prometheus
from irisflow.settings import Settings, load_settings
from tests.conftest import ROOT


def _settings(tmp_path: Path, port: int) -> Settings:
    return load_settings(
        ROOT / "params.yaml",
        environ={},
        overrides={"home": str(tmp_path / "home"), "prometheus.port": port},
    )


def _get(url: str) -> Any:
    deadline = time.monotonic() + 60
    while True:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return response.json() if "/api/" in url else response.text
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


def test_up_runs_prometheus_on_the_irisflow_jobs_with_the_alert_rules(tmp_path: Path) -> None:
    settings = _settings(tmp_path, free_port())
    with local_prometheus(settings) as url:
        assert url == f"http://127.0.0.1:{settings.prometheus.port}"
        _get(f"{url}/-/ready")
        scraped: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while len(scraped) < len(JOBS) and time.monotonic() < deadline:
            time.sleep(0.3)  # targets are discovered shortly after start
            targets = _get(f"{url}/api/v1/targets")["data"]["activeTargets"]
            scraped = {t["labels"]["job"]: t["scrapeUrl"] for t in targets}
        assert set(scraped) == set(JOBS)
        assert scraped["irisflow-worker"] == f"http://127.0.0.1:{settings.worker.port}/metrics"
        rules = _get(f"{url}/api/v1/rules")["data"]["groups"]
        alerts = {rule["name"] for group in rules for rule in group["rules"]}
        assert "IrisflowDriftAlarm" in alerts
    assert (settings.home / "prometheus").is_dir()  # its data stays with irisflow's state
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/-/ready", timeout=2)


def test_a_taken_port_leaves_up_running_without_prometheus(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = _settings(tmp_path, taken.getsockname()[1])
        with caplog.at_level(logging.WARNING), local_prometheus(settings) as url:
            assert url is None
    assert "IRISFLOW_PROMETHEUS_PORT" in caplog.text
