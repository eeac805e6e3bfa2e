"""A real three-broker KRaft cluster for the fault drills, and their loss/duplication reports.

The cluster is session-scoped and started only when a test asks for it (pytest builds a
fixture on first use): ``-m "not cluster"`` skips the drills and never starts a JVM for them.
Its six ports (three brokers, three controllers, ``port + 2i`` as :class:`KafkaCluster` lays
them out) are a free run chosen at start, so it runs beside the single broker of the rest of
the suite and beside a developer's own ``irisflow up``. Each JVM gets a modest heap.

Every drill writes its checker table (:mod:`tests.cluster.checker`) to a file in its own
temporary folder and to ``test-artifacts/fault-report.md``, and the tables are printed at the
end of the run whatever ``-s`` says, so ``make test`` shows the numbers.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from irisflow.errors import KafkaUnavailable
from irisflow.kafka.admin import describe_partitions
from irisflow.local.broker.cluster import KafkaCluster
from irisflow.local.broker.runtime import ensure_kafka_jars, port_is_free
from irisflow.settings import KafkaSettings
from tests.conftest import ROOT

BROKERS = 3
HEAP = "384m"
REPORT = ROOT / "test-artifacts" / "fault-report.md"

_reports: list[str] = []
"""Every table written this session, printed by :func:`pytest_terminal_summary`."""


def _free_run(length: int, attempts: int = 200) -> int:
    """The first port of ``length`` consecutive ports that are all free now."""
    for _ in range(attempts):
        first = random.randrange(20000, 30000)
        if all(port_is_free(p) for p in range(first, first + length)):
            return first
    raise RuntimeError(f"no {length} consecutive free ports between 20000 and 30000")


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three KRaft nodes (each broker and controller) on 127.0.0.1, stopped at session end."""
    cache = Path(os.environ.get("IRISFLOW_CACHE_DIR", Path.home() / ".cache" / "irisflow"))
    folder = tmp_path_factory.mktemp("cluster")
    first = _free_run(2 * BROKERS)
    cluster = KafkaCluster(
        libs=ensure_kafka_jars(cache),
        data_dir=folder / "kafka",
        brokers=BROKERS,
        port=first,
        controller_port=first + 1,
        heap=HEAP,
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def _under_replicated(bootstrap: str) -> list[str]:
    """Partitions (of every topic) whose in-sync replicas are fewer than their replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        names = await admin.list_topics()
        described = await admin.describe_topics(names) if names else []
    finally:
        await admin.close()
    return [
        f"{topic['topic']}[{p['partition']}]"
        for topic in described
        for p in topic.get("partitions", [])
        if len(p["isr"]) < len(p["replicas"]) or p["leader"] < 0
    ]


def whole(cluster: KafkaCluster, timeout: float = 120.0) -> None:
    """Every broker running and every partition fully in sync (what a drill starts from)."""
    cluster.start(timeout=timeout)
    deadline = time.monotonic() + timeout
    lagging: list[str] | str = "not asked yet"
    while time.monotonic() < deadline:
        try:
            lagging = asyncio.run(_under_replicated(cluster.bootstrap))
        except Exception as exc:  # a broker still starting: ask again
            lagging = repr(exc)
        if not lagging:
            return
        time.sleep(0.5)
    raise AssertionError(f"the cluster did not get back in sync within {timeout:.0f}s: {lagging}")


def leader(kafka: KafkaSettings, topic: str, partition: int) -> int | None:
    """The broker leading ``topic[partition]`` (``None``: the broker asked did not answer,
    which may happen while one of its peers is down and not yet fenced)."""
    try:
        states = asyncio.run(describe_partitions(kafka))
    except (KafkaError, KafkaUnavailable):
        return None
    return next(s.leader for s in states if (s.topic, s.partition) == (topic, partition))


@pytest.fixture
def cluster(kafka_cluster: KafkaCluster) -> KafkaCluster:
    """The session's cluster, whole again whatever the drill before did to it."""
    whole(kafka_cluster)
    return kafka_cluster


Reporter = Callable[[str], Path]


@pytest.fixture
def report(tmp_path: Path) -> Reporter:
    """``report(table)``: keep a drill's table (a file here, the shared file, the summary)."""

    def write(table: str) -> Path:
        path = tmp_path / "fault-report.md"
        path.write_text(table)
        if not _reports:  # the shared file holds this session's drills only
            REPORT.unlink(missing_ok=True)
        _reports.append(table)
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        with REPORT.open("a") as shared:
            shared.write(table + "\n")
        return path

    return write


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _reports:
        return
    terminalreporter.section("fault drills on the three-broker cluster: what the checker read")
    for table in _reports:
        terminalreporter.write_line(table)
    terminalreporter.write_line(f"(also in {REPORT})")
