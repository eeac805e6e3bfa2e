"""A broker killed during a retraining, and the whole cluster restarted, under a full stack.

Two workers, a gateway and the trainer run on the three-broker cluster (one stack for both
drills; each counts only its own request ids, versions and labels).

- ``kill -9`` of the leader of model-updates while the trainer retrains: the new version is
  published once (one record on the topic, one decision) and both workers and the gateway
  serve it.
- Every broker stopped, then started again: the workers, the gateway and the trainer are the
  same processes afterwards (nothing restarted them) and answer again; predictions answered
  before the restart meet their feedback after it (the join table came through), nothing
  accepted is lost, and the trainer counts each labeled sample on the topic once (its
  consumer group rejoined and resumed without reading a sample twice).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from irisflow.local.broker.cluster import KafkaCluster
from irisflow.local.broker.runtime import free_port
from tests.cluster.checker import Ledger, read_topics, settled
from tests.cluster.conftest import Reporter, leader, whole
from tests.cluster.traffic import Traffic
from tests.e2e.conftest import Stack, eventually, launch_stack, live_version, stop_all
from tests.factories import SETOSA

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]

LABELS_SEEN = "irisflow_trainer_labeled_samples_total"
NOISE = ("aiokafka", "Connect", "Failed fetch", "metadata", "oordinator", "Heartbeat")
"""What a Kafka client logs while a broker is down, left out of a failed drill's story."""


@dataclass
class Full:
    """The stack and the web ports of its two workers."""

    stack: Stack
    worker_ports: tuple[int, int]

    def log(self, role: str) -> str:
        return (self.stack.logs / f"{role}.log").read_text(errors="replace")

    def story(self, since: str) -> str:
        """What the trainer and the workers said of their own (the Kafka clients' connection
        noise left out) from the trainer's line containing ``since`` on: a failed drill's
        account of where the new version stopped."""
        told = []
        for role in ("trainer", "worker", "worker-2"):
            lines = self.log(role).splitlines()
            start = next((i for i, line in enumerate(lines) if since in line), 0)
            own = [line for line in lines[start:] if not any(n in line for n in NOISE)]
            told.append(f"--- {role} ---\n" + "\n".join(own[-40:]))
        return "\n".join(told)

    def served(self) -> list[int | None]:
        """The model version each worker serves (``None``: it does not answer)."""
        versions: list[int | None] = []
        for port in self.worker_ports:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
                versions.append(health["model_version"])
            except (httpx.HTTPError, ValueError, KeyError):
                versions.append(None)
        return versions

    def pids(self) -> dict[str, int | None]:
        """Each role's pid, or ``None`` for one that exited."""
        return {r: p.pid if p.poll() is None else None for r, p in self.stack.processes.items()}

    def labels_seen(self) -> float | None:
        """The trainer's count of labeled samples taken (``None``: it does not answer)."""
        port = self.stack.settings.retraining.port
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith(LABELS_SEEN + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def answers(self) -> bool:
        try:
            response = httpx.post(
                f"{self.stack.gateway_url}/v1/predict", json={"features": SETOSA}, timeout=10
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200


@pytest.fixture(scope="module")
def full(kafka_cluster: KafkaCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Full]:
    """Two workers, a gateway and the trainer (retraining only when asked) on the cluster."""
    whole(kafka_cluster)
    stack = launch_stack(
        tmp_path_factory.mktemp("full-stack"),
        kafka_cluster.bootstrap,
        roles=("worker", "gateway", "trainer"),
        **{
            "retraining.port": free_port(),
            "retraining.min_new_labels": 100000,
            "gateway.predict_timeout_seconds": 5.0,
        },
    )
    try:
        second = free_port()
        stack.start("worker-2", "worker", "--port", str(second))
        ready = Full(stack, (stack.settings.worker.port, second))
        assert eventually(lambda: "trainer ready" in ready.log("trainer"), 90)
        assert eventually(lambda: None not in ready.served(), 90)
        yield ready
    finally:
        stop_all(stack)


def _irisflow(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRISFLOW_")}
    command = [sys.executable, "-m", "irisflow.cli", "--params", str(stack.params), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, env=env
    )


def test_a_broker_killed_during_a_retraining_leaves_one_new_version_every_worker_serves(
    cluster: KafkaCluster, full: Full, report: Reporter
) -> None:
    kafka = full.stack.settings.kafka
    new = live_version(full.stack) + 1
    pids = full.pids()
    victim = leader(kafka, kafka.topics.model_updates, 0)
    assert victim is not None
    asked_before = full.log("trainer").count("retraining requested by cli")
    asked = _irisflow(full.stack, "retrain", "--reason", "fault drill")
    assert asked.returncode == 0, asked.stderr[-2000:]
    # killed once the trainer says it retrains (its training takes about 2 s here)
    assert eventually(
        lambda: full.log("trainer").count("retraining requested by cli") > asked_before
    )
    began, killed_at = time.monotonic(), time.time()
    cluster.stop_broker(victim, kill=True)
    swapped = eventually(lambda: full.served() == [new, new], 120)
    took = time.monotonic() - began
    assert swapped, f"the workers serve {full.served()}, not version {new}:\n" + full.story(
        "fault drill"
    )
    assert live_version(full.stack) == new
    assert full.pids() == pids
    ledger = Ledger(versions=set(range(1, new + 1)), retrains_acknowledged=1)
    result = settled(kafka, ledger, run="retraining")  # no traffic of its own: none counted
    report(
        result.table(
            f"broker {victim}, leader of model-updates, killed (kill -9) during a retraining",
            f"version {new} served by both workers and the gateway {took:.1f} s after the kill",
        )
    )
    assert result.failures() == []
    assert result.row("model-updates").duplicated == 0
    assert result.row("model-updates").records == new
    published = [r.json() or {} for r in read_topics(kafka)[kafka.topics.model_updates]]
    built = next(body["created_at"] for body in published if body.get("version") == new)
    assert built > killed_at, "the training ended before the kill: the drill tested nothing"
    decisions = (full.stack.settings.registry_dir / "decisions.jsonl").read_text()
    assert decisions.count(f'"version": {new}') == 1


def test_the_whole_cluster_restarted_loses_no_join_and_counts_no_label_twice(
    cluster: KafkaCluster, full: Full, report: Reporter
) -> None:
    kafka = full.stack.settings.kafka
    url = full.stack.gateway_url
    pids = full.pids()
    seen_before = full.labels_seen()
    labeled_before = len(read_topics(kafka)[kafka.topics.labeled])
    runs = [uuid.uuid4().hex[:8] for _ in range(3)]
    before = Traffic(url, run=runs[0]).go(8.0)
    waiting = Traffic(url, run=runs[1], feedback=False).go(4.0)

    began = time.monotonic()
    cluster.stop()
    stopped = time.monotonic() - began
    whole(cluster)
    back = eventually(full.answers, 120)
    recovered = time.monotonic() - began
    assert back, "the stack did not answer again after the cluster restart"
    assert full.pids() == pids, "a process exited while the cluster was down"

    Traffic(url, run=runs[1]).feedback_for(waiting)
    after = Traffic(url, run=runs[2]).go(8.0)
    ledgers = [before, waiting, after]
    for ledger in ledgers:
        ledger.expect_joined = True
    results = [settled(kafka, ledger, run=run) for run, ledger in zip(runs, ledgers, strict=True)]
    labeled = len(read_topics(kafka)[kafka.topics.labeled]) - labeled_before

    def counted() -> float:
        return (full.labels_seen() or 0.0) - (seen_before or 0.0)

    eventually(lambda: counted() >= labeled, 60)
    what = ("before the restart", "predicted before, feedback after", "after the restart")
    for run, result, when in zip(runs, results, what, strict=True):
        report(
            result.table(
                f"every broker stopped and started again: traffic {when} ({run})",
                f"cluster stopped in {stopped:.0f} s; the stack answered again {recovered:.0f} s "
                f"after the stop began; the trainer counted {counted():.0f} labeled samples "
                f"for the {labeled} on the topic",
            )
        )
    assert full.pids() == pids
    for result in results:
        assert result.failures() == []
        assert result.ledger.gave_up == result.ledger.refused == []
    assert seen_before is not None
    assert counted() == labeled, f"the trainer counted {counted():.0f}, the topic has {labeled}"
