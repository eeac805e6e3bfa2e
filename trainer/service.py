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
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from irisflow.kafka.clients import make_consumer, make_producer, send
from irisflow.kafka.model_topic import ModelFeed
from irisflow.registry import load_update
from irisflow.schemas import LabeledSample, ModelUpdate, RetrainRequest, RolloutMode
from irisflow.settings import Settings
from irisflow.topics import DeadLetters, Incoming, Outgoing, Reason, Refused, Topics
from trainer.data import load_dataset
from trainer.decisions import Decision
from trainer.feed import ModelFeedStopped, until
from trainer.inputs import Labeled, TrainerInput, Window
from trainer.metrics import TrainerMetrics
from trainer.retraining import Retraining, TrainFn
from trainer.rollout.controller import RolloutController, RolloutRefused
from trainer.training import train_on

__all__ = ["CONSUMER", "Decision", "ModelFeedStopped", "RetrainingService"]

log = logging.getLogger(__name__)

CONSUMER = "trainer"
"""The name the trainer signs its dead letters with."""


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
        self._window = Window(settings.retraining.window_size)
        self._last_drift_retrain = float("-inf")
        self._base = load_dataset(settings.data, base_dir=settings.params_path.parent)
        self._topics = Topics.of(settings.kafka)
        self._input = TrainerInput(
            self._topics, self._base, max_reference_std=settings.features.max_reference_std
        )
        self._letters = DeadLetters.to(settings.kafka, CONSUMER, on_letter=self._letters_counted)
        self._outbox: list[Outgoing] = []
        self.rollouts = RolloutController(settings, metrics=self.metrics)
        self._postponing: str | None = None
        """The rollout automatic retrainings were last postponed for (logged once each)."""
        self._retraining = Retraining(
            settings,
            window=self._window,
            base=self._base,
            train=train or (lambda data: train_on(data, settings.training, show_progress=False)),
            metrics=self.metrics,
            refuse=self._refuse_quietly,
            enter_rollout=self._enter_rollout,
            rollout_in_progress=self._rollout_in_progress,
        )
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
        self._retraining.champion = (update, model)
        self.metrics.live_version.set(update.version)
        self.rollouts.on_champion(update.metadata())
        return True

    def _enter_rollout(self, update: ModelUpdate) -> str:
        """The winning challenger enters the configured stage instead of going live."""
        mode = RolloutMode(self.settings.rollout.challenger_entry)
        try:
            self.rollouts.start(update, mode, decided_by="trainer", reason="retraining winner")
        except RolloutRefused as exc:
            log.warning(
                "trainer: challenger version %d saved but not rolled out: %s", update.version, exc
            )
            return f"refused: {exc}"
        return mode.value

    def _seen(self, update: ModelUpdate) -> None:
        self._retraining.newest_published = update.version

    @property
    def decisions(self) -> list[Decision]:
        """Every decision taken since the service started, oldest first."""
        return self._retraining.decisions

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
        rollouts = asyncio.create_task(self.rollouts.run(), name="trainer-rollouts")
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
            ready = asyncio.create_task(_ready(self.rollouts.ready))
            await until(_first(ready, rollouts), unless=follow)
            self.ready.set()
            log.info(
                "trainer ready: retrains after %d new labels, on drift and on request",
                self.settings.retraining.min_new_labels,
            )
            work = asyncio.create_task(self._loop(consumer, producer), name="trainer-loop")
            await until(_first(work, rollouts), unless=follow)
        finally:
            for task in (work, rollouts, follow):
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
            if self._window.pending >= self.settings.retraining.min_new_labels and (
                not self._postponed("labels")
            ):
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
            if not self._window.add(Labeled(message, record)):
                return None  # read again after a rebalance: counted when first read
            self.metrics.labels_seen.inc()
            self.metrics.pending_labels.set(self._window.pending)
            return None
        if message.model_name != self.settings.model_name:
            return None
        if isinstance(message, RetrainRequest):
            log.info("retraining requested by %s: %s", message.requested_by, message.reason)
            return "manual"
        if self._postponed("drift"):
            return None  # the cooldown is not started: no retraining took place
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

    def _rollout_in_progress(self) -> str | None:
        state = self.rollouts.state
        if state is None or not state.active:
            return None
        return f"rollout {state.rollout_id} of version {state.candidate_version} is in progress"

    def _postponed(self, trigger: str) -> bool:
        """Whether an automatic retraining (``labels``, ``drift``) waits for the active rollout
        to end. Published directly, its version would replace the champion under the rollout
        and end it unjudged ("the live version changed"); entering a rollout itself, it would be
        refused (one at a time). Its labels stay in the window, uncommitted, and the first poll
        after the rollout ends retrains on them. A person's ``irisflow retrain`` is not
        postponed; its winner is saved and held instead of published (:class:`Retraining`)."""
        busy = self._rollout_in_progress()
        if busy != self._postponing and busy is not None:
            log.info("retraining on %s postponed: %s (the labels wait for its end)", trigger, busy)
        self._postponing = busy
        return busy is not None

    def _refuse(self, record: Incoming, reason: Reason, error: str, *, quiet: bool = False) -> None:
        """Queue ``record``'s dead letter; the letter logs it (once) unless ``quiet``."""
        self._outbox.append(
            self._letters.letter(
                record, source_topic=record.topic, reason=reason, error=error, quiet=quiet
            )
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
        """One retraining decision (see :class:`~trainer.retraining.Retraining`)."""
        return await self._retraining.retrain(trigger)

    def _refuse_quietly(self, record: Incoming, reason: Reason, error: str) -> None:
        self._refuse(record, reason, error, quiet=True)


async def _ready(event: asyncio.Event) -> None:
    await event.wait()


async def _first(*tasks: asyncio.Task[None]) -> None:
    """Wait until one of ``tasks`` ends; its error propagates (a dead rollout controller stops
    the trainer like a dead loop does: the supervisor restarts it, the state is in Kafka)."""
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        task.result()
