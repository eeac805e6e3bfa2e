"""What a worker does with each batch, minus Faust: score, join, watch for drift, count.

The Faust agents in :mod:`streams.app` only turn events into :class:`Incoming` records, call a
method here and produce the :class:`Outgoing` records it returns, so everything below is tested
without a broker. Nothing here awaits: a batch is handled in one go between two awaits of the
agent, so a model swap lands between batches, never inside one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, MutableMapping, Sequence

from irisflow.otel import Spans
from irisflow.schemas import DriftEvent, LabeledSample
from irisflow.settings import Settings
from irisflow.topics import DeadLetters, Incoming, Outgoing, Reason, Refused, Topics
from streams.hops import WorkerStamps, carry, hedged, record_spans
from streams.intake import CONSUMER as SCORING
from streams.intake import BatchResult, LiveModel, Scored, unanswerable
from streams.join import JoinWindow
from streams.metrics import WorkerMetrics
from streams.model_updates import ModelHolder
from streams.monitor import Alarm, DriftMonitor
from streams.quality import LiveQuality
from streams.scoring import score_batch

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

JOIN = "streams.join"


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
            self.metrics.reset_drift()
        return self.monitor

    def score(self, records: Sequence[Incoming]) -> list[Outgoing]:
        """Answer every request of a micro-batch; remember single requests for the join.

        Each step fails alone: scoring (see :meth:`_scored`), the join (per request) and the
        drift monitors (logged; the answers are out either way) never cost each other.
        """
        fetched = self.clock()
        model = self.holder.current
        result = self._scored(model, records)
        scored_at = self.clock()
        self.metrics.observe(result)
        if model is not None and result.labels:
            copies = hedged(records)
            for scored in result.singles:
                if (scored.key, scored.partition) not in copies:
                    self._join_prediction(scored, model, scored_at)
            self._watch(model, result)
        stamps = WorkerStamps(fetched, scored_at, self.clock())
        out = carry(
            self._drain(),
            records,
            answers=self.topics.predictions,
            stamps=stamps,
            by_key=(self.topics.labeled,),
            by_batch=(self.topics.drift_events,),
        )
        if self.spans.enabled:
            record_spans(self.spans, out, records, topics=self.topics, stamps=stamps)
        return out

    def _watch(self, model: LiveModel, result: BatchResult) -> None:
        monitor = self._monitor_for(model)
        if monitor is None:
            return
        try:
            alarms = monitor.update_features(result.rows)
            alarms += monitor.update_predictions(result.labels)
            self._alarms(monitor, alarms)
        except Exception:
            log.exception("drift monitors failed on a batch; its answers are unaffected")

    def _scored(self, model: LiveModel | None, records: Sequence[Incoming]) -> BatchResult:
        """:func:`score_batch` for the batch; if it raises (a bug: bad input is refused inside
        it), record by record, so only a record that still raises alone is lost, and that one
        is dead-lettered and answered (when its key names it)."""
        try:
            result = self._score_batch(model, records)
        except Exception:
            log.exception("scoring a batch of %d raised; scoring it record by record", len(records))
        else:
            self._out.extend(result.answers)
            self._out.extend(result.dead_letters)
            return result
        merged = BatchResult(model_version=model.version if model else None)
        for record in records:
            try:
                result = self._score_batch(model, [record])
            except Exception as exc:
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

    def _score_batch(self, model: LiveModel | None, records: Sequence[Incoming]) -> BatchResult:
        return score_batch(
            model,
            records,
            source_topic=self.topics.requests,
            answers_topic=self.topics.predictions,
            letters=self._letters[SCORING],
            clock=self.clock,
        )

    def _join_prediction(self, scored: Scored, model: LiveModel, now: float) -> None:
        """Remember a scored request for its feedback; a join entry that cannot be read (or a
        sample that cannot be built from it) costs that entry, never the batch."""
        try:
            sample = self.join.on_prediction(
                scored.key,
                features=scored.features,
                label=scored.label,
                version=model.version,
                partition=scored.partition or 0,
                now=now,
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
        self.metrics.observe_drift(monitor.readings(), alarms)
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
