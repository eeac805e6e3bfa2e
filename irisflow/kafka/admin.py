"""Topic creation and broker reachability, shared by every entry point.

Every topic is created, with the configured partition count, before any worker subscribes: a
topic auto-created by a subscribing consumer gets the broker's default of one partition, and
Faust's table changelogs then fail with ``PartitionsMismatch``.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from irisflow.errors import KafkaUnavailable
from irisflow.settings import KafkaSettings

__all__ = ["ensure_topics", "topic_specs", "wait_for_kafka"]

log = logging.getLogger(__name__)


def topic_specs(kafka: KafkaSettings) -> list[NewTopic]:
    """The topics of DESIGN.md with their partitions and configs."""
    names = kafka.topics
    big = {"max.message.bytes": str(kafka.max_message_bytes)}
    specs = []
    for field, name in names.model_dump().items():
        # Every topic takes the largest record any of them may carry: a dead letter wraps a
        # record near the limit, and a refused record must never fail its own dead letter.
        configs: dict[str, str] = dict(big)
        partitions = kafka.partitions
        if field == "model_updates":
            # The last record per model name is what is live; compaction keeps exactly that
            # (plus recent history until the cleaner runs), and artifacts are large.
            configs = {**big, "cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
            partitions = 1
        elif field == "retrain_requests":
            partitions = 1
        specs.append(
            NewTopic(
                name=name,
                num_partitions=partitions,
                replication_factor=kafka.replication_factor,
                topic_configs=configs,
            )
        )
    return specs


async def wait_for_kafka(bootstrap: str, *, timeout: float = 30.0) -> None:
    """Return once a broker answers a metadata request, or raise KafkaUnavailable."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
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
    await wait_for_kafka(kafka.bootstrap_servers, timeout=timeout)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(kafka) if spec.name not in existing]
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
