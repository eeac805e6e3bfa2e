"""Model versions the gateway knows of: every update read from Kafka, plus the registry folder.

The gateway may run on a host without the trainer's registry folder, so Kafka is its source: it
follows the compacted ``model-updates`` topic with the core's :class:`ModelFeed` (the follower
every worker uses), so what it reports as live is what the workers serve: a version goes live
here only once its artifact passes the same checks a worker runs before swapping (checksum,
archive limits, type allow-list, estimator contract, smoke prediction). A fresh gateway whose
newest update is refused falls back, like a fresh worker, to the newest one that loads.

Every version seen is listed (its metadata is small), but artifacts are kept only for the
:data:`KEPT_ARTIFACTS` newest, so a long-running gateway does not hold every model ever
published. Compaction keeps only the latest record per model name once the log cleaner has run,
so versions published long before this gateway started, and compacted away, are only listed
when the registry folder (``settings.registry_dir``) is readable here too; that is the
documented limitation of ``GET /v1/models`` on a host of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from irisflow.errors import ArtifactError, IrisflowError, ModelNotFound
from irisflow.kafka.model_topic import ModelFeed
from irisflow.model_check import check_elsewhere
from irisflow.registry import LocalRegistry, verify_checksum
from irisflow.schemas import ModelMetadata, ModelUpdate
from irisflow.settings import ArtifactSettings, KafkaSettings

__all__ = ["CONSUMER", "KEPT_ARTIFACTS", "KnownVersion", "ModelHistory", "model_feed"]

log = logging.getLogger(__name__)

Source = Literal["kafka", "registry"]

CONSUMER = "gateway.model-feed"
"""The consumer name on the model feed's dead letters and in the dead-letter metric."""
KEPT_ARTIFACTS = 4
"""Newest versions whose artifacts a gateway keeps to republish (``promote``) without a registry
folder; older ones are still listed, and promoted from the registry folder where it exists."""


@dataclass(frozen=True)
class KnownVersion:
    metadata: ModelMetadata
    sources: tuple[Source, ...]


class ModelHistory:
    """What is live, and every version seen on Kafka or found in the registry folder."""

    def __init__(
        self, model_name: str, registry_dir: Path, *, kept_artifacts: int = KEPT_ARTIFACTS
    ) -> None:
        self.model_name = model_name
        self.registry = LocalRegistry(registry_dir)
        self.live: ModelMetadata | None = None
        self.kept_artifacts = kept_artifacts
        self._seen: dict[int, ModelMetadata] = {}
        self._artifacts: dict[int, ModelUpdate] = {}

    def record(self, update: ModelUpdate) -> None:
        """Keep ``update`` (the model feed's ``on_seen``: every decodable update is listed)."""
        self._keep(update)

    def _keep(self, update: ModelUpdate) -> bool:
        """One whose bytes fail their checksum is refused (it is live nowhere)."""
        try:
            verify_checksum(update.artifact, update.sha256)
        except ArtifactError as exc:
            log.error("gateway: ignoring %s version %d: %s", update.model_name, update.version, exc)
            return False
        self._seen[update.version] = update.metadata()
        self._artifacts[update.version] = update
        for old in sorted(self._artifacts)[: -self.kept_artifacts or None]:
            del self._artifacts[old]
        return True

    def make_live(self, update: ModelUpdate) -> bool:
        """Record ``update`` and call it live (the caller has loaded it successfully)."""
        if not self._keep(update):
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
            meta = self._seen.get(version) or on_disk[version]
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
        if version in self._artifacts:
            return self._artifacts[version], "kafka"
        if version in self._seen:
            raise ModelNotFound(
                f"{self.model_name} version {version} was seen on Kafka, but this gateway keeps "
                f"the artifacts of the {self.kept_artifacts} newest versions only and has no "
                f"registry folder at {self.registry.root}: promote it where the registry is"
            )
        raise ModelNotFound(self._unknown(version))

    def _unknown(self, version: int) -> str:
        return (
            f"{self.model_name} version {version} is unknown to this gateway (neither seen on "
            f"Kafka since it started nor in the registry at {self.registry.root})"
        )


def model_feed(
    kafka: KafkaSettings,
    history: ModelHistory,
    artifacts: ArtifactSettings,
    *,
    on_live: Callable[[ModelMetadata], None],
    on_letter: Callable[[str, str, str], None] | None = None,
) -> ModelFeed:
    """The follower that makes a version live here only if it loads as it does on a worker.

    Loading (parse, contract, smoke prediction) runs in a child process
    (:mod:`irisflow.model_check`), so the gateway never holds scikit-learn in memory. A refused
    update that arrives live is dead-lettered once, as ``gateway.model-feed``; one refused
    during catch-up is not (it was dead-lettered when it arrived, and every restart would
    repeat the letter).
    """

    async def accept(update: ModelUpdate) -> bool:
        try:
            await check_elsewhere(update, artifacts)
        except Exception as exc:  # any refusal leaves the current version live
            log.error("gateway: %s version %d refused: %s", update.model_name, update.version, exc)
            if feed.caught_up.is_set():
                await feed.refuse(update, str(exc))
            return False
        if not history.make_live(update):
            return False
        on_live(update.metadata())
        return True

    feed = ModelFeed(
        kafka,
        history.model_name,
        accept,
        consumer=CONSUMER,
        on_seen=history.record,
        on_letter=on_letter,
    )
    return feed
