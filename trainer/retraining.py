"""One retraining decision: screen the window, train a challenger, gate it against the champion,
publish it if it wins, record the decision (see :mod:`trainer.decisions`).

Kafka reaches this only through its two callers' hands: the service feeds the window and the
champion, and receives the samples to dead-letter through ``refuse``; so a decision can be
taken (and tested) without a broker, except for the publish of a promoted challenger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka.errors import KafkaError

from irisflow.errors import KafkaUnavailable
from irisflow.registry import LocalRegistry
from irisflow.schemas import ModelUpdate
from irisflow.settings import Settings
from irisflow.topics import Incoming, Reason
from trainer.data import Dataset, combine
from trainer.decisions import Decision, DecisionLog
from trainer.gate import judge, split_recent
from trainer.inputs import Window, unlearnable, why_unlearnable
from trainer.metrics import TrainerMetrics
from trainer.publish import save_and_publish, save_version
from trainer.training import TrainingOutcome, rows_needed_per_class

__all__ = ["EnterRollout", "Refuse", "Retraining", "TrainFn"]

log = logging.getLogger("trainer.service")  # the service's decisions, under its name

TrainFn = Callable[[Dataset], TrainingOutcome]
EnterRollout = Callable[[ModelUpdate], str]
"""Start a rollout of a saved challenger; the stage it entered, or ``refused: why``."""
Refuse = Callable[[Incoming, Reason, str], None]
"""Dead-letter one record with its reason and error (quietly: the decision logs the cause)."""

_INFRASTRUCTURE = (KafkaError, KafkaUnavailable)
"""Errors that say Kafka is unreachable: no decision could be recorded, so let them crash."""


class Retraining:
    """Takes retraining decisions over ``window`` and ``base``, against the current champion."""

    def __init__(
        self,
        settings: Settings,
        *,
        window: Window,
        base: Dataset,
        train: TrainFn,
        metrics: TrainerMetrics,
        refuse: Refuse,
        enter_rollout: EnterRollout | None = None,
        rollout_in_progress: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.decisions: list[Decision] = []
        self.champion: tuple[ModelUpdate, Any] | None = None
        """The live update and its loaded estimator, once one loaded."""
        self.newest_published: int | None = None
        """The newest version on the model topic (loadable or not): the next one's parent."""
        self._window = window
        self._base = base
        self._train = train
        self._refuse = refuse
        self._enter_rollout = enter_rollout
        self._rollout_in_progress = rollout_in_progress
        """The active rollout in words (``None``: none): a winner published now would replace
        the champion under it, so it is saved and held instead."""
        self._log = DecisionLog(LocalRegistry(settings.registry_dir), metrics)

    async def retrain(self, trigger: str) -> Decision:
        """Train a challenger on base data + recent labels, gate it, publish it if it wins.

        Never raises for a failed training (that is a ``failed`` decision); Kafka errors and
        cancellation propagate, leaving the labels uncommitted for the next start.
        """
        started = time.perf_counter()
        excluded = self._screen()
        outcome: TrainingOutcome | None = None
        try:
            decision, outcome = await self._attempt(trigger, started)
        except _INFRASTRUCTURE:
            raise
        except Exception as exc:
            decision = self._failed(trigger, started, exc)
        decision = dataclasses.replace(decision, excluded=excluded)
        parent = self.champion[0].version if self.champion else None
        self._log.record(decision, outcome, parent_version=parent)
        self.decisions.append(decision)
        self._window.decided()
        self.metrics.pending_labels.set(0)
        return decision

    def _split(self, count: int) -> tuple[Any, Any]:
        return split_recent(
            count,
            holdout_fraction=self.settings.retraining.holdout_fraction,
            random_state=self.settings.training.random_state,
        )

    def _screen(self) -> int:
        """Dead-letter and drop the samples training could not use (see :func:`unlearnable`)."""
        minimum = rows_needed_per_class(self.settings.training)
        found = unlearnable(self._window, self._base, minimum=minimum, split=self._split)
        for label, entries in found.items():
            error = why_unlearnable(label, self._base, minimum=minimum)
            log.warning("retraining: %d labeled samples left out: %s", len(entries), error)
            for entry in entries:
                self._refuse(entry.record, Reason.SCHEMA_MISMATCH, error)
            self._window.drop(entries)
        return sum(len(entries) for entries in found.values())

    async def _attempt(self, trigger: str, started: float) -> tuple[Decision, TrainingOutcome]:
        x, y = self._window.arrays(self._base.feature_names)
        train_idx, hold_idx = self._split(len(y))
        dataset = combine(self._base, x[train_idx], y[train_idx])
        outcome = await asyncio.to_thread(self._train, dataset)
        champion = self.champion[1] if self.champion else None
        gate = judge(
            outcome.model,
            champion,
            x[hold_idx],
            y[hold_idx],
            tolerance=self.settings.retraining.tolerance,
            manual=trigger == "manual",
        )
        version = None
        rollout = None
        if gate.promoted and self._through_rollout():
            update = await save_version(
                self.settings, outcome, trigger=trigger, live_version=self.newest_published
            )
            assert self._enter_rollout is not None
            rollout = self._enter_rollout(update)
            version = update.version
        elif gate.promoted and (busy := self._rollout_in_progress()) is not None:
            # the rollout began while this challenger trained (its trigger was not postponed)
            update = await save_version(
                self.settings, outcome, trigger=trigger, live_version=self.newest_published
            )
            rollout = f"refused: {busy}"
            version = update.version
        elif gate.promoted:
            update = await save_and_publish(
                self.settings, outcome, trigger=trigger, live_version=self.newest_published
            )
            self.newest_published = update.version  # before the feed brings it back
            version = update.version
        seconds = time.perf_counter() - started
        decision = Decision(trigger, gate, version, outcome.algorithm, seconds, rollout=rollout)
        return decision, outcome

    def _through_rollout(self) -> bool:
        """Whether a winning challenger enters a rollout instead of going live at once."""
        return (
            self.settings.rollout.challenger_entry != "direct" and self._enter_rollout is not None
        )

    def _failed(self, trigger: str, started: float, exc: Exception) -> Decision:
        """Dead-letter the samples this retraining was the first to use and drop them."""
        error = f"{type(exc).__name__}: {exc}"
        log.debug("retraining (%s) failed", trigger, exc_info=True)
        pending = self._window.drop_pending()
        for entry in pending:
            reason = f"retraining ({trigger}) failed: {error}"
            self._refuse(entry.record, Reason.TRAINING_FAILED, reason)
        seconds = time.perf_counter() - started
        tolerance = self.settings.retraining.tolerance
        return Decision.failed(trigger, error, seconds, tolerance, dead_lettered=len(pending))
