"""Topic creation and broker reachability, shared by every entry point.

Every topic is created, with the configured partition count, before any worker subscribes: a
topic auto-created by a subscribing consumer gets the broker's default of one partition, and
Faust's table changelogs then fail with ``PartitionsMismatch``.

Replication is checked against the cluster before anything is created: ``kafka.
replication_factor`` (default: as many replicas as brokers, at most 3) and ``kafka.
min_insync_replicas`` (default: 2 from 3 replicas on), so a typo fails at start with what to
change rather than as a topic that cannot take a single ``acks=all`` write.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from irisflow.errors import ConfigError, KafkaUnavailable
from irisflow.kafka.clients import connection_options
from irisflow.settings import KafkaSettings, default_min_insync

__all__ = [
    "PartitionState",
    "Replication",
    "admin_client",
    "describe_partitions",
    "ensure_topics",
    "replication_for",
    "resolve_replication",
    "topic_specs",
    "wait_for_kafka",
]


@dataclass(frozen=True)
class Replication:
    """How every irisflow topic is replicated on the cluster it runs on."""

    factor: int
    min_insync: int


def replication_for(kafka: KafkaSettings, brokers: int) -> Replication:
    """The replication the settings ask for on a cluster of ``brokers`` brokers, or why not."""
    factor = kafka.replication_factor or min(3, brokers)
    if factor > brokers:
        raise ConfigError(
            f"kafka.replication_factor is {factor} but the cluster at {kafka.bootstrap_servers} "
            f"has {brokers} broker(s): set kafka.replication_factor to at most {brokers} "
            "(or unset it), or add brokers (irisflow kafka start --brokers 3)"
        )
    least = kafka.min_insync_replicas or default_min_insync(factor)
    if least > factor:
        raise ConfigError(
            f"kafka.min_insync_replicas ({least}) cannot exceed the replication factor "
            f"({factor}): no acks=all write could be acknowledged"
        )
    return Replication(factor, least)


async def _brokers(admin: AIOKafkaAdminClient) -> int:
    cluster = await admin.describe_cluster()
    return max(1, len(cluster.get("brokers") or []))


async def resolve_replication(kafka: KafkaSettings, *, timeout: float = 30.0) -> KafkaSettings:
    """``kafka`` with the replication it gets on the cluster spelled out (what Faust needs for
    the topics it creates itself, such as its tables' changelogs)."""
    await wait_for_kafka(kafka, timeout=timeout)
    admin = admin_client(kafka)
    await admin.start()
    try:
        replication = replication_for(kafka, await _brokers(admin))
    finally:
        await admin.close()
    return kafka.model_copy(
        update={
            "replication_factor": replication.factor,
            "min_insync_replicas": replication.min_insync,
        }
    )


log = logging.getLogger(__name__)


def topic_specs(kafka: KafkaSettings, replication: Replication | None = None) -> list[NewTopic]:
    """The topics of DESIGN.md with their partitions, replication and configs."""
    if replication is None:
        replication = replication_for(kafka, kafka.replication_factor or 1)
    names = kafka.topics
    big = {
        "max.message.bytes": str(kafka.max_message_bytes),
        "min.insync.replicas": str(replication.min_insync),
    }
    specs = []
    for field, name in names.model_dump().items():
        # Every topic takes the largest record any of them may carry: a dead letter wraps a
        # record near the limit, and a refused record must never fail its own dead letter.
        configs: dict[str, str] = dict(big)
        partitions = kafka.partitions
        if field in ("model_updates", "rollouts"):
            # The last record per model name is what is live; compaction keeps exactly that
            # (plus recent history until the cleaner runs), and artifacts are large.
            configs = {**big, "cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
            partitions = 1
        elif field in ("retrain_requests", "rollout_commands"):
            partitions = 1
        specs.append(
            NewTopic(
                name=name,
                num_partitions=partitions,
                replication_factor=replication.factor,
                topic_configs=configs,
            )
        )
    return specs


def admin_client(kafka: KafkaSettings, **overrides: Any) -> AIOKafkaAdminClient:
    """An admin client of the cluster ``kafka`` names, authenticated as its settings say."""
    return AIOKafkaAdminClient(**{**connection_options(kafka), **overrides})


async def wait_for_kafka(target: KafkaSettings | str, *, timeout: float = 30.0) -> None:
    """Return once a broker answers a metadata request, or raise KafkaUnavailable.

    ``target``: the settings of the cluster, or a bare bootstrap address (plain text)."""
    kafka = KafkaSettings(bootstrap=target) if isinstance(target, str) else target
    bootstrap = kafka.bootstrap_servers
    deadline = asyncio.get_running_loop().time() + timeout
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        admin = admin_client(kafka, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last = exc
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    raise KafkaUnavailable(
        f"no Kafka broker answered at {bootstrap} within {timeout:.0f}s ({last!r}): start one "
        "with `irisflow kafka start`, or fix IRISFLOW_KAFKA_BOOTSTRAP"
    )


async def ensure_topics(kafka: KafkaSettings, *, timeout: float = 30.0) -> list[str]:
    """Create the missing topics; return the names that were created (idempotent)."""
    await wait_for_kafka(kafka, timeout=timeout)
    admin = admin_client(kafka)
    await admin.start()
    try:
        replication = replication_for(kafka, await _brokers(admin))
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(kafka, replication) if spec.name not in existing]
        if not missing:
            return []
        try:
            await admin.create_topics(missing)
        except TopicAlreadyExistsError:
            pass  # another process created them between our list and create
        except KafkaConnectionError as exc:
            raise KafkaUnavailable(f"creating topics failed: {exc}") from exc
        created = [spec.name for spec in missing]
        log.info("created topics %s", ", ".join(created))
        return created
    finally:
        await admin.close()


@dataclass(frozen=True)
class PartitionState:
    """Who leads a partition and which replicas are in sync (leader -1: none, it is offline)."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


async def describe_partitions(
    kafka: KafkaSettings, *, timeout: float = 10.0
) -> list[PartitionState]:
    """Leader, replicas and ISR of every partition of irisflow's topics (those that exist)."""
    await wait_for_kafka(kafka, timeout=timeout)
    admin = admin_client(kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [n for n in kafka.topics.model_dump().values() if n in existing]
        described = await admin.describe_topics(names) if names else []
    finally:
        await admin.close()
    states = [
        PartitionState(
            topic=topic["topic"],
            partition=int(p["partition"]),
            leader=int(p["leader"]),
            replicas=tuple(int(r) for r in p["replicas"]),
            isr=tuple(int(r) for r in p["isr"]),
        )
        for topic in described
        for p in topic.get("partitions", [])
    ]
    return sorted(states, key=lambda s: (s.topic, s.partition))
