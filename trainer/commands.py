"""What the ``irisflow train`` and ``irisflow models`` commands do, without the CLI parsing."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from irisflow.kafka.model_topic import read_live_update
from irisflow.registry import LocalRegistry, republish
from irisflow.schemas import ModelUpdate
from irisflow.settings import Settings
from trainer.data import load_dataset
from trainer.publish import read_live_version, save_and_publish, save_version
from trainer.reports import write_reports
from trainer.tracking import log_run
from trainer.training import TrainingOutcome, train_offline, train_on

__all__ = ["list_models", "promote", "run_train", "train_candidate"]

log = logging.getLogger(__name__)


def run_train(
    settings: Settings, *, publish: bool, trigger: str, report_dir: Path | None = None
) -> ModelUpdate | None:
    outcome = train_offline(settings)
    created_at = time.time()
    if report_dir is not None:
        write_reports(outcome, report_dir, model_name=settings.model_name, created_at=created_at)
        print(f"reports written to {report_dir}")
    metric = settings.training.selection_metric
    print(f"{'candidate':<22}{'CV ' + metric + ' (mean ± std)':>30}")
    for score in sorted(outcome.candidates, key=lambda s: -s.mean):
        mark = "*" if score.name == outcome.algorithm else " "
        print(f"{mark} {score.name:<20}{score.mean:>22.4f} ± {score.std:.4f}")
    holdout = ", ".join(f"{k} {v:.4f}" for k, v in outcome.metrics.items() if "holdout" in k)
    print(f"selected {outcome.algorithm}; {holdout}")
    if not publish:
        # a rollout candidate: in the registry, verified like any version, never on Kafka
        saved = asyncio.run(save_version(settings, outcome, trigger=trigger, live_version=None))
        log_run(settings, outcome, trigger=trigger, version=saved.version, created_at=created_at)
        print(
            f"{saved.model_name} version {saved.version}: {saved.algorithm}, saved to "
            f"{settings.registry_dir} and not published; roll it out beside the live version "
            f"with `irisflow rollout start {saved.version} --shadow` (or --canary SHARE)"
        )
        return None
    update = asyncio.run(_publish(settings, outcome, trigger=trigger))
    log_run(settings, outcome, trigger=trigger, version=update.version, created_at=created_at)
    cv_score = outcome.metrics.get(f"cv_{metric}_mean", float("nan"))
    print(
        f"{update.model_name} version {update.version}: {update.algorithm}, "
        f"CV {metric} {cv_score:.4f}, published to {settings.kafka.topics.model_updates}"
    )
    return update


async def _publish(settings: Settings, outcome: TrainingOutcome, *, trigger: str) -> ModelUpdate:
    live_version = await read_live_version(settings)
    return await save_and_publish(settings, outcome, trigger=trigger, live_version=live_version)


def list_models(settings: Settings) -> list[dict[str, Any]]:
    registry = LocalRegistry(settings.registry_dir)
    live = asyncio.run(read_live_update(settings.kafka, settings.model_name))
    rows = []
    for version in registry.versions():
        meta = registry.metadata(version)
        rows.append(
            {
                "version": version,
                "algorithm": meta.algorithm,
                "trigger": meta.trigger,
                "parent_version": meta.parent_version,
                "created_at": meta.created_at,
                "metrics": meta.metrics,
                "sha256": meta.sha256,
                "live": live is not None and live.version == version,
            }
        )
    return rows


def promote(settings: Settings, version: int) -> ModelUpdate:
    """Republish a registry version (see :func:`~irisflow.registry.republish`)."""
    update = LocalRegistry(settings.registry_dir).get(version)
    asyncio.run(republish(settings.kafka, update, limits=settings.artifacts))
    return update


def train_candidate(
    settings: Settings, *, shuffled_labels: bool = False, seed: int = 0
) -> ModelUpdate:
    """Train and save a new registry version without publishing it: a rollout candidate.

    ``shuffled_labels`` fits it on the training labels in a random order (seeded): a model that
    loads, passes every contract check and answers confidently, mostly wrong. It is what a safe
    rollout exists to catch, so ``irisflow produce --candidate bad`` uses it to show one being
    rolled back. The version is numbered after both the registry's newest and the live one.
    """
    dataset = load_dataset(settings.data, base_dir=settings.params_path.parent)
    trigger = "candidate"
    if shuffled_labels:
        shuffled = np.random.default_rng(seed).permutation(dataset.y)
        dataset = dataclasses.replace(
            dataset, y=shuffled, fingerprint=f"{dataset.fingerprint}-shuffled-{seed}"
        )
        trigger = "candidate-shuffled-labels"
    outcome = train_on(dataset, settings.training, show_progress=True)
    live = asyncio.run(read_live_version(settings))
    return asyncio.run(save_version(settings, outcome, trigger=trigger, live_version=live))
