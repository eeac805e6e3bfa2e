"""``irisflow trainer``: retrain when labels, drift or a person ask for it; publish if not worse.

Offsets are committed only after a retraining decision (or when no label is waiting for one), so
a trainer that dies (even mid-way through training) re-reads the same labels on restart and
decides again; a version is published only after it is completely written to the registry, so
nothing partial ever goes live.

No record, model update or retraining can stop the service. A record that fails its codec, its
key or the model's feature names, domain or classes, or whose handling raises, is dead-lettered
(consumer ``trainer``) and its offset committed with the rest; so is a live model update that
cannot be loaded as champion, whatever it raises. Before training, samples whose class the
training data would still hold too few rows of are dead-lettered (``schema_mismatch``) and left
out, so they cannot fail the retraining. A retraining that raises anyway is a ``failed``
decision: the cause cannot be pinned on one sample, so every labeled sample no decision had used
yet is dead-lettered (``training_failed``, replayable with ``irisflow dlq replay`` once the cause
is fixed) and dropped from the window, so the next retraining does not trip over them again.

Two things do stop it, loudly (the process exits with the error, and ``irisflow up`` or any
supervisor restarts it): Kafka failing, when nothing can be recorded and a restart re-reads the
uncommitted labels; and the model feed stopping, when the trainer would judge challengers
against a champion it can no longer follow (waiting for it would hang the trainer unready).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError

from irisflow.errors import KafkaUnavailable
from irisflow.kafka.clients import make_consumer, make_producer, send
from irisflow.kafka.model_topic import ModelFeed
from irisflow.registry import LocalRegistry, load_update
from irisflow.schemas import LabeledSample, ModelUpdate, RetrainRequest
from irisflow.settings import Settings
from irisflow.topics import DeadLetters, Incoming, Outgoing, Reason, Refused, Topics
from trainer.data import Dataset, combine, load_dataset
from trainer.decisions import Decision, DecisionLog
from trainer.feed import ModelFeedStopped, until
from trainer.gate import judge, split_recent
from trainer.inputs import Labeled, TrainerInput, Window, unlearnable, why_unlearnable
from trainer.metrics import TrainerMetrics
from trainer.publish import save_and_publish
from trainer.training import TrainingOutcome, rows_needed_per_class, train_on

__all__ = ["CONSUMER", "Decision", "ModelFeedStopped", "RetrainingService"]

log = logging.getLogger(__name__)

CONSUMER = "trainer"
"""The name the trainer signs its dead letters with."""

TrainFn = Callable[[Dataset], TrainingOutcome]

_INFRASTRUCTURE = (KafkaError, KafkaUnavailable)
"""Errors that say Kafka is unreachable: no decision could be recorded, so let them crash."""


class RetrainingService:
    """Consumes labeled samples, drift alarms and retrain requests; runs the gate; publishes."""

    def __init__(
        self,
        settings: Settings,
        *,
        train: TrainFn | None = None,
        metrics: TrainerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or TrainerMetrics.create()
        self.decisions: list[Decision] = []
        self._train = train or (lambda data: train_on(data, settings.training, show_progress=False))
        self._window = Window(settings.retraining.window_size)
        self._champion: tuple[ModelUpdate, Any] | None = None
        self._newest_published: int | None = None
        """The newest version on the model topic (loadable or not): the next one's parent."""
        self._last_drift_retrain = float("-inf")
        self._base = load_dataset(settings.data, base_dir=settings.params_path.parent)
        self._topics = Topics.of(settings.kafka)
        self._input = TrainerInput(
            self._topics, self._base, max_reference_std=settings.features.max_reference_std
        )
        self._letters = DeadLetters(
            self._topics.dead_letters.name,
            CONSUMER,
            max_message_bytes=settings.kafka.max_message_bytes,
            on_letter=self._letters_counted,
        )
        self._outbox: list[Outgoing] = []
        self._log = DecisionLog(LocalRegistry(settings.registry_dir), self.metrics)
        self._feed: ModelFeed | None = None
        self.ready = asyncio.Event()

    async def _on_model(self, update: ModelUpdate) -> bool:
        """Make ``update`` the champion; ``False`` (logged, and dead-lettered if live) when it
        cannot be loaded, whatever that raises: a crafted update must not stop the feed."""
        try:
            model = await asyncio.to_thread(load_update, update, self.settings.artifacts)
            self._input.follow(update)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("trainer: version %d cannot be loaded as champion: %s", update.version, error)
            if self._feed is not None and self._feed.caught_up.is_set():
                await self._feed.refuse(update, error)
            return False
        self._champion = (update, model)
        self.metrics.live_version.set(update.version)
        return True

    def _seen(self, update: ModelUpdate) -> None:
        self._newest_published = update.version

    async def run(self) -> None:
        topics = self._topics
        feed = ModelFeed(
            self.settings.kafka,
            self.settings.model_name,
            self._on_model,
            consumer=f"{CONSUMER}.model-feed",
            on_seen=self._seen,
            on_letter=self._letters_counted,
        )
        self._feed = feed
        follow = asyncio.create_task(feed.run(), name="trainer-model-feed")
        consumer = make_consumer(
            self.settings.kafka,
            topics.labeled.name,
            topics.drift_events.name,
            topics.retrain_requests.name,
            group_id=f"{self.settings.kafka.app_id}-trainer",
        )
        producer = make_producer(self.settings.kafka)
        work: asyncio.Task[None] | None = None
        try:
            await consumer.start()
            await producer.start()
            await until(feed.caught_up.wait(), unless=follow)
            self.ready.set()
            log.info(
                "trainer ready: retrains after %d new labels, on drift and on request",
                self.settings.retraining.min_new_labels,
            )
            work = asyncio.create_task(self._loop(consumer, producer), name="trainer-loop")
            await until(work, unless=follow)
        finally:
            for task in (work, follow):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            await consumer.stop()
            await producer.stop()

    def _letters_counted(self, topic: str, reason: str, consumer: str) -> None:
        self.metrics.dead_letters.labels(topic, reason, consumer).inc()

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            records = [record for batch in batches.values() for record in batch]
            triggers = [trigger for record in records if (trigger := self._take(record))]
            if self._window.pending >= self.settings.retraining.min_new_labels:
                triggers.append("labels")
            if triggers:
                await self.retrain("manual" if "manual" in triggers else triggers[0])
            await self.flush_letters(producer)
            # With no label waiting for a decision, every offset read stands for finished work.
            if triggers or (records and self._window.pending == 0):
                await consumer.commit()

    def _take(self, record: ConsumerRecord[bytes, bytes]) -> str | None:
        return self.take(
            Incoming(record.value, record.key, record.partition, record.offset, record.topic)
        )

    def take(self, record: Incoming) -> str | None:
        """Use one record; the retraining trigger it asks for, if any. Never raises for a bad
        record: it is dead-lettered (see :meth:`flush_letters`) with its reason."""
        try:
            return self._use(record)
        except Refused as exc:
            self._refuse(record, exc.reason, str(exc))
        except Exception as exc:
            log.debug("trainer: handling %s failed", record.topic, exc_info=True)
            self._refuse(record, Reason.PROCESSING_FAILED, f"{type(exc).__name__}: {exc}")
        return None

    def _use(self, record: Incoming) -> str | None:
        message = self._input.decode(record)
        if isinstance(message, LabeledSample):
            self._window.add(Labeled(message, record))
            self.metrics.labels_seen.inc()
            self.metrics.pending_labels.set(self._window.pending)
            return None
        if message.model_name != self.settings.model_name:
            return None
        if isinstance(message, RetrainRequest):
            log.info("retraining requested by %s: %s", message.requested_by, message.reason)
            return "manual"
        if time.monotonic() - self._last_drift_retrain < (
            self.settings.retraining.drift_cooldown_seconds
        ):
            return None
        log.info(
            "drift alarm on %s (%s %.3f > %.3f): retraining",
            message.feature,
            message.detector,
            message.statistic,
            message.threshold,
        )
        self._last_drift_retrain = time.monotonic()
        return "drift"

    def _refuse(self, record: Incoming, reason: Reason, error: str, *, quiet: bool = False) -> None:
        if not quiet:
            log.warning(
                "%s[%s] offset %s dead-lettered (%s): %s",
                record.topic,
                record.partition,
                record.offset,
                reason,
                error,
            )
        self._outbox.append(
            self._letters.letter(record, source_topic=record.topic, reason=reason, error=error)
        )

    def drain_letters(self) -> list[Outgoing]:
        """The dead letters not sent yet (and forget them)."""
        letters, self._outbox = self._outbox, []
        return letters

    async def flush_letters(self, producer: AIOKafkaProducer) -> None:
        """Send every pending dead letter and wait for the broker, before offsets are committed."""
        for letter in self.drain_letters():
            await send(producer, letter)

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
        parent = self._champion[0].version if self._champion else None
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
                self._refuse(entry.record, Reason.SCHEMA_MISMATCH, error, quiet=True)
            self._window.drop(entries)
        return sum(len(entries) for entries in found.values())

    async def _attempt(self, trigger: str, started: float) -> tuple[Decision, TrainingOutcome]:
        x, y = self._window.arrays(self._base.feature_names)
        train_idx, hold_idx = self._split(len(y))
        dataset = combine(self._base, x[train_idx], y[train_idx])
        outcome = await asyncio.to_thread(self._train, dataset)
        champion = self._champion[1] if self._champion else None
        gate = judge(
            outcome.model,
            champion,
            x[hold_idx],
            y[hold_idx],
            tolerance=self.settings.retraining.tolerance,
            manual=trigger == "manual",
        )
        version = None
        if gate.promoted:
            update = await save_and_publish(
                self.settings, outcome, trigger=trigger, live_version=self._newest_published
            )
            self._newest_published = update.version  # before the feed brings it back
            version = update.version
        seconds = time.perf_counter() - started
        return Decision(trigger, gate, version, outcome.algorithm, seconds), outcome

    def _failed(self, trigger: str, started: float, exc: Exception) -> Decision:
        """Dead-letter the samples this retraining was the first to use and drop them."""
        error = f"{type(exc).__name__}: {exc}"
        log.debug("retraining (%s) failed", trigger, exc_info=True)
        pending = self._window.drop_pending()
        for entry in pending:
            reason = f"retraining ({trigger}) failed: {error}"
            self._refuse(entry.record, Reason.TRAINING_FAILED, reason, quiet=True)
        seconds = time.perf_counter() - started
        tolerance = self.settings.retraining.tolerance
        return Decision.failed(trigger, error, seconds, tolerance, dead_lettered=len(pending))
