"""A local Prometheus for ``irisflow up``: the embedded stack's metrics over time, without Docker.

When the ``prometheus`` binary is installed (Debian package ``prometheus``), ``irisflow up``
writes a config that scrapes its worker, gateway and trainer into ``<home>/prometheus.yml`` and
runs Prometheus on 127.0.0.1:9090 (``prometheus.port``, ``IRISFLOW_PROMETHEUS_PORT``) with its
data in ``<home>/prometheus``; it stops with the stack. Without the binary, ``up`` logs one line
and runs as before. The job names are those of ``deploy/prometheus/prometheus.yml``, so the
Grafana dashboards and the alert rules select the same series on a laptop and in Docker.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from irisflow.settings import Settings

__all__ = [
    "ALERT_RULES",
    "GATEWAY_JOB",
    "JOBS",
    "TRAINER_JOB",
    "WORKER_JOB",
    "local_prometheus",
    "local_targets",
    "prometheus_config",
    "write_config",
]

log = logging.getLogger(__name__)

WORKER_JOB = "irisflow-worker"
GATEWAY_JOB = "irisflow-gateway"
TRAINER_JOB = "irisflow-trainer"
JOBS = (WORKER_JOB, GATEWAY_JOB, TRAINER_JOB)

#: Where the repo keeps the alert rules, relative to the params file's folder.
ALERT_RULES = Path("deploy") / "prometheus" / "alerts.yml"
_STOPPED = {0, -signal.SIGTERM, -signal.SIGINT}


def _duration(seconds: float) -> str:
    """Prometheus durations have no decimals: ``1.5`` s is written ``1500ms``."""
    return f"{max(1, round(seconds * 1000))}ms"


def _reachable(host: str) -> str:
    """A bind address as a scrape address: a wildcard bind is scraped on loopback."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def local_targets(settings: Settings) -> dict[str, list[str]]:
    """Scrape targets of the processes ``irisflow up`` runs, by job name."""
    return {
        WORKER_JOB: [f"{_reachable(settings.worker.host)}:{settings.worker.port}"],
        GATEWAY_JOB: [f"{_reachable(settings.gateway.host)}:{settings.gateway.port}"],
        TRAINER_JOB: [f"{_reachable(settings.retraining.host)}:{settings.retraining.port}"],
    }


def prometheus_config(
    targets: Mapping[str, Sequence[str]],
    *,
    interval_seconds: float,
    rule_files: Sequence[Path] = (),
) -> dict[str, Any]:
    """A prometheus.yml scraping ``targets`` (job name -> host:port list) every interval."""
    every = _duration(interval_seconds)
    return {
        "global": {
            "scrape_interval": every,
            "scrape_timeout": every,
            "evaluation_interval": every,
            "external_labels": {"system": "irisflow"},
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(hosts)}]}
            for job, hosts in targets.items()
        ],
    }


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
    return path


def _stop(process: subprocess.Popen[bytes], log_path: Path) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.returncode not in _STOPPED:
        log.warning("prometheus exited with code %s; see %s", process.returncode, log_path)


def _started(process: subprocess.Popen[bytes], address: str, log_path: Path) -> bool:
    """False when Prometheus dies at once: a busy port or a bad flag fails within a second."""
    try:
        code = process.wait(1.0)
    except subprocess.TimeoutExpired:
        return True
    log.warning(
        "prometheus exited with code %s at start (is %s taken, e.g. by the Debian package's own "
        "service? set IRISFLOW_PROMETHEUS_PORT); see %s",
        code,
        address,
        log_path,
    )
    return False


@contextlib.contextmanager
def local_prometheus(settings: Settings) -> Iterator[str | None]:
    """Run Prometheus for the local stack while the block runs; yields its URL, or None."""
    config = settings.prometheus
    binary = shutil.which("prometheus")
    if not config.enabled or binary is None:
        if config.enabled:
            log.info("no `prometheus` binary (Debian package prometheus): not collecting metrics")
        yield None
        return
    rules = settings.params_path.parent / ALERT_RULES
    path = write_config(
        settings.home / "prometheus.yml",
        prometheus_config(
            local_targets(settings),
            interval_seconds=config.scrape_interval_seconds,
            rule_files=[rules.resolve()] if rules.exists() else [],
        ),
    )
    address = f"{config.host}:{config.port}"
    log_path = settings.home / "prometheus.log"
    with log_path.open("ab") as output:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={path}",
                f"--storage.tsdb.path={settings.home / 'prometheus'}",
                f"--web.listen-address={address}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    if not _started(process, address, log_path):
        yield None
        return
    url = f"http://{_reachable(config.host)}:{config.port}"
    log.info("prometheus at %s (scraping %s; log in %s)", url, ", ".join(JOBS), log_path)
    try:
        yield url
    finally:
        _stop(process, log_path)
