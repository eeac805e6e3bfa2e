"""``irisflow trainer``: retrain when labels, drift or a person ask for it; publish if not worse.

Offsets are committed only after a retraining decision, so a trainer that dies (even mid-way
through training) re-reads the same labels on restart and decides again; a version is published
only after it is completely written to the registry, so nothing partial ever goes live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from irisflow.errors import ArtifactError, SchemaError
from irisflow.kafka.clients import make_consumer, make_producer
from irisflow.kafka.model_topic import ModelFeed
from irisflow.registry import deserialize_model
from irisflow.schemas import DeadLetter, DriftEvent, LabeledSample, ModelUpdate, RetrainRequest
from irisflow.settings import Settings
from trainer.data import Dataset, combine, load_dataset
from trainer.gate import GateDecision, judge, split_recent
from trainer.metrics import TrainerMetrics
from trainer.publish import save_and_publish
from trainer.training import TrainingOutcome, train_on

__all__ = ["Decision", "RetrainingService"]

log = logging.getLogger(__name__)

TrainFn = Callable[[Dataset], TrainingOutcome]


@dataclass(frozen=True)
class Decision:
    trigger: str
    gate: GateDecision
    version: int | None
    algorithm: str
    seconds: float


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
        self._window: deque[LabeledSample] = deque(maxlen=settings.retraining.window_size)
        self._pending = 0
        self._champion: tuple[ModelUpdate, Any] | None = None
        self._last_drift_retrain = float("-inf")
        self._base = load_dataset(settings.data, base_dir=settings.params_path.parent)
        self.ready = asyncio.Event()

    async def _on_model(self, update: ModelUpdate) -> bool:
        try:
            model = await asyncio.to_thread(
                deserialize_model, update.artifact, sha256=update.sha256
            )
        except ArtifactError as exc:
            log.error(
                "trainer: live version %d cannot be loaded as champion: %s", update.version, exc
            )
            return False
        self._champion = (update, model)
        self.metrics.live_version.set(update.version)
        return True

    async def run(self) -> None:
        topics = self.settings.kafka.topics
        feed = ModelFeed(self.settings.kafka, self.settings.model_name, self._on_model)
        follow = asyncio.create_task(feed.run(), name="trainer-model-feed")
        consumer = make_consumer(
            self.settings.kafka,
            topics.labeled,
            topics.drift_events,
            topics.retrain_requests,
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

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            triggers: list[str] = []
            for records in batches.values():
                for record in records:
                    trigger = await self._handle(record, producer)
                    if trigger:
                        triggers.append(trigger)
            if self._pending >= self.settings.retraining.min_new_labels:
                triggers.append("labels")
            if triggers:
                trigger = "manual" if "manual" in triggers else triggers[0]
                await self.retrain(trigger)
                await consumer.commit()

    async def _handle(
        self, record: ConsumerRecord[bytes, bytes], producer: AIOKafkaProducer
    ) -> str | None:
        topics = self.settings.kafka.topics
        try:
            if record.topic == topics.labeled:
                sample = LabeledSample.from_bytes(record.value)
                missing = set(self._base.feature_names) - set(sample.features)
                if missing:
                    raise SchemaError(
                        f"LabeledSample: missing features {', '.join(sorted(missing))}"
                    )
                self._window.append(sample)
                self._pending += 1
                self.metrics.labels_seen.inc()
                self.metrics.pending_labels.set(self._pending)
                return None
            if record.topic == topics.retrain_requests:
                request = RetrainRequest.from_bytes(record.value)
                if request.model_name != self.settings.model_name:
                    return None
                log.info("retraining requested by %s: %s", request.requested_by, request.reason)
                return "manual"
            event = DriftEvent.from_bytes(record.value)
        except SchemaError as exc:
            log.warning(
                "%s[%d] offset %d dead-lettered: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            letter = DeadLetter(
                source_topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                original=record.value or b"",
                error=str(exc),
            )
            await producer.send(topics.dead_letters, key=record.key, value=letter.to_bytes())
            return None
        cooldown = self.settings.retraining.drift_cooldown_seconds
        if (
            event.model_name != self.settings.model_name
            or time.monotonic() - self._last_drift_retrain < cooldown
        ):
            return None
        log.info(
            "drift alarm on %s (%s %.3f > %.3f): retraining",
            event.feature,
            event.detector,
            event.statistic,
            event.threshold,
        )
        self._last_drift_retrain = time.monotonic()
        return "drift"

    async def retrain(self, trigger: str) -> Decision:
        """Train a challenger on base data + recent labels, gate it, publish it if it wins."""
        started = time.perf_counter()
        samples = list(self._window)
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
        decision = Decision(
            trigger, gate, version, outcome.algorithm, time.perf_counter() - started
        )
        self._record(decision, outcome)
        self._pending = 0
        self.metrics.pending_labels.set(0)
        return decision

    def _record(self, decision: Decision, outcome: TrainingOutcome) -> None:
        outcome_label = "promoted" if decision.gate.promoted else "rejected"
        self.metrics.retrains.labels(decision.trigger, outcome_label).inc()
        self.metrics.duration.observe(decision.seconds)
        for score in outcome.candidates:
            self.metrics.candidate_score.labels(score.name).set(score.mean)
        for role, value in (
            ("challenger", decision.gate.challenger_score),
            ("champion", decision.gate.champion_score),
        ):
            if value is not None:
                self.metrics.gate_score.labels(role).set(value)
        self.decisions.append(decision)
        entry = {
            "at": time.time(),
            "trigger": decision.trigger,
            "outcome": outcome_label,
            "version": decision.version,
            "algorithm": decision.algorithm,
            "seconds": round(decision.seconds, 3),
            **decision.gate.as_dict(),
            "parent_version": self._champion[0].version if self._champion else None,
        }
        folder = self.settings.registry_dir
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "decisions.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        log.info(
            "retraining (%s): %s — %s%s",
            decision.trigger,
            outcome_label,
            decision.gate.reason,
            f"; published version {decision.version}" if decision.version else "",
        )
