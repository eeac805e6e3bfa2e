"""Model versions the gateway knows of: every update read from Kafka, plus the registry folder.

The gateway may run on a host without the trainer's registry folder, so Kafka is its source: it
reads the compacted ``model-updates`` topic from the beginning (no consumer group) and keeps
every version it sees, with its artifact, for as long as it runs. Compaction keeps only the
latest record per model name once the log cleaner has run, so versions published long before
this gateway started, and compacted away, are only listed when the registry folder
(``settings.registry_dir``) is readable here too; that is the documented limitation of
``GET /v1/models`` on a host of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from irisflow.errors import IrisflowError, ModelNotFound, SchemaError
from irisflow.kafka.clients import make_consumer
from irisflow.registry import LocalRegistry, sha256_hex
from irisflow.schemas import ModelMetadata, ModelUpdate
from irisflow.settings import KafkaSettings

__all__ = ["KnownVersion", "ModelHistory", "follow_model_updates"]

log = logging.getLogger(__name__)

Source = Literal["kafka", "registry"]


@dataclass(frozen=True)
class KnownVersion:
    metadata: ModelMetadata
    sources: tuple[Source, ...]


class ModelHistory:
    """What is live, and every version seen on Kafka or found in the registry folder."""

    def __init__(self, model_name: str, registry_dir: Path) -> None:
        self.model_name = model_name
        self.registry = LocalRegistry(registry_dir)
        self.live: ModelMetadata | None = None
        self._seen: dict[int, ModelUpdate] = {}

    def record(self, update: ModelUpdate) -> bool:
        """Keep ``update``; one whose bytes fail their checksum is refused (it is live nowhere)."""
        if sha256_hex(update.artifact) != update.sha256:
            log.error(
                "gateway: ignoring %s version %d: artifact checksum mismatch",
                update.model_name,
                update.version,
            )
            return False
        self._seen[update.version] = update
        return True

    def make_live(self, update: ModelUpdate) -> bool:
        if not self.record(update):
            return False
        self.live = update.metadata()
        return True

    def _registry_versions(self) -> dict[int, ModelMetadata]:
        found: dict[int, ModelMetadata] = {}
        for version in self.registry.versions():
            try:
                found[version] = self.registry.metadata(version)
            except (IrisflowError, ValueError, OSError) as exc:
                log.warning("registry version %d unreadable: %s", version, exc)
        return found

    def versions(self) -> list[KnownVersion]:
        """Every known version, oldest first; Kafka's copy wins when both have it."""
        on_disk = self._registry_versions()
        known = []
        for version in sorted(set(on_disk) | set(self._seen)):
            sources: tuple[Source, ...] = ()
            if version in self._seen:
                sources += ("kafka",)
            if version in on_disk:
                sources += ("registry",)
            seen = self._seen.get(version)
            meta = seen.metadata() if seen is not None else on_disk[version]
            known.append(KnownVersion(metadata=meta, sources=sources))
        return known

    def version(self, version: int) -> KnownVersion:
        for known in self.versions():
            if known.metadata.version == version:
                return known
        raise ModelNotFound(self._unknown(version))

    def update_for(self, version: int) -> tuple[ModelUpdate, Source]:
        """The full update to republish: from the registry folder, else from Kafka's history."""
        if version in self.registry.versions():
            return self.registry.get(version), "registry"
        if version in self._seen:
            return self._seen[version], "kafka"
        raise ModelNotFound(self._unknown(version))

    def _unknown(self, version: int) -> str:
        return (
            f"{self.model_name} version {version} is unknown to this gateway (neither seen on "
            f"Kafka since it started nor in the registry at {self.registry.root})"
        )


def _decode(record: ConsumerRecord[bytes, bytes], model_name: str) -> ModelUpdate | None:
    if record.key is not None and record.key.decode(errors="replace") != model_name:
        return None
    try:
        return ModelUpdate.from_bytes(record.value)
    except SchemaError as exc:
        log.error(
            "%s[%d] offset %d: unreadable model update skipped: %s",
            record.topic,
            record.partition,
            record.offset,
            exc,
        )
        return None


async def _assign_from_beginning(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    while not consumer.partitions_for_topic(topic):
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return tps


async def _catch_up(
    consumer: AIOKafkaConsumer, topic: str, history: ModelHistory
) -> list[ModelUpdate]:
    """Record every version up to the end offsets; return what should go live, in order: the
    latest of those, then anything that arrived meanwhile."""
    tps = await _assign_from_beginning(consumer, topic)
    end = await consumer.end_offsets(tps)
    latest: tuple[int, ModelUpdate] | None = None
    later: list[ModelUpdate] = []
    while any([await consumer.position(tp) < end[tp] for tp in tps]):
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            for record in records:
                update = _decode(record, history.model_name)
                if update is None:
                    continue
                if record.offset >= end[TopicPartition(record.topic, record.partition)]:
                    later.append(update)
                elif history.record(update) and (latest is None or record.timestamp >= latest[0]):
                    latest = (record.timestamp, update)
    return ([latest[1]] if latest else []) + later


async def follow_model_updates(
    kafka: KafkaSettings, history: ModelHistory, on_live: Callable[[ModelMetadata], None]
) -> None:
    """Read the topic from the beginning, keep every version, then follow what goes live."""
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        for caught in await _catch_up(consumer, kafka.topics.model_updates, history):
            if history.make_live(caught):
                on_live(caught.metadata())
        while True:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    update = _decode(record, history.model_name)
                    if update is not None and history.make_live(update):
                        on_live(update.metadata())
    finally:
        await consumer.stop()
