"""Several embedded KRaft nodes on 127.0.0.1: a real replicated cluster on one machine.

Why: with one broker, ``acks``, idempotence, ``min.insync.replicas`` and leader elections are
never exercised, and a broker failure is simply an outage. Three nodes of the same jars, each
a broker and a controller (a quorum of three survives one failure), let the fault drills stop
the leader of a partition under load and check that nothing accepted is lost.

A cluster of one node is exactly the single embedded broker irisflow always ran (same data
folder, ports and configuration), so ``irisflow up`` behaves as before unless more brokers are
asked for (``irisflow kafka start --brokers 3`` or ``IRISFLOW_KAFKA_BROKERS=3``).

Node *i* (1-based) listens on ``port + 2(i-1)`` and its controller on
``controller_port + 2(i-1)``: 9092/9093, 9094/9095, 9096/9097 by default.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from irisflow.errors import KafkaRuntimeError
from irisflow.local.broker.runtime import BrokerStatus, EmbeddedKafka, new_cluster_id

__all__ = ["ClusterStatus", "KafkaCluster", "broker_ports"]


def broker_ports(port: int, controller_port: int, brokers: int) -> list[tuple[int, int]]:
    """(client port, controller port) of each node, in node order."""
    return [(port + 2 * i, controller_port + 2 * i) for i in range(brokers)]


@dataclass(frozen=True)
class ClusterStatus:
    brokers: list[BrokerStatus]

    @property
    def running(self) -> bool:
        """Every node runs."""
        return all(b.running for b in self.brokers)

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)


class KafkaCluster:
    """``brokers`` KRaft nodes sharing one cluster id, each with its own folder and ports."""

    def __init__(
        self,
        *,
        libs: Path,
        data_dir: Path,
        brokers: int = 1,
        port: int = 9092,
        controller_port: int = 9093,
        heap: str = "512m",
        max_message_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        if brokers < 1:
            raise KafkaRuntimeError(f"a cluster needs at least one broker, not {brokers}")
        ports = broker_ports(port, controller_port, brokers)
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        folders = (
            [data_dir]
            if brokers == 1
            else [
                data_dir.parent / f"{data_dir.name}-{brokers}-brokers" / f"broker-{i + 1}"
                for i in range(brokers)
            ]
        )
        self.nodes = [
            EmbeddedKafka(
                libs=libs,
                data_dir=folder,
                port=p,
                controller_port=c,
                heap=heap,
                max_message_bytes=max_message_bytes,
                node_id=i + 1,
                voters=voters,
                replicas=brokers,
            )
            for i, ((p, c), folder) in enumerate(zip(ports, folders, strict=True))
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, number: int) -> EmbeddedKafka:
        """Node ``number`` (1-based, as ``irisflow kafka stop-broker N`` counts)."""
        if not 1 <= number <= len(self.nodes):
            raise KafkaRuntimeError(
                f"there is no broker {number}: this cluster has brokers 1 to {len(self.nodes)}"
            )
        return self.nodes[number - 1]

    def status(self) -> ClusterStatus:
        return ClusterStatus([node.status() for node in self.nodes])

    def _share_cluster_id(self) -> None:
        """Every node gets the id of the nodes already formatted (or one new id for all)."""
        ids = {i for node in self.nodes if (i := node.formatted_cluster_id()) is not None}
        if len(ids) > 1:
            raise KafkaRuntimeError(
                f"the brokers' folders belong to different clusters ({', '.join(sorted(ids))}): "
                f"remove {self.nodes[0].data_dir.parent} to start a fresh cluster"
            )
        shared = ids.pop() if ids else new_cluster_id()
        for node in self.nodes:
            node.cluster_id = shared

    def start(self, *, timeout: float = 120.0) -> ClusterStatus:
        """Start every node that is not running and wait until all say they started.

        The nodes are launched together: a controller quorum needs a majority of its voters,
        so no node finishes starting alone.
        """
        self._share_cluster_id()
        launched = []
        try:
            for node in self.nodes:
                launch = node.launch()
                if launch is not None:
                    launched.append((node, launch))
            for node, launch in launched:
                node.wait_started(launch, timeout=timeout)
        except Exception:
            for node, _ in launched:
                node.stop()
            raise
        return self.status()

    def start_broker(self, number: int, *, timeout: float = 120.0) -> BrokerStatus:
        node = self.node(number)
        self._share_cluster_id()
        node.start(timeout=timeout)
        return node.status()

    def stop_broker(self, number: int, *, kill: bool = False) -> bool:
        """Stop one node: cleanly (SIGTERM, leadership handed over) or ``kill``ed (SIGKILL)."""
        node = self.node(number)
        return node.kill() if kill else node.stop()

    def stop(self) -> bool:
        """Stop every node; ``True`` if any was running.

        All are signalled at once: nodes stopped one after another would lose their quorum
        half-way and wait for a controller that is gone before shutting down.
        """
        for node in self.nodes:
            pid = node.pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        stopped = [node.stop() for node in self.nodes]
        return any(stopped)
