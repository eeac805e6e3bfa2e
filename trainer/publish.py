"""Turn a training outcome into an immutable registry version and publish it to Kafka.

Order matters for "no partial artifact ever published": the version is written completely to
the registry first (metadata last), and only then sent to ``model-updates``; the send waits for
the broker's acknowledgement. A crash in between leaves a registry version that was never live,
which the next publish skips past (versions are numbered from both the registry and the topic).
The topic's newest version comes from the caller: the retraining service follows the topic
anyway (its champion feed); ``irisflow train`` reads it once (:func:`read_live_version`).

Before either, the serialized update goes through the same :func:`~irisflow.registry.load_update`
every worker runs (checksum, archive limits, type allow-list, estimator contract, a smoke
prediction): an artifact the workers would refuse is never saved or published, and the
retraining that made it is a ``failed`` decision instead of a version nobody serves.
"""

from __future__ import annotations

import asyncio
import logging
import time

from irisflow.kafka.model_topic import publish_update, read_live_update
from irisflow.registry import LocalRegistry, load_update, serialize_model, sha256_hex
from irisflow.schemas import ModelUpdate
from irisflow.settings import Settings
from trainer.card import confusion_matrix_png, render_model_card
from trainer.training import TrainingOutcome

__all__ = [
    "build_update",
    "next_version",
    "read_live_version",
    "save_and_publish",
    "save_version",
    "verified_update",
]

log = logging.getLogger(__name__)


def build_update(
    outcome: TrainingOutcome, *, model_name: str, version: int, parent: int | None, trigger: str
) -> ModelUpdate:
    artifact = serialize_model(outcome.model)
    return ModelUpdate(
        model_name=model_name,
        version=version,
        created_at=time.time(),
        algorithm=outcome.algorithm,
        feature_names=list(outcome.feature_names),
        class_labels=list(outcome.class_labels),
        metrics=dict(outcome.metrics),
        reference_stats=dict(outcome.reference_stats),
        class_prior=dict(outcome.class_prior),
        data_fingerprint=outcome.data_fingerprint,
        parent_version=parent,
        trigger=trigger,
        calibration=outcome.calibration,
        sha256=sha256_hex(artifact),
        artifact=artifact,
    )


def verified_update(
    outcome: TrainingOutcome,
    *,
    settings: Settings,
    version: int,
    parent: int | None,
    trigger: str,
) -> ModelUpdate:
    """The update for ``outcome``, once its own bytes load and score as a worker would load them;
    :class:`~irisflow.errors.ArtifactError` otherwise."""
    update = build_update(
        outcome, model_name=settings.model_name, version=version, parent=parent, trigger=trigger
    )
    load_update(update, settings.artifacts)
    return update


async def read_live_version(settings: Settings) -> int | None:
    """The version the topic holds now (``None`` before the first publish): one read of it."""
    live = await read_live_update(settings.kafka, settings.model_name)
    return live.version if live else None


def next_version(settings: Settings, live_version: int | None) -> int:
    """One past both the registry's newest version and the topic's."""
    local = LocalRegistry(settings.registry_dir).latest() or 0
    return max(local, live_version or 0) + 1


async def save_and_publish(
    settings: Settings, outcome: TrainingOutcome, *, trigger: str, live_version: int | None
) -> ModelUpdate:
    """Verify, save and publish ``outcome`` as the version after both the registry's newest and
    ``live_version`` (the topic's newest, which becomes its parent)."""
    update = await save_version(settings, outcome, trigger=trigger, live_version=live_version)
    await publish_update(settings.kafka, update)
    return update


async def save_version(
    settings: Settings, outcome: TrainingOutcome, *, trigger: str, live_version: int | None
) -> ModelUpdate:
    """Verify and save ``outcome`` as the next version without publishing it: a candidate for a
    rollout (``irisflow train --no-publish``, or a challenger entering shadow or canary)."""
    version, parent = next_version(settings, live_version), live_version
    update = await asyncio.to_thread(
        verified_update,
        outcome,
        settings=settings,
        version=version,
        parent=parent,
        trigger=trigger,
    )
    card = render_model_card(
        outcome,
        model_name=update.model_name,
        version=version,
        parent_version=parent,
        trigger=trigger,
        created_at=update.created_at,
    )
    LocalRegistry(settings.registry_dir).save(
        update,
        extra_files={
            LocalRegistry.CARD: card.encode(),
            "confusion_matrix.png": confusion_matrix_png(outcome),
        },
    )
    return update
