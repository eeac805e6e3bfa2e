"""``irisflow up``: the whole system on one machine, each role in its own process (broker,
worker, gateway, retraining service), kept running.

Roles run as child processes (``irisflow worker``, ``irisflow gateway``, ``irisflow trainer``)
exactly as they would on separate hosts, so what works here works when they are spread out.

A role that exits on its own is restarted after a pause that doubles with each exit (1 s, 2 s,
4 s…, at most 30 s): one bad moment must not cost the whole stack, and a role that keeps failing
must not spin. A role that exits five times within five minutes is broken rather than unlucky:
then the last lines it wrote to stderr are shown (each child's stderr still reaches the terminal;
a bounded tail is kept) and everything stops. Ctrl-C (or SIGTERM) stops the children first,
then Prometheus and the broker if this command started them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx

from irisflow.errors import IrisflowError
from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.model_topic import read_live_update
from irisflow.local.prometheus import local_prometheus
from irisflow.local.supervisor import Role, Supervisor
from irisflow.settings import Settings

__all__ = ["run_local_stack"]

log = logging.getLogger(__name__)

_CURL = (
    "curl -s -XPOST {url}/v1/predict -H 'content-type: application/json' "
    '-d \'{{"features":{{"sepal_length":5.1,"sepal_width":3.5,'
    '"petal_length":1.4,"petal_width":0.2}}}}\''
)

_NO_PROMETHEUS = "no local Prometheus (apt-get install prometheus)"
_ROLES = ("worker", "gateway", "trainer")


def _irisflow(settings: Settings, *args: str) -> list[str]:
    return [sys.executable, "-m", "irisflow.cli", "--params", str(settings.params_path), *args]


@contextlib.contextmanager
def _broker(settings: Settings) -> Iterator[None]:
    """Start the embedded broker unless one runs (or an external cluster is configured)."""
    if not settings.kafka.embedded:
        log.info("using the Kafka cluster at %s", settings.kafka.bootstrap)
        yield
        return
    from irisflow.local.broker.embedded import embedded_cluster

    broker = embedded_cluster(settings)
    started_here = not any(b.running for b in broker.status().brokers)
    if started_here:
        brokers = settings.kafka.embedded_brokers
        what = "broker" if brokers == 1 else f"cluster of {brokers} brokers"
        log.info("starting the embedded Kafka %s (first run downloads its jars)…", what)
    broker.start()
    try:
        yield
    finally:
        if started_here:
            log.info("stopping the embedded Kafka broker")
            broker.stop()


def _wait_ready(
    urls: list[str],
    supervisor: Supervisor,
    stopping: Callable[[], bool],
    timeout: float = 120.0,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping():
        supervisor.tick()
        if all(_answers(url) for url in urls):
            return
        time.sleep(0.5)
    if stopping():
        return
    raise IrisflowError(f"{' and '.join(urls)} did not report ready within {timeout:.0f}s")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _banner(settings: Settings, prometheus_url: str | None) -> str:
    url = f"http://{settings.gateway.host}:{settings.gateway.port}"
    return (
        f"\nirisflow is up.\n  dashboard {url}/\n"
        f"  gateway   {url}  (API docs {url}/docs)\n"
        f"  metrics   {prometheus_url or _NO_PROMETHEUS}\n"
        f"  worker    http://{settings.worker.host}:{settings.worker.port}/metrics\n"
        f"  trainer   http://{settings.retraining.host}:{settings.retraining.port}/metrics"
        " (retrains on feedback, drift, `irisflow retrain`)\n"
        f"  try       {_CURL.format(url=url)}\n"
        "  restarts  a role that exits is restarted (1 s, 2 s, 4 s… at most 30 s); five exits "
        "within five minutes stop the stack\n  stop      Ctrl-C\n"
    )


def run_local_stack(settings: Settings) -> None:
    stop_requested = False

    def _request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    with _broker(settings), local_prometheus(settings) as prometheus_url:
        asyncio.run(ensure_topics(settings.kafka))
        if asyncio.run(read_live_update(settings.kafka, settings.model_name)) is None:
            log.info("no model is live yet: training the first one")
            subprocess.run(_irisflow(settings, "train", "--trigger", "bootstrap"), check=True)
        env = dict(os.environ)
        supervisor = Supervisor([Role(name, _irisflow(settings, name), env=env) for name in _ROLES])
        previous = signal.signal(signal.SIGTERM, _request_stop)
        previous_int = signal.signal(signal.SIGINT, _request_stop)
        try:
            supervisor.start()
            url = f"http://{settings.gateway.host}:{settings.gateway.port}"
            worker_url = f"http://{settings.worker.host}:{settings.worker.port}"
            _wait_ready(
                [f"{url}/health/ready", f"{worker_url}/health"],
                supervisor,
                lambda: stop_requested,
            )
            if not stop_requested:
                print(_banner(settings, prometheus_url), flush=True)
            while not stop_requested:
                supervisor.tick()
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
            log.info("stopping %s (restarts: %s)", ", ".join(_ROLES), supervisor.status())
            supervisor.stop()
