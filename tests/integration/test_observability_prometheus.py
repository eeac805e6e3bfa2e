"""A real Prometheus scrapes real irisflow processes under drifted traffic.

The Prometheus is the one ``irisflow up`` runs (:func:`irisflow.local.prometheus.local_prometheus`,
Debian package ``prometheus``) on a free port, scraping every second, with the repo's alert
rules (``for:`` set to 0s in a copy). A worker, a gateway and a trainer serve a model trained
by ``irisflow train``; ``irisflow produce`` sends labeled traffic whose ``petal_length`` is
shifted by 4 standard deviations, and HTTP clients call the gateway. Then every query of every
Grafana panel, with its template variables resolved as Grafana resolves them, must return data,
the drift alert must fire, and the drift view renders from this Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deploy import dashboards
from deploy.render_drift import PrometheusClient, render
from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.clients import make_producer
from irisflow.local.broker.runtime import free_port
from irisflow.local.prometheus import ALERT_RULES, local_prometheus
from irisflow.settings import load_settings
from tests.conftest import ROOT, unique_params
from tests.e2e.conftest import Stack
from tests.factories import SETOSA

pytestmark = pytest.mark.kafka

#: Metrics no irisflow process exports yet (deploy/dashboards.py): their queries are reported,
#: not failed. tests/unit/test_deploy_grafana.py fails once one of them exists, so the entry
#: is removed and its panels are checked here like the others.
PENDING = set(dashboards.PENDING_METRICS)
FAST = {"logistic_regression": {"max_iter": 300}, "naive_bayes": {}}
INTERVALS = {"__rate_interval": "30s", "__interval": "5s", "__range": "10m"}
DRIFTED = {**SETOSA, "petal_length": SETOSA["petal_length"] + 7.0}


@dataclass
class Observed:
    stack: Stack
    prometheus: PrometheusClient
    started: float
    stop: threading.Event = field(default_factory=threading.Event)
    http_calls: int = 0


def _alerts_for_now(folder: Path) -> None:
    """The repo's rules with every ``for:`` at 0s, where local_prometheus looks for them."""
    rules = yaml.safe_load((ROOT / ALERT_RULES).read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
        group["interval"] = "1s"
    target = folder / ALERT_RULES
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(rules))


def _irisflow(stack: Stack, *args: str, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRISFLOW_")}
    done = subprocess.run(
        [sys.executable, "-m", "irisflow.cli", "--params", str(stack.params), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _wait(what: str, check: Any, timeout: float, stack: Stack | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack is not None:
            for role, process in stack.processes.items():
                if process.poll() is not None:
                    tail = (stack.logs / f"{role}.log").read_text(errors="replace")[-3000:]
                    raise AssertionError(f"{role} exited with {process.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            found = check()
            if found:
                return found
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _answers(url: str) -> bool:
    return httpx.get(url, timeout=3).status_code == 200


async def _poison(stack: Stack) -> None:
    producer = make_producer(stack.settings.kafka)
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(
                stack.settings.kafka.topics.requests, key=f"poison-{i}".encode(), value=b"{oops"
            )
    finally:
        await producer.stop()


def _http_clients(observed: Observed) -> None:
    """Drifted predictions and an invalid body, until the module's tests are done."""
    url = observed.stack.gateway_url
    with httpx.Client(timeout=15) as client:
        while not observed.stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                client.post(f"{url}/v1/predict", json={"features": DRIFTED})
                client.post(f"{url}/v1/predict", json={"features": {"petal_length": "long"}})
                observed.http_calls += 1
            observed.stop.wait(0.2)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Observed]:
    folder = tmp_path_factory.mktemp("observability")
    params = unique_params(
        folder,
        kafka_bootstrap,
        **{
            "gateway.port": free_port(),
            "worker.port": free_port(),
            "retraining.port": free_port(),
            "prometheus.port": free_port(),
            "prometheus.scrape_interval_seconds": 1.0,
            "training.candidates": FAST,
            "training.cv_folds": 3,
            "retraining.min_new_labels": 100000,  # retrain on the drift alarm only
            "drift.window": 200,
            "streams.lag_interval_seconds": 1,
        },
    )
    _alerts_for_now(folder)
    settings = load_settings(params, environ={})
    stack = Stack(params=params, settings=settings, logs=folder)
    asyncio.run(ensure_topics(settings.kafka))
    threads: list[threading.Thread] = []
    with local_prometheus(settings) as url:
        assert url is not None, (folder / "home" / "prometheus.log").read_text(errors="replace")
        observed = Observed(stack, PrometheusClient(url), started=time.time())
        try:
            for role in ("worker", "gateway", "trainer"):
                stack.start(role, role)
            ports = settings.worker.port, settings.gateway.port, settings.retraining.port
            health = ("/health", "/health/live", "/metrics")
            urls = [f"http://127.0.0.1:{p}{h}" for p, h in zip(ports, health, strict=True)]
            _wait("worker, gateway, trainer", lambda: all(map(_answers, urls)), 120, stack)
            # Trained while Prometheus watches: the swap to version 1 is on record.
            _irisflow(stack, "train", "--trigger", "bootstrap")
            stack.wait_ready(timeout=120)
            asyncio.run(_poison(stack))
            _irisflow(stack, "produce", "-n", "400", "--rate", "200", "--feedback", "1")
            drift = ["--drift-feature", "petal_length", "--drift-shift", "4", "--seed", "2"]
            traffic = ["-n", "100000", "--rate", "50", "--feedback", "1"]
            stack.start("producer", "produce", *traffic, *drift)
            threads.append(threading.Thread(target=_http_clients, args=(observed,), daemon=True))
            threads[0].start()
            yield observed
        finally:
            observed.stop.set()
            for thread in threads:
                thread.join(30)
            for role in list(stack.processes):
                stack.stop(role)


def _firing(client: PrometheusClient, alertname: str) -> list[dict[str, str]]:
    body = httpx.get(f"{client.url}/api/v1/alerts", timeout=10).json()
    return [
        alert["labels"]
        for alert in body["data"]["alerts"]
        if alert["labels"]["alertname"] == alertname and alert["state"] == "firing"
    ]


def test_the_drift_alert_fires_for_the_shifted_feature(observed: Observed) -> None:
    def petal_length_alarm() -> list[dict[str, str]]:
        firing = _firing(observed.prometheus, "IrisflowDriftAlarm")
        return [labels for labels in firing if labels["feature"] == "petal_length"]

    alerts = _wait("IrisflowDriftAlarm on petal_length", petal_length_alarm, 180, observed.stack)
    assert alerts[0]["severity"] == "ticket"
    assert alerts[0]["detector"] in {"adwin", "ks"}
    as_series = observed.prometheus.query(
        'ALERTS{alertname="IrisflowDriftAlarm", alertstate="firing", feature="petal_length"}'
    )
    assert as_series


def _has_data(client: PrometheusClient, expr: str) -> bool:
    return any(math.isfinite(float(s["value"][1])) for s in client.query(expr))


def _empty_panels(client: PrometheusClient, name: str, timeout: float) -> tuple[list[str], int]:
    """Panel queries still without a finite value at the deadline, and how many were run."""
    dashboard = dashboards.load(name)
    exported = set(client.label_values(None, "__name__"))
    deadline = time.monotonic() + timeout
    while True:
        values = client.resolve(dashboard)
        assert all(values.values()), f"a template variable has no values: {values}"
        todo = dashboards.queries(dashboard, values)
        empty = []
        for query in todo:
            chosen = {**values, **{k: [v] for k, v in query.bindings.items()}}
            expr = dashboards.interpolate(query.expr, chosen, INTERVALS)
            missing = dashboards.metric_names(expr) - exported
            if missing and missing <= PENDING:
                print(f"waits for {sorted(missing)}: {query.title} [{query.ref}]")
                continue
            if not _has_data(client, expr):
                empty.append(f"{query.title} [{query.ref}]: {expr}")
        if not empty or time.monotonic() > deadline:
            return empty, len(todo)
        time.sleep(2)
        exported = set(client.label_values(None, "__name__"))


def _retrained(observed: Observed) -> bool:
    return bool(observed.prometheus.query("irisflow_retrains_total"))


def test_every_panel_of_the_drift_dashboard_has_data(observed: Observed) -> None:
    _wait("a retraining on the drift alarm", lambda: _retrained(observed), 240, observed.stack)
    empty, count = _empty_panels(observed.prometheus, "drift", timeout=120)
    assert not empty, "\n".join(empty)
    assert count >= 20  # one "Drift on <feature>" panel per feature, and the others


def test_every_panel_of_the_overview_dashboard_has_data(observed: Observed) -> None:
    empty, count = _empty_panels(observed.prometheus, "overview", timeout=120)
    assert not empty, "\n".join(empty)
    assert count >= 25
    assert observed.http_calls > 0


def test_every_annotation_marks_an_event_of_the_run(observed: Observed) -> None:
    _wait("a retraining on the drift alarm", lambda: _retrained(observed), 240, observed.stack)
    for name in ("drift", "overview"):
        for annotation in dashboards.annotation_queries(dashboards.load(name)):

            def marked(expr: str = annotation.expr) -> bool:
                series = observed.prometheus.query_range(
                    expr, start=observed.started, end=time.time(), step=1
                )
                return any(s["values"] for s in series)

            _wait(f"{name}: annotation {annotation.name}", marked, 60)


def test_every_panel_of_the_rollout_dashboard_has_data_once_a_rollout_runs(
    observed: Observed,
) -> None:
    """A candidate trained beside the live version, in shadow for every request and left to
    the operator (``--manual``: the policy only watches), while the drifted traffic and its
    labels flow: every rollout panel and the decisions annotation have data. Started after the
    drift retraining, so no new champion ends it midway; aborted at the end."""
    from trainer.commands import train_candidate

    stack = observed.stack
    _wait("a retraining on the drift alarm", lambda: _retrained(observed), 240, stack)
    candidate = train_candidate(stack.settings)
    started = time.time()
    start = ["--shadow", "--share", "1", "--manual"]
    _irisflow(stack, "rollout", "start", str(candidate.version), *start)
    try:
        empty, count = _empty_panels(observed.prometheus, "rollout", timeout=120)
        assert not empty, "\n".join(empty)
        assert count >= 19
        (decisions,) = dashboards.annotation_queries(dashboards.load("rollout"))

        def marked() -> bool:
            series = observed.prometheus.query_range(
                decisions.expr, start=started, end=time.time(), step=1
            )
            return any(s["metric"].get("decided_by") == "cli" and s["values"] for s in series)

        _wait("the rollout's start as an annotation", marked, 60)
    finally:
        _irisflow(stack, "rollout", "abort", "--reason", "the test is done")


def test_the_drift_view_renders_from_this_prometheus(observed: Observed, tmp_path: Path) -> None:
    out = Path(os.environ.get("DRIFT_PNG", tmp_path / "drift.png"))
    minutes = (time.time() - observed.started) / 60
    render(observed.prometheus, out, minutes=minutes)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 50_000  # a dozen plots, not an empty canvas
