"""The Prometheus configs: promtool accepts them, the alert rules behave, `irisflow up` agrees.

promtool comes with the Debian package ``prometheus`` (``make test`` installs it).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from irisflow.local import prometheus
from irisflow.local.prometheus import JOBS, local_prometheus, local_targets, prometheus_config
from irisflow.settings import Settings, load_settings
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: install the Debian package prometheus (make test does)")
    return found


def _promtool(promtool: str, *args: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_compose_prometheus_config_passes_promtool(promtool: str) -> None:
    done = _promtool(promtool, "check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout  # alerts.yml is loaded and checked with it


def test_the_alert_rules_pass_promtool(promtool: str) -> None:
    done = _promtool(promtool, "check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_rules_fire_as_their_unit_tests_expect(promtool: str) -> None:
    """deploy/prometheus/alerts_test.yml: synthetic series in, expected alerts out."""
    done = _promtool(promtool, "test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_there_is_an_alert_for_each_way_irisflow_degrades() -> None:
    names = {rule["alert"] for rule in _rules()}
    assert names >= {
        "IrisflowDriftAlarm",
        "IrisflowLiveAccuracyLow",
        "IrisflowNoModelLive",
        "IrisflowConsumerLagGrowing",
        "IrisflowDeadLettersRising",
        "IrisflowGateway5xx",
        "IrisflowGatewayTimeouts",
        "IrisflowRetrainingRejected",
        "IrisflowRetrainingStalled",
        "IrisflowNoWorker",
    }


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_every_alert_says_how_urgent_it_is_and_what_to_do(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert rule["annotations"]["summary"]
    assert len(rule["annotations"]["description"]) > 30


def test_every_alert_has_a_unit_test_or_is_a_plain_threshold() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load((DEPLOY / "alerts_test.yml").read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    untested = {rule["alert"] for rule in _rules()} - tested
    assert untested <= {
        "IrisflowDriftPersists",
        "IrisflowTargetDown",
        "IrisflowScoringSlow",
        "IrisflowGatewayTimeouts",
        "IrisflowGatewayKafkaDown",
        "IrisflowRetrainingStalled",
        "IrisflowTrainerDown",
    }


def _compose_config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    return loaded


def test_docker_and_irisflow_up_scrape_the_same_jobs() -> None:
    """Dashboards and alerts select on job names; both setups must use the same ones."""
    compose_jobs = {job["job_name"] for job in _compose_config()["scrape_configs"]}
    assert set(JOBS) <= compose_jobs
    assert set(local_targets(Settings())) == set(JOBS)


def test_the_compose_scrape_ports_are_the_default_ports_of_each_service() -> None:
    settings = Settings()
    by_job = {job["job_name"]: job for job in _compose_config()["scrape_configs"]}
    worker = by_job["irisflow-worker"]["dns_sd_configs"][0]
    assert (worker["names"], worker["port"]) == (["worker"], settings.worker.port)
    gateway = by_job["irisflow-gateway"]["dns_sd_configs"][0]
    assert (gateway["names"], gateway["port"]) == (["gateway"], settings.gateway.port)
    trainer = by_job["irisflow-trainer"]["static_configs"][0]["targets"]
    assert trainer == [f"trainer:{settings.retraining.port}"]


def test_the_config_irisflow_up_writes_passes_promtool(promtool: str, tmp_path: Path) -> None:
    config = prometheus_config(
        local_targets(Settings()), interval_seconds=5.0, rule_files=[DEPLOY / "alerts.yml"]
    )
    path = prometheus.write_config(tmp_path / "prometheus.yml", config)
    done = _promtool(promtool, "check", "config", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert config["global"]["scrape_interval"] == "5000ms"


def test_irisflow_up_scrapes_a_wildcard_bind_on_loopback() -> None:
    settings = load_settings(
        ROOT / "params.yaml",
        environ={"IRISFLOW_WORKER_HOST": "0.0.0.0", "IRISFLOW_WORKER_PORT": "7001"},
    )
    assert local_targets(settings)["irisflow-worker"] == ["127.0.0.1:7001"]
    assert local_targets(settings)["irisflow-trainer"] == ["127.0.0.1:6070"]


def test_without_the_prometheus_binary_up_runs_on_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("irisflow.local.prometheus.shutil.which", lambda name: None)
    with caplog.at_level(logging.INFO), local_prometheus(Settings()) as url:
        assert url is None
    assert "Debian package prometheus" in caplog.text


def test_a_disabled_local_prometheus_is_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("started a process")

    monkeypatch.setattr("irisflow.local.prometheus.subprocess.Popen", forbidden)
    settings = load_settings(ROOT / "params.yaml", environ={}, overrides={"prometheus.enabled": 0})
    with local_prometheus(settings) as url:
        assert url is None


def test_the_compose_prometheus_flags_exist_in_prometheus() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: install the Debian package (make test does)")
    done = subprocess.run(
        [binary, "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    help_text = done.stdout + done.stderr
    for flag in compose["services"]["prometheus"]["command"]:
        assert flag.split("=")[0] in help_text, flag
