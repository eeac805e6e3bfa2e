"""The broker leading a requests partition fails under steady HTTP traffic: nothing is lost.

Careful clients (:mod:`tests.cluster.traffic`) post predictions and their feedback through a
gateway to a worker, on a three-broker cluster (replication 3, ``min.insync.replicas`` 2). A
few seconds in, the leader of requests partition 0 is stopped (cleanly: it hands its
leaderships over at once; or with ``kill -9``: its partitions stay leaderless until the
controller fences it, a broker session later), and a few seconds after that it is started
again. Afterwards the checker reads every topic: each request a client saw accepted is on the
requests topic and answered, no answer is wrong for its input, each accepted feedback is on
the feedback topic and joined into a labeled sample, and no client gave up or was refused.

Both drills share one stack (worker and gateway; each drill counts only its own request ids)
to keep the cluster tests within their few minutes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from irisflow.local.broker.cluster import KafkaCluster
from tests.cluster.checker import settled
from tests.cluster.conftest import Reporter, leader, whole
from tests.cluster.traffic import Traffic
from tests.e2e.conftest import Stack, eventually, launch_stack, stop_all

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]

SECONDS = 20.0
FAIL_AT = 4.0
RESTART_AFTER = 5.0
"""Seconds the broker stays down (past the 6 s session of a killed one, counted from its kill,
once its partitions have moved)."""


@pytest.fixture(scope="module")
def serving(
    kafka_cluster: KafkaCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A worker and a gateway on the cluster, three partitions (a leader on each broker)."""
    whole(kafka_cluster)
    stack = launch_stack(
        tmp_path_factory.mktemp("leader-failover"),
        kafka_cluster.bootstrap,
        **{"kafka.partitions": 3, "gateway.predict_timeout_seconds": 5.0},
    )
    try:
        yield stack
    finally:
        stop_all(stack)


@pytest.mark.parametrize("kill", [False, True], ids=["stopped", "killed"])
def test_the_requests_leader_failing_under_load_loses_no_accepted_request_or_feedback(
    cluster: KafkaCluster, serving: Stack, report: Reporter, kill: bool
) -> None:
    kafka = serving.settings.kafka
    requests = kafka.topics.requests
    victim = leader(kafka, requests, 0)
    assert victim is not None
    moved: list[float] = []

    def fail_and_recover() -> None:
        began = time.monotonic()
        cluster.stop_broker(victim, kill=kill)
        if eventually(lambda: leader(kafka, requests, 0) not in (None, victim)):
            moved.append(time.monotonic() - began)
        time.sleep(max(0.0, began + RESTART_AFTER - time.monotonic()))
        cluster.start_broker(victim)

    run = uuid.uuid4().hex[:8]
    traffic = Traffic(serving.gateway_url, run=run)
    began = time.monotonic()
    ledger = traffic.go(SECONDS, faults=[(FAIL_AT, fail_and_recover)])
    ledger.expect_joined = True
    sent = time.monotonic() - began
    assert moved, f"the leadership of {requests}[0] never left broker {victim}"
    for role, process in serving.processes.items():
        assert process.poll() is None, f"{role} exited with {process.returncode}"
    result = settled(kafka, ledger, run=run)
    how = "killed (kill -9)" if kill else "stopped (SIGTERM)"
    report(
        result.table(
            f"broker {victim}, leader of requests[0], {how} under load, restarted",
            f"leadership of requests[0] moved {moved[0]:.1f} s after the {how.split()[0]}; "
            f"{traffic.rate:.0f} predictions/s (+ feedback) from {traffic.lanes} careful "
            f"clients for {SECONDS:.0f} s, drill over after {sent:.0f} s, "
            f"checked {time.monotonic() - began - sent:.0f} s later",
        )
    )
    assert result.failures() == []
    assert ledger.gave_up == []
    assert ledger.refused == []
    assert len(ledger.accepted) == len(ledger.attempted) > 0.9 * SECONDS * traffic.rate
