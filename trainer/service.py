"""``irisflow trainer``: retrain when labels, drift or a person ask for it; publish if not worse.

Offsets are committed only after a retraining decision (or when no label is waiting for one), so
a trainer that dies (even mid-way through training) re-reads the same labels on restart and
decides again; a version is published only after it is completely written to the registry, so
nothing partial ever goes live.

No record and no retraining can stop the service. A record that fails its codec, its key or the
model's feature schema, or whose handling raises, is dead-lettered (consumer ``trainer``) and
its offset committed with the rest. A retraining that raises is a ``failed`` decision: the
labeled samples it was about to learn from are dead-lettered (``training_failed``, replayable
with ``irisflow dlq replay`` once the cause is fixed) and dropped from the window, so the next
retraining does not trip over them again. Only Kafka itself failing stops the service: then
nothing can be recorded, and a restart re-reads the uncommitted labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError

from irisflow.errors import ArtifactError, KafkaUnavailable
from irisflow.kafka.clients import make_consumer, make_producer
from irisflow.kafka.model_topic import ModelFeed
from irisflow.registry import load_update
from irisflow.schemas import LabeledSample, ModelUpdate, RetrainRequest
from irisflow.settings import Settings
from irisflow.topics import DeadLetters, Incoming, Outgoing, Reason, Refused, Topics
from trainer.data import Dataset, combine, load_dataset
from trainer.decisions import Decision, DecisionLog
from trainer.gate import GateDecision, judge, split_recent
from trainer.inputs import TrainerInput
from trainer.metrics import TrainerMetrics
from trainer.publish import save_and_publish
from trainer.training import TrainingOutcome, train_on

__all__ = ["CONSUMER", "Decision", "RetrainingService"]

log = logging.getLogger(__name__)

CONSUMER = "trainer"
"""The name the trainer signs its dead letters with."""

TrainFn = Callable[[Dataset], TrainingOutcome]

_INFRASTRUCTURE = (KafkaError, KafkaUnavailable)
"""Errors that say Kafka is unreachable: no decision could be recorded, so let them crash."""


@dataclass(frozen=True)
class _Labeled:
    """A sample in the window, with the record it came from (its dead letter needs the bytes)."""

    sample: LabeledSample
    record: Incoming


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
        self._window: deque[_Labeled] = deque(maxlen=settings.retraining.window_size)
        self._pending = 0
        self._champion: tuple[ModelUpdate, Any] | None = None
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
        self._log = DecisionLog(settings.registry_dir, self.metrics)
        self._feed: ModelFeed | None = None
        self.ready = asyncio.Event()

    async def _on_model(self, update: ModelUpdate) -> bool:
        try:
            model = await asyncio.to_thread(load_update, update, self.settings.artifacts)
        except ArtifactError as exc:
            log.error(
                "trainer: live version %d cannot be loaded as champion: %s", update.version, exc
            )
            if self._feed is not None and self._feed.caught_up.is_set():
                await self._feed.refuse(update, str(exc))
            return False
        self._champion = (update, model)
        self._input.follow(update)
        self.metrics.live_version.set(update.version)
        return True

    async def run(self) -> None:
        topics = self._topics
        feed = ModelFeed(
            self.settings.kafka,
            self.settings.model_name,
            self._on_model,
            consumer=CONSUMER,
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
        await consumer.start()
        await producer.start()
        try:
            await feed.caught_up.wait()
            self.ready.set()
            log.info(
                "trainer ready: retrains after %d new labels, on drift and on request",
                self.settings.retraining.min_new_labels,
            )
            await self._loop(consumer, producer)
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
            await consumer.stop()
            await producer.stop()

    def _letters_counted(self, topic: str, reason: str, consumer: str) -> None:
        self.metrics.dead_letters.labels(topic, reason, consumer).inc()

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            records = [record for batch in batches.values() for record in batch]
            triggers = [trigger for record in records if (trigger := self._take(record))]
            if self._pending >= self.settings.retraining.min_new_labels:
                triggers.append("labels")
            if triggers:
                await self.retrain("manual" if "manual" in triggers else triggers[0])
            await self.flush_letters(producer)
            # With no label waiting for a decision, every offset read stands for finished work.
            if triggers or (records and self._pending == 0):
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
            self._window.append(_Labeled(message, record))
            self._pending += 1
            self.metrics.labels_seen.inc()
            self.metrics.pending_labels.set(self._pending)
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

    def _refuse(self, record: Incoming, reason: Reason, error: str) -> None:
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
        sent = [
            await producer.send(
                letter.topic,
                value=letter.value,
                key=letter.key,
                partition=letter.partition,
                headers=list(letter.headers) or None,
            )
            for letter in self.drain_letters()
        ]
        await asyncio.gather(*sent)

    async def retrain(self, trigger: str) -> Decision:
        """Train a challenger on base data + recent labels, gate it, publish it if it wins.

        Never raises for a failed training (that is a ``failed`` decision); Kafka errors and
        cancellation propagate, leaving the labels uncommitted for the next start.
        """
        started = time.perf_counter()
        outcome: TrainingOutcome | None = None
        try:
            decision, outcome = await self._attempt(trigger, started)
        except _INFRASTRUCTURE:
            raise
        except Exception as exc:
            decision = self._failed(trigger, started, exc)
        parent = self._champion[0].version if self._champion else None
        self._log.record(decision, outcome, parent_version=parent)
        self.decisions.append(decision)
        self._pending = 0
        self.metrics.pending_labels.set(0)
        return decision

    async def _attempt(self, trigger: str, started: float) -> tuple[Decision, TrainingOutcome]:
        samples = [entry.sample for entry in self._window]
        names = self._base.feature_names
        x = np.array([[s.features[n] for n in names] for s in samples], dtype=np.float64).reshape(
            -1, len(names)
        )
        y = np.array([s.true_label for s in samples], dtype=str)
        train_idx, hold_idx = split_recent(
            len(samples),
            holdout_fraction=self.settings.retraining.holdout_fraction,
            random_state=self.settings.training.random_state,
        )
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
            update = await save_and_publish(self.settings, outcome, trigger=trigger)
            version = update.version
        seconds = time.perf_counter() - started
        return Decision(trigger, gate, version, outcome.algorithm, seconds), outcome

    def _failed(self, trigger: str, started: float, exc: Exception) -> Decision:
        """Dead-letter the samples this retraining was the first to use and drop them."""
        error = f"{type(exc).__name__}: {exc}"
        log.debug("retraining (%s) failed", trigger, exc_info=True)
        pending = [self._window.pop() for _ in range(min(self._pending, len(self._window)))]
        for entry in reversed(pending):
            self._refuse_quietly(entry.record, f"retraining ({trigger}) failed: {error}")
        gate = GateDecision(
            False, f"training failed: {error}", None, None, self.settings.retraining.tolerance, 0
        )
        seconds = time.perf_counter() - started
        return Decision(trigger, gate, None, None, seconds, error=error, dead_lettered=len(pending))

    def _refuse_quietly(self, record: Incoming, error: str) -> None:
        self._outbox.append(
            self._letters.letter(
                record, source_topic=record.topic, reason=Reason.TRAINING_FAILED, error=error
            )
        )
