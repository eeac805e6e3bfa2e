"""The rollout controller: the one writer of ``irisflow.rollouts``, inside ``irisflow trainer``.

Commands (``start``, ``promote``, ``abort``) arrive on ``irisflow.rollout-commands`` from the
gateway, the CLI or the trainer's own challenger; the evidence arrives on
``irisflow.shadow-predictions`` and ``irisflow.labeled``. Every ``evaluate_interval_seconds`` the
controller judges the readings with the policy (:mod:`trainer.rollout.policy`) and publishes the
whole state (stage, share, candidate bytes while active, readings, decisions), so every worker
and gateway follows one truth and nobody races anybody: the state has one writer.

A promotion publishes the candidate's update to ``model-updates`` first (the hot swap every
worker already does, with every load check), then the ``promoted`` state; a worker that sees the
state first keeps scoring the candidate as canary until its model feed catches up, never
without a model. A rollback or abort publishes the ended state: workers drop the candidate.

Every step is a decision, recorded four ways: the state's ``steps`` (what gateways show), the
registry's ``decisions.jsonl`` (``kind: rollout``, the version's deployment history), the
counter ``irisflow_rollout_decisions_total{stage,decided_by}`` (Grafana's annotations) and a
log line.

Restarts: the controller resumes from the newest state record; for an active rollout it
re-reads shadow predictions and labels from the rollout's start (by timestamp), so the readings
are rebuilt exactly rather than estimated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from irisflow.errors import IrisflowError, ModelNotFound
from irisflow.kafka.clients import assign_all, make_consumer, make_producer, send
from irisflow.kafka.model_topic import publish_update
from irisflow.kafka.rollout_topic import publish_state, read_rollout_state
from irisflow.registry import LocalRegistry, load_update
from irisflow.schemas import (
    ACTIVE_STAGES,
    CommandOutcome,
    LabeledSample,
    ModelMetadata,
    ModelUpdate,
    RolloutCommand,
    RolloutMode,
    RolloutStage,
    RolloutState,
    RolloutStep,
    ShadowPrediction,
)
from irisflow.settings import Settings
from irisflow.topics import DeadLetters, Incoming, Outgoing, Reason, Refused, Topics
from trainer.metrics import TrainerMetrics
from trainer.rollout.evaluation import RolloutEvaluation
from trainer.rollout.policy import Verdict, error_rate, judge, numbers_of

__all__ = ["CONSUMER", "RolloutController", "RolloutRefused"]

log = logging.getLogger("trainer.rollout")

CONSUMER = "trainer.rollout"
"""The name the controller signs its dead letters with."""
HISTORY = 500
"""Earlier rollouts' steps a state carries (the schema's bound)."""

Publish = Callable[[ModelUpdate], Awaitable[None]]


class RolloutRefused(IrisflowError):
    """A command the controller cannot carry out, with the HTTP status it maps to."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RolloutController:
    """Owns the rollout of one model: its state, its evaluation, its decisions."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: TrainerMetrics,
        publish: Publish | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.policy = settings.rollout
        self.metrics = metrics
        self.registry = LocalRegistry(settings.registry_dir)
        self._publish_model = publish or (lambda update: publish_update(settings.kafka, update))
        self.clock = clock
        self.topics = Topics.of(settings.kafka)
        self.champion: ModelMetadata | None = None
        self.state: RolloutState | None = None
        self.evaluation: RolloutEvaluation | None = None
        self.stage_started_at = 0.0
        self._outbox: list[RolloutState] = []
        self._promotions: list[ModelUpdate] = []
        self._letters = DeadLetters.to(settings.kafka, CONSUMER, on_letter=self._counted)
        self._letter_box: list[Outgoing] = []
        self.ready = asyncio.Event()

    def _counted(self, topic: str, reason: str, consumer: str) -> None:
        self.metrics.dead_letters.labels(topic, reason, consumer).inc()

    # --- what the rollout is ---------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.state is not None and self.state.active

    def resume(self, state: RolloutState | None) -> None:
        """Take over ``state`` (the newest record) after a restart."""
        self.state = state
        self.evaluation = None
        if state is None or not state.active or state.candidate is None:
            self._export()
            return
        self.stage_started_at = state.steps[-1].at if state.steps else state.started_at or 0.0
        self._evaluate_against(state.candidate.metadata())
        self._export()

    def _evaluate_against(self, candidate: ModelMetadata) -> None:
        state = self.state
        if state is None or state.rollout_id is None:
            return
        champion = self.champion
        if champion is None or champion.version != state.champion_version:
            champion = self._metadata_of(state.champion_version)
        if champion is None:
            return
        self.evaluation = RolloutEvaluation(
            state.rollout_id, champion=champion, candidate=candidate
        )

    def _metadata_of(self, version: int | None) -> ModelMetadata | None:
        if version is None:
            return None
        with contextlib.suppress(IrisflowError, OSError, ValueError):
            return self.registry.metadata(version)
        return None

    def on_champion(self, update: ModelMetadata) -> None:
        """The live version changed (model feed). A rollout whose champion is no longer live
        cannot be judged against it: unless the candidate itself went live, it is aborted."""
        self.champion = update
        state = self.state
        if state is None or not state.active or state.champion_version == update.version:
            return
        if update.version == state.candidate_version:
            self._end(RolloutStage.PROMOTED, "the candidate went live by another path", "trainer")
        else:
            self._end(
                RolloutStage.ABORTED,
                f"the live version changed from {state.champion_version} to {update.version} "
                "during the rollout (published by another path)",
                "trainer",
            )

    # --- commands --------------------------------------------------------------------------

    def handle(self, command: RolloutCommand) -> None:
        """Carry out ``command``; the outcome rides on the next state published."""
        try:
            if command.model_name != self.settings.model_name:
                raise RolloutRefused(422, f"this trainer rolls out {self.settings.model_name!r}")
            if command.action == "start":
                self._start_command(command)
            elif command.action == "promote":
                self._require_active("promote")
                self._end(
                    RolloutStage.PROMOTED,
                    command.reason or "promoted by hand",
                    command.requested_by,
                )
            else:
                self._require_active("abort")
                self._end(
                    RolloutStage.ABORTED, command.reason or "aborted by hand", command.requested_by
                )
            outcome = CommandOutcome(
                command_id=command.command_id, action=command.action, accepted=True, status=200
            )
        except RolloutRefused as exc:
            log.warning("rollout: %s refused (%s): %s", command.action, exc.status, exc)
            outcome = CommandOutcome(
                command_id=command.command_id,
                action=command.action,
                accepted=False,
                status=exc.status,
                error=str(exc),
            )
        base = self.state or RolloutState(model_name=self.settings.model_name)
        self._queue(base.model_copy(update={"last_command": outcome, "updated_at": self.clock()}))

    def _require_active(self, action: str) -> None:
        if not self.active:
            raise RolloutRefused(
                409, f"no rollout is in progress to {action}: start one with a version first"
            )

    def _start_command(self, command: RolloutCommand) -> None:
        assert command.version is not None
        assert command.mode is not None
        try:
            update = self.registry.get(command.version)
        except ModelNotFound as exc:
            raise RolloutRefused(
                404, f"{exc}; train one with `irisflow train --no-publish` first"
            ) from exc
        except (IrisflowError, OSError, ValueError) as exc:
            raise RolloutRefused(422, f"version {command.version} cannot be read: {exc}") from exc
        self.start(
            update,
            command.mode,
            share=command.share,
            automatic=command.automatic,
            decided_by=command.requested_by,
            reason=command.reason,
        )

    def start(
        self,
        update: ModelUpdate,
        mode: RolloutMode,
        *,
        share: float | None = None,
        automatic: bool = True,
        decided_by: str = "trainer",
        reason: str = "",
    ) -> RolloutState:
        """Begin a rollout of ``update`` against the live version (:class:`RolloutRefused`
        when one is in progress, nothing is live, or the candidate is live or will not load)."""
        if self.active and self.state is not None:
            raise RolloutRefused(
                409,
                f"rollout {self.state.rollout_id} of version {self.state.candidate_version} is "
                f"in stage {self.state.stage}: promote or abort it first",
            )
        champion = self.champion
        if champion is None:
            raise RolloutRefused(409, "no version is live to compare a candidate with")
        if update.version == champion.version:
            raise RolloutRefused(409, f"version {update.version} is already live")
        if update.model_name != self.settings.model_name:
            raise RolloutRefused(422, f"version {update.version} is a model of another name")
        try:
            load_update(update, self.settings.artifacts)
        except Exception as exc:  # whatever a bad artifact raises, the workers would refuse it
            raise RolloutRefused(422, f"version {update.version} would not load: {exc}") from exc
        if list(update.feature_names) != list(champion.feature_names):
            raise RolloutRefused(
                422,
                f"version {update.version} takes features {update.feature_names}, the live "
                f"version {champion.feature_names}: requests cannot be scored by both",
            )
        now = self.clock()
        share = share or (
            self.policy.shadow_share if mode == RolloutMode.SHADOW else self.policy.canary_share
        )
        rollout_id = f"{self.settings.model_name}-v{update.version}-{uuid.uuid4().hex[:8]}"
        stage = RolloutStage(mode.value)
        words = reason or f"{mode.value} at {share:.0%} requested"
        step = RolloutStep(
            at=now,
            rollout_id=rollout_id,
            version=update.version,
            champion_version=champion.version,
            stage=stage,
            share=share,
            decided_by=decided_by,
            reason=words,
        )
        previous = self.state
        self.state = RolloutState(
            model_name=self.settings.model_name,
            rollout_id=rollout_id,
            stage=stage,
            candidate_version=update.version,
            champion_version=champion.version,
            share=share,
            automatic=automatic,
            started_at=now,
            updated_at=now,
            steps=[step],
            candidate=update,
            last_command=previous.last_command if previous else None,
            history=_history(previous),
        )
        self.stage_started_at = now
        self.evaluation = RolloutEvaluation(
            rollout_id, champion=champion, candidate=update.metadata()
        )
        self.state = self.state.model_copy(update={"readings": self.evaluation.readings()})
        self._record(step)
        self._queue(self.state)
        return self.state

    # --- evidence and verdicts -------------------------------------------------------------

    def take(self, record: Incoming) -> None:
        """Count one shadow prediction or labeled sample. A shadow prediction that cannot be
        read is dead-lettered; a labeled sample that cannot be read is skipped (the trainer's
        own consumer of that topic dead-letters it: one letter per bad record, not two)."""
        try:
            if record.topic == self.topics.shadow_predictions.name:
                shadow = self.topics.shadow_predictions.decode(record.value, record.key)
                if self.evaluation is not None:
                    self.evaluation.add_shadow(shadow)
            else:
                try:
                    sample = self.topics.labeled.decode(record.value, record.key)
                except Refused:
                    return
                if self.evaluation is not None:
                    self.evaluation.add_labeled(sample)
        except Refused as exc:
            self._letter_box.append(
                self._letters.letter(
                    record, source_topic=record.topic, reason=exc.reason, error=str(exc)
                )
            )

    def add(self, record: ShadowPrediction | LabeledSample) -> None:
        """Count a decoded record (tests and the service's own feed)."""
        if self.evaluation is None:
            return
        if isinstance(record, ShadowPrediction):
            self.evaluation.add_shadow(record)
        else:
            self.evaluation.add_labeled(record)

    def tick(self) -> Verdict | None:
        """Judge the readings now; apply and return the verdict, if any. Queues the state."""
        state = self.state
        if state is None or not state.active or self.evaluation is None:
            return None
        champion, candidate = self.evaluation.readings()
        self.state = state = state.model_copy(
            update={"readings": [champion, candidate], "updated_at": self.clock()}
        )
        verdict = judge(
            state,
            champion,
            candidate,
            self.policy,
            now=self.clock(),
            stage_started_at=self.stage_started_at,
        )
        if verdict is None:
            self._queue(state)
        elif verdict.stage == RolloutStage.CANARY:
            self._advance(verdict)
        else:
            self._end(verdict.stage, verdict.reason, "policy", verdict.numbers)
        self._export()
        return verdict

    def _advance(self, verdict: Verdict) -> None:
        state = self.state
        assert state is not None
        assert state.rollout_id is not None
        assert state.candidate_version is not None
        share = verdict.share if verdict.share is not None else state.share
        now = self.clock()
        step = RolloutStep(
            at=now,
            rollout_id=state.rollout_id,
            version=state.candidate_version,
            champion_version=state.champion_version,
            stage=verdict.stage,
            share=share,
            decided_by="policy",
            reason=verdict.reason,
            numbers=verdict.numbers,
        )
        self.state = state.model_copy(
            update={
                "stage": verdict.stage,
                "share": share,
                "steps": [*state.steps, step],
                "updated_at": now,
            }
        )
        self.stage_started_at = now
        self._record(step)
        self._queue(self.state)

    def _end(
        self,
        stage: RolloutStage,
        reason: str,
        decided_by: str,
        numbers: dict[str, float] | None = None,
    ) -> None:
        state = self.state
        assert state is not None
        assert state.rollout_id is not None
        assert state.candidate_version is not None
        if numbers is None and self.evaluation is not None:
            champion, candidate = self.evaluation.readings()
            numbers = numbers_of(champion, candidate)
        now = self.clock()
        step = RolloutStep(
            at=now,
            rollout_id=state.rollout_id,
            version=state.candidate_version,
            champion_version=state.champion_version,
            stage=stage,
            share=0.0,
            decided_by=decided_by,
            reason=reason,
            numbers=numbers or {},
        )
        readings = self.evaluation.readings() if self.evaluation is not None else state.readings
        ended = state.model_copy(
            update={
                "stage": stage,
                "share": 0.0,
                "steps": [*state.steps, step],
                "readings": readings,
                "updated_at": now,
                "candidate": None,
            }
        )
        if stage == RolloutStage.PROMOTED and state.candidate is not None:
            self._promotions.append(state.candidate)
        self.state = ended
        self.evaluation = None
        self._record(step)
        self._queue(ended)

    # --- recording ---------------------------------------------------------------------------

    def _record(self, step: RolloutStep) -> None:
        entry: dict[str, Any] = {"kind": "rollout", **step.model_dump(mode="json")}
        try:
            self.registry.append_decision(entry)
        except OSError as exc:  # the state still records it; the disk must not stop a rollback
            log.error("rollout: could not append the decision to the registry log: %s", exc)
        self.metrics.rollout_decisions.labels(str(step.stage), step.decided_by).inc()
        log.info(
            "rollout %s: version %d → %s (%s, by %s)%s",
            step.rollout_id,
            step.version,
            step.stage,
            step.reason,
            step.decided_by,
            "".join(f"; {k}={v:g}" for k, v in sorted(step.numbers.items())),
        )

    def _queue(self, state: RolloutState) -> None:
        self.state = state
        self._outbox.append(state)

    def _export(self) -> None:
        """The rollout's gauges: what Prometheus and Grafana show."""
        m = self.metrics
        state = self.state
        active = state is not None and state.active
        m.rollout_active.set(1 if active else 0)
        m.rollout_share.set(state.share if state is not None and active else 0.0)
        m.rollout_candidate.set(state.candidate_version or 0 if state and active else 0)
        m.rollout_champion.set(
            state.champion_version or 0
            if state and active
            else (self.champion.version if self.champion else 0)
        )
        readings = state.readings if state is not None and active else []
        m.clear_readings()
        for reading in readings:
            m.observe_reading(reading, error_rate(reading))

    async def flush(self, producer: AIOKafkaProducer) -> None:
        """Publish promotions (model first), then every queued state, then the dead letters."""
        promotions, self._promotions = self._promotions, []
        for update in promotions:
            await self._publish_model(update)
        states, self._outbox = self._outbox, []
        if states:
            await publish_state(producer, self.settings.kafka, states[-1])
        letters, self._letter_box = self._letter_box, []
        for letter in letters:
            await send(producer, letter)

    # --- the Kafka loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Follow commands and evidence until cancelled; Kafka errors propagate (the trainer
        exits and its supervisor restarts it; the state is in the topic)."""
        kafka = self.settings.kafka
        self.resume(await read_rollout_state(kafka, self.settings.model_name))
        commands = make_consumer(
            kafka, self.topics.rollout_commands.name, group_id=f"{kafka.app_id}-rollout-controller"
        )
        shadows = make_consumer(kafka, group_id=None)
        labels = make_consumer(kafka, group_id=None)
        producer = make_producer(kafka, compression_type="gzip")
        try:
            await producer.start()
            for consumer in (commands, shadows, labels):
                await consumer.start()
            await self._follow(shadows, self.topics.shadow_predictions.name)
            await self._follow(labels, self.topics.labeled.name)
            self.ready.set()
            log.info("rollout controller ready%s", _describe(self.state))
            await self._loop(commands, (shadows, labels), producer)
        finally:
            for consumer in (commands, shadows, labels):
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await producer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        tps = await assign_all(consumer, topic, start="end")
        state = self.state
        if state is None or not state.active or state.started_at is None:
            return
        stamps = await consumer.offsets_for_times({tp: int(state.started_at * 1000) for tp in tps})
        for tp in tps:
            found = stamps.get(tp)
            if found is not None:
                consumer.seek(tp, found.offset)

    async def _loop(
        self,
        commands: AIOKafkaConsumer,
        evidence: tuple[AIOKafkaConsumer, ...],
        producer: AIOKafkaProducer,
    ) -> None:
        interval = self.policy.evaluate_interval_seconds
        last = time.monotonic()
        while True:
            batches = await commands.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    self._command(Incoming.of(record))
            for consumer in evidence:
                got = await consumer.getmany(timeout_ms=50, max_records=5000)
                for records in got.values():
                    for record in records:
                        self.take(Incoming.of(record))
            if time.monotonic() - last >= interval:
                last = time.monotonic()
                self.tick()
            await self.flush(producer)
            if batches:
                await commands.commit()

    def _command(self, record: Incoming) -> None:
        try:
            command = self.topics.rollout_commands.decode(record.value, record.key)
        except Refused as exc:
            self._letter_box.append(
                self._letters.letter(
                    record, source_topic=record.topic, reason=exc.reason, error=str(exc)
                )
            )
            return
        except Exception as exc:
            self._letter_box.append(
                self._letters.letter(
                    record,
                    source_topic=record.topic,
                    reason=Reason.PROCESSING_FAILED,
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
            return
        log.info(
            "rollout: %s requested by %s%s",
            command.action,
            command.requested_by,
            f" (version {command.version}, {command.mode})" if command.action == "start" else "",
        )
        self.handle(command)


def _history(previous: RolloutState | None) -> list[RolloutStep]:
    if previous is None:
        return []
    return [*previous.history, *previous.steps][-HISTORY:]


def _describe(state: RolloutState | None) -> str:
    if state is None or state.stage not in ACTIVE_STAGES:
        return ": no rollout in progress"
    return (
        f": resuming rollout {state.rollout_id} of version {state.candidate_version} "
        f"({state.stage} at {state.share:.0%})"
    )
