"""What a worker does with each batch, minus Faust: score, join, watch for drift, count.

The Faust agents in :mod:`streams.app` only turn events into :class:`Incoming` records, call a
method here and produce the :class:`Outgoing` records it returns, so everything below is tested
without a broker. Nothing here awaits: a batch is handled in one go between two awaits of the
agent, so a model swap lands between batches, never inside one.

During a rollout (:attr:`ModelHolder.rollout`, read once per batch) each request is routed by
its id (:mod:`irisflow.rollout`): a canary's share is answered by the candidate, the rest by the
champion, each group in one ``predict_proba`` call. The paired requests (the shadow share, or
the canary's share) are also scored by the other version, which answers nobody and dead-letters
nothing; for each one a :class:`~irisflow.schemas.ShadowPrediction` goes to
``shadow-predictions`` in the request's partition. Without a rollout a batch costs what it
always did: the routing is a branch per batch, the hashing only runs while a rollout is active.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, MutableMapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from irisflow.otel import Spans
from irisflow.rollout import routed_to_candidate, shadowed
from irisflow.schemas import (
    DriftEvent,
    LabeledSample,
    RolloutMode,
    RolloutStage,
    RolloutState,
    ShadowPrediction,
    clip,
)
from irisflow.settings import Settings
from irisflow.topics import DeadLetters, Incoming, Outgoing, Reason, Refused, Topics
from streams.estimate import LabelFreeMonitor
from streams.hops import WorkerStamps, carry, hedged, record_spans
from streams.intake import CONSUMER as SCORING
from streams.intake import BatchResult, LiveModel, Outcome, OutcomeKey, Scored, unanswerable
from streams.join import JoinWindow
from streams.metrics import WorkerMetrics
from streams.model_updates import ModelHolder, Rollout
from streams.monitor import Alarm, DriftMonitor
from streams.quality import LiveQuality
from streams.scoring import score_batch

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

JOIN = "streams.join"


@dataclass(frozen=True)
class Scoring:
    """One version's pass over its part of a rollout batch: what it made of each request and
    how long the pass took."""

    model: LiveModel
    outcomes: dict[OutcomeKey, Outcome]
    seconds: float


class Pipeline:
    """One worker's scoring, feedback join, drift monitors and live quality."""

    def __init__(
        self,
        settings: Settings,
        *,
        holder: ModelHolder,
        metrics: WorkerMetrics,
        join_data: MutableMapping[bytes, bytes],
        changelog_topic: str,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        spans: Spans | None = None,
    ) -> None:
        self.settings = settings
        self.topics = settings.kafka.topics
        self.typed = Topics(self.topics)
        self._letters = {
            consumer: DeadLetters.to(settings.kafka, consumer, on_letter=metrics.on_letter)
            for consumer in (SCORING, JOIN)
        }
        self.holder = holder
        self.metrics = metrics
        self.clock = clock
        self._monotonic = monotonic
        self.spans = spans or Spans()
        self._changelog_topic = changelog_topic
        self._out: list[Outgoing] = []
        self.join = JoinWindow(
            join_data,
            self._changelog,
            window_seconds=settings.streams.join_window_seconds,
            feedback_topic=self.topics.feedback,
        )
        self.quality = LiveQuality(window=settings.streams.accuracy_window)
        self.monitor: DriftMonitor | None = None
        self.label_free: LabelFreeMonitor | None = None
        """The live version's estimated accuracy from its confidences (no labels needed)."""

    def _changelog(self, key: bytes, value: bytes | None, partition: int) -> None:
        self._out.append(Outgoing(self._changelog_topic, key, value, partition))

    def _drain(self) -> list[Outgoing]:
        out, self._out = self._out, []
        self.metrics.join_entries.set(len(self.join))
        return out

    def _monitor_for(self, model: LiveModel | None) -> DriftMonitor | None:
        if model is None or not self.settings.drift.enabled:
            return None
        if self.monitor is None or self.monitor.version != model.version:
            self.monitor = DriftMonitor(model.metadata, self.settings.drift, clock=self._monotonic)
            self.label_free = LabelFreeMonitor(
                model.metadata, self.settings.drift, clock=self._monotonic
            )
            self.metrics.reset_drift()
        return self.monitor

    def score(self, records: Sequence[Incoming]) -> list[Outgoing]:
        """Answer every request of a micro-batch; remember single requests for the join.

        Each step fails alone: scoring (see :meth:`_scored`), the join (per request) and the
        drift monitors (logged; the answers are out either way) never cost each other.
        """
        fetched = self.clock()
        model = self.holder.current
        rollout = self.holder.rollout
        if rollout is None or model is None or rollout.candidate.version == model.version:
            scored_at = self._score_live(model, records)
        else:
            scored_at = self._score_rollout(model, rollout, records)
        stamps = WorkerStamps(fetched, scored_at, self.clock())
        out = carry(
            self._drain(),
            records,
            answers=self.topics.predictions,
            stamps=stamps,
            by_key=(self.topics.labeled, self.topics.shadow_predictions),
            by_batch=(self.topics.drift_events,),
        )
        if self.spans.enabled:
            record_spans(self.spans, out, records, topics=self.topics, stamps=stamps)
        return out

    def _score_live(self, model: LiveModel | None, records: Sequence[Incoming]) -> float:
        """Every request answered by the live version (no rollout): the common path."""
        result = self._scored(model, records)
        scored_at = self.clock()
        self.metrics.observe(result)
        if model is not None and result.labels:
            copies = hedged(records)
            for scored in result.singles:
                if (scored.key, scored.partition) not in copies:
                    self._join_prediction(scored, model, scored_at)
            self._watch(model, result)
        return scored_at

    def _score_rollout(
        self, champion: LiveModel, rollout: Rollout, records: Sequence[Incoming]
    ) -> float:
        """Route by request id, answer each group with its version, score the paired requests
        with the other version too, and send one shadow prediction per paired request.

        A gateway's hedged copy is routed like its original (same id) but not paired again:
        its original already makes the shadow prediction, which must be counted once."""
        state, candidate = rollout.state, rollout.candidate
        canary = state.stage == RolloutStage.CANARY
        inside = routed_to_candidate if canary else shadowed
        copies = hedged(records)
        to_champion: list[Incoming] = []
        to_candidate: list[Incoming] = []
        paired: list[Incoming] = []
        for record in records:
            key = record.key
            if key is not None and inside(state, key.decode(errors="replace")):
                (to_candidate if canary else to_champion).append(record)
                if (key, record.partition) not in copies:
                    paired.append(record)
            else:
                to_champion.append(record)
        served, other = (candidate, champion) if canary else (champion, candidate)
        started = time.perf_counter()
        shadow_pairs = bool(paired) and not canary
        answered = [(champion, self._scored(champion, to_champion, outcomes=shadow_pairs))]
        champion_seconds = time.perf_counter() - started
        candidate_seconds = 0.0
        if to_candidate:
            started = time.perf_counter()
            answered.append((candidate, self._scored(candidate, to_candidate, outcomes=True)))
            candidate_seconds = time.perf_counter() - started
        started = time.perf_counter()
        compared = self._compare(other, paired)
        compared_seconds = time.perf_counter() - started
        scored_at = self.clock()
        for model, result in answered:
            self.metrics.observe(result)
            for scored in result.singles:
                where = (scored.key, scored.partition)
                if where not in copies:
                    self._join_prediction(scored, model, scored_at, compared.get(where), other)
            if model is champion and result.labels:
                self._watch(model, result)  # drift monitors watch the live version only
        if paired:
            served_seconds = candidate_seconds if canary else champion_seconds
            served_outcomes = answered[-1 if canary else 0][1].outcomes or {}
            self._shadow_predictions(
                state,
                paired,
                Scoring(served, served_outcomes, served_seconds),
                Scoring(other, compared, compared_seconds),
                scored_at,
            )
        return scored_at

    def _compare(self, model: LiveModel, paired: Sequence[Incoming]) -> dict[OutcomeKey, Outcome]:
        """What ``model`` makes of the paired requests, answering nobody; a raise costs only
        the comparison (each request's outcome is then that error)."""
        if not paired:
            return {}
        try:
            result = score_batch(
                model,
                paired,
                source_topic=self.topics.requests,
                answers_topic=self.topics.predictions,
                clock=self.clock,
                answer=False,
            )
        except Exception as exc:
            log.exception("version %d raised comparing %d requests", model.version, len(paired))
            error = clip(f"scoring raised: {exc!r}")
            return {(r.key or b"", r.partition): Outcome(error=error) for r in paired}
        return result.outcomes or {}

    def _shadow_predictions(
        self,
        state: RolloutState,
        paired: Sequence[Incoming],
        served: Scoring,
        other: Scoring,
        scored_at: float,
    ) -> None:
        """One shadow prediction per paired request at least one version scored (a record that
        is not a request, or that neither version takes, is refused by the answering pass as
        without a rollout and compared with nothing: it would count as an error of both)."""
        if state.rollout_id is None or state.stage is None:
            return
        mode = RolloutMode(state.stage.value)
        topic = self.typed.shadow_predictions
        sent = 0
        for record in paired:
            where = (record.key or b"", record.partition)
            mine = served.outcomes.get(where)
            if mine is None:
                continue
            theirs = other.outcomes.get(where) or Outcome(error="not scored by this version")
            if mine.error is not None and theirs.error is not None:
                continue  # neither could score it (bad input): it says nothing about either
            try:
                prediction = ShadowPrediction(
                    request_id=where[0].decode(),
                    rollout_id=state.rollout_id,
                    mode=mode,
                    version=other.model.version,
                    served_version=served.model.version,
                    labels=theirs.labels,
                    served_labels=mine.labels,
                    confidences=theirs.confidences,
                    served_confidences=mine.confidences,
                    error=None if theirs.error is None else clip(theirs.error),
                    served_error=None if mine.error is None else clip(mine.error),
                    seconds=other.seconds,
                    served_seconds=served.seconds,
                    scored_at=scored_at,
                )
            except (ValidationError, UnicodeDecodeError) as exc:
                log.error("no shadow prediction for %r: %s", where[0][:80], exc)
                continue
            self._out.append(topic.record(prediction, partition=record.partition))
            sent += 1
        if sent:
            self.metrics.shadow_scored.labels(str(other.model.version), mode.value).inc(sent)

    def _watch(self, model: LiveModel, result: BatchResult) -> None:
        monitor = self._monitor_for(model)
        if monitor is None:
            return
        try:
            alarms = monitor.update_features(result.rows)
            alarms += monitor.update_predictions(result.labels)
            if self.label_free is not None:
                alarms += self.label_free.update(result.confidences)
                self.metrics.observe_estimate(monitor.version, self.label_free.estimate)
            self._alarms(monitor, alarms)
        except Exception:
            log.exception("drift monitors failed on a batch; its answers are unaffected")

    def _scored(
        self, model: LiveModel | None, records: Sequence[Incoming], *, outcomes: bool = False
    ) -> BatchResult:
        """:func:`score_batch` for the batch; if it raises (a bug: bad input is refused inside
        it), record by record, so only a record that still raises alone is lost, and that one
        is dead-lettered and answered (when its key names it)."""
        try:
            result = self._score_batch(model, records, outcomes)
        except Exception:
            log.exception("scoring a batch of %d raised; scoring it record by record", len(records))
        else:
            self._out.extend(result.answers)
            self._out.extend(result.dead_letters)
            return result
        merged = BatchResult(model_version=model.version if model else None)
        if outcomes:
            merged.outcomes = {}
        for record in records:
            try:
                result = self._score_batch(model, [record], outcomes)
            except Exception as exc:
                if merged.outcomes is not None and record.key is not None:
                    error = clip(f"scoring raised: {exc!r}")
                    merged.outcomes[record.key, record.partition] = Outcome(error=error)
                self._dead_letter(
                    SCORING,
                    record,
                    self.topics.requests,
                    f"scoring raised: {exc!r}",
                    Reason.PROCESSING_FAILED,
                )
                self._out.extend(unanswerable(record, self.topics.predictions, self.clock()))
                merged.reject(str(Reason.PROCESSING_FAILED))
                continue
            self._out.extend(result.answers)
            self._out.extend(result.dead_letters)
            merged.absorb(result)
        return merged

    def _score_batch(
        self, model: LiveModel | None, records: Sequence[Incoming], outcomes: bool = False
    ) -> BatchResult:
        return score_batch(
            model,
            records,
            source_topic=self.topics.requests,
            answers_topic=self.topics.predictions,
            letters=self._letters[SCORING],
            clock=self.clock,
            outcomes=outcomes,
        )

    def _join_prediction(
        self,
        scored: Scored,
        model: LiveModel,
        now: float,
        shadow: Outcome | None = None,
        shadow_model: LiveModel | None = None,
    ) -> None:
        """Remember a scored request for its feedback (with the other version's label when
        it was paired); a join entry that cannot be read (or a sample that cannot be built
        from it) costs that entry, never the batch."""
        shadow_version = shadow_model.version if shadow is not None and shadow_model else None
        shadow_label = shadow.labels[0] if shadow is not None and shadow.labels else None
        try:
            sample = self.join.on_prediction(
                scored.key,
                features=scored.features,
                label=scored.label,
                version=model.version,
                partition=scored.partition or 0,
                now=now,
                shadow_version=shadow_version,
                shadow_label=shadow_label,
            )
            if sample is not None:
                self._labeled(sample, scored.partition)
        except Exception as exc:
            log.exception("join of request %r failed; its entry is dropped", scored.key)
            self.join.drop(scored.key, scored.partition or 0)
            record = Incoming(None, scored.key, scored.partition, None, self.topics.requests)
            self._dead_letter(
                JOIN,
                record,
                self.topics.requests,
                f"joining the prediction failed: {exc!r}",
                Reason.PROCESSING_FAILED,
            )

    def feedback(self, records: Sequence[Incoming]) -> list[Outgoing]:
        """Join feedback with waiting predictions; hold what comes before its prediction.

        Each record is handled on its own: one that cannot be decoded, or whose handling
        raises, is dead-lettered and the rest of the batch goes on.
        """
        now = self.clock()
        for record in records:
            try:
                self._one_feedback(record, now)
            except Refused as exc:
                self.metrics.feedback.labels("invalid").inc()
                self._dead_letter(JOIN, record, self.topics.feedback, str(exc), exc.reason)
            except Exception as exc:
                log.exception("feedback at offset %s failed", record.offset)
                self.metrics.feedback.labels("failed").inc()
                if record.key is not None:
                    self.join.drop(record.key, record.partition or 0)
                self._dead_letter(
                    JOIN,
                    record,
                    self.topics.feedback,
                    f"joining failed: {exc!r}",
                    Reason.PROCESSING_FAILED,
                )
        topics = self.topics
        return carry(
            self._drain(), records, by_key=(topics.labeled,), by_batch=(topics.drift_events,)
        )

    def _one_feedback(self, record: Incoming, now: float) -> None:
        feedback = self.typed.feedback.decode(record.value, record.key)
        model = self.holder.current
        if model is not None and feedback.label not in model.class_set:
            # One unknown label in a retraining window fails the whole retraining.
            raise Refused(
                Reason.SCHEMA_MISMATCH,
                f"Feedback: label {feedback.label[:64]!r} is not one of the live model's classes "
                f"({', '.join(model.classes)})",
            )
        outcome = self.join.on_feedback(
            feedback,
            raw=record.value or b"",
            partition=record.partition or 0,
            offset=record.offset,
            now=now,
        )
        self.metrics.feedback.labels(outcome.kind).inc()
        if outcome.sample is not None:
            self._labeled(outcome.sample, record.partition)

    def sweep(self, *, owned: Collection[int]) -> list[Outgoing]:
        """Expire old join entries; dead-letter feedback that never met its prediction."""
        expired = self.join.expire(self.clock(), owned=owned)
        self.metrics.join_expired.labels("prediction").inc(expired.predictions)
        self.metrics.join_expired.labels("joined").inc(expired.joined)
        self.metrics.join_expired.labels("feedback").inc(len(expired.unmatched))
        for key, partition, offset, raw, error in expired.unmatched:
            record = Incoming(raw, key, partition, offset, self.topics.feedback)
            self._dead_letter(
                JOIN, record, self.topics.feedback, error, Reason.UNMATCHED_FEEDBACK, quiet=True
            )
        return self._drain()

    def _labeled(self, sample: LabeledSample, partition: int | None) -> None:
        self._out.append(self.typed.labeled.record(sample, partition=partition))
        if sample.model_version is None or sample.predicted_label is None:
            return
        dropped = self.quality.update(
            sample.model_version, sample.true_label, sample.predicted_label
        )
        score = self.quality.scores[sample.model_version]
        self.metrics.observe_quality(sample.model_version, score, dropped)
        monitor = self._monitor_for(self.holder.current)
        if monitor is not None and monitor.version == sample.model_version:
            error = sample.true_label != sample.predicted_label
            self._alarms(monitor, monitor.update_errors([error]))

    def _alarms(self, monitor: DriftMonitor, alarms: list[Alarm]) -> None:
        extra = self.label_free.readings() if self.label_free is not None else []
        self.metrics.observe_drift([*monitor.readings(), *extra], alarms)
        for alarm in alarms:
            log.warning(
                "drift on %s (%s): statistic %.4g, threshold %.4g, window %d, model version %d",
                alarm.feature,
                alarm.detector,
                alarm.statistic,
                alarm.threshold,
                alarm.window,
                monitor.version,
            )
            event = DriftEvent(
                model_name=self.settings.model_name,
                model_version=monitor.version,
                feature=alarm.feature,
                detector=alarm.detector,
                statistic=alarm.statistic,
                threshold=alarm.threshold,
                window=alarm.window,
            )
            self._out.append(self.typed.drift_events.record(event))

    def _dead_letter(
        self,
        consumer: str,
        record: Incoming,
        topic: str,
        error: str,
        reason: Reason,
        *,
        quiet: bool = False,
    ) -> None:
        letters = self._letters[consumer]
        self._out.append(
            letters.letter(record, source_topic=topic, reason=reason, error=error, quiet=quiet)
        )
