"""The trainer's consume loop, driven by a scripted stand-in for its Kafka consumer and producer.

What these pin is the order of effects the README promises: "Offsets are committed only after a
decision, so a trainer that dies re-reads the same labels and decides again", and "offsets are
committed only after the work they stand for is on the broker" (dead letters first). The
integration tests see the same on a real broker, but only after a retraining and a restart; here
the order is recorded call by call, in milliseconds, and a broken order fails by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError

from irisflow.registry import LocalRegistry
from irisflow.schemas import (
    DeadLetter,
    DriftEvent,
    LabeledSample,
    ModelUpdate,
    RetrainRequest,
    RolloutCommand,
    RolloutMode,
)
from irisflow.settings import DataSettings, Settings, TrainingSettings
from tests.conftest import SettingsFactory
from tests.factories import IRIS_FEATURES, iris_xy, model_update
from tests.unit.trainer.failing_disk import FailingDisk
from trainer.data import Dataset, load_dataset
from trainer.service import RetrainingService
from trainer.training import TrainingOutcome, train_on

MIN_NEW_LABELS = 10
COOLDOWN = 300.0


@pytest.fixture(scope="module")
def outcome() -> TrainingOutcome:
    """One real challenger, trained once: the loop's order does not depend on what it learned."""
    training = TrainingSettings(candidates={"naive_bayes": {}}, cv_folds=3)
    return train_on(load_dataset(DataSettings()), training, show_progress=False)


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(
        **{
            "retraining.min_new_labels": MIN_NEW_LABELS,
            "retraining.drift_cooldown_seconds": COOLDOWN,
        }
    )


# ------------------------------------------------------------------------- the stand-ins


@dataclass
class Script:
    """What happened, in order: ``fetch`` (a batch handed out), ``train`` (training began),
    ``letter <reason>`` (a dead letter acknowledged by the "broker"), ``commit``."""

    events: list[str] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    decisions_at_commit: list[int] = field(default_factory=list)


class Consumer:
    """Hands out one scripted batch per ``getmany``, then signals ``idle`` and waits forever."""

    def __init__(
        self,
        script: Script,
        batches: list[list[ConsumerRecord[bytes, bytes]]],
        service: RetrainingService,
        *,
        before_batch: Callable[[int], None] = lambda index: None,
    ) -> None:
        self.script = script
        self.batches = list(batches)
        self.service = service
        self.before_batch = before_batch
        self.idle = asyncio.Event()
        self.handed = 0
        self.polls: list[dict[str, Any]] = []

    async def getmany(self, **options: Any) -> dict[TopicPartition, list[Any]]:
        self.polls.append(options)
        if not self.batches:
            self.idle.set()
            await asyncio.Event().wait()  # nothing more to read: the loop waits, like Kafka's
        self.before_batch(self.handed)
        self.handed += 1
        batch = self.batches.pop(0)
        self.script.events.append("fetch")
        return {TopicPartition(batch[0].topic, 0): batch} if batch else {}

    async def commit(self) -> None:
        self.script.events.append("commit")
        self.script.decisions_at_commit.append(len(self.service.decisions))


class Producer:
    """Records each dead letter as acknowledged (``send_and_wait`` returned)."""

    def __init__(self, script: Script) -> None:
        self.script = script

    async def send_and_wait(self, topic: str, value: bytes, **options: Any) -> None:
        letter = DeadLetter.from_bytes(value)
        self.script.events.append(f"letter {letter.reason}")
        self.script.letters.append(letter)


def _record(
    topic: str, offset: int, value: bytes | None, key: bytes | None
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic, 0, offset, 0, 0, key, value, None, len(key or b""), len(value or b""), ()
    )


def _labels(settings: Settings, first: int, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    x, y = iris_xy()
    records = []
    for offset in range(first, first + count):
        row = (offset * 7) % len(y)
        sample = LabeledSample(
            request_id=f"r{offset}",
            features=dict(zip(IRIS_FEATURES, map(float, x[row]), strict=True)),
            true_label=str(y[row]),
        )
        records.append(
            _record(settings.kafka.topics.labeled, offset, sample.to_bytes(), b"r%d" % offset)
        )
    return records


def _drift(settings: Settings, offset: int) -> ConsumerRecord[bytes, bytes]:
    alarm = DriftEvent(
        model_name=settings.model_name,
        feature="petal_length",
        detector="adwin",
        statistic=1.0,
        threshold=0.5,
        window=10,
    )
    return _record(
        settings.kafka.topics.drift_events, offset, alarm.to_bytes(), b"petal_length/adwin"
    )


def _request(settings: Settings, offset: int) -> ConsumerRecord[bytes, bytes]:
    request = RetrainRequest(model_name=settings.model_name, reason="test", requested_by="pytest")
    return _record(
        settings.kafka.topics.retrain_requests,
        offset,
        request.to_bytes(),
        settings.model_name.encode(),
    )


def _recording(
    script: Script, outcome: TrainingOutcome, sizes: list[int] | None = None
) -> Callable[[Dataset], TrainingOutcome]:
    def train(data: Dataset) -> TrainingOutcome:
        script.events.append("train")
        if sizes is not None:
            sizes.append(data.n_samples)
        return outcome

    return train


def _service(settings: Settings, train: Callable[[Dataset], TrainingOutcome]) -> RetrainingService:
    """A service with version 1 as champion, so a decision needs no publish (and no broker):
    too few held-out labels to replace it, so every challenger here is rejected."""
    service = RetrainingService(settings, train=train)
    assert asyncio.run(service._on_model(model_update(1)))
    return service


async def _run_until_idle(service: RetrainingService, consumer: Consumer, script: Script) -> None:
    """Run the loop until the script is exhausted; the loop's own error, if it raised, is raised."""
    loop = asyncio.create_task(service._loop(consumer, Producer(script)))
    idle = asyncio.create_task(consumer.idle.wait())
    try:
        await asyncio.wait({loop, idle}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if loop.done():
            loop.result()
        assert consumer.idle.is_set(), "the loop did not get through its batches"
    finally:
        for task in (loop, idle):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _drive(
    service: RetrainingService,
    script: Script,
    batches: list[list[ConsumerRecord[bytes, bytes]]],
    **options: Any,
) -> None:
    asyncio.run(_run_until_idle(service, Consumer(script, batches, service, **options), script))


# ------------------------------------------------------------ offsets only after a decision


def test_labels_past_the_threshold_are_committed_only_after_their_retraining_decision(
    settings: Settings, outcome: TrainingOutcome
) -> None:
    script = Script()
    service = _service(settings, _recording(script, outcome))

    _drive(service, script, [_labels(settings, 0, MIN_NEW_LABELS)])

    assert script.events == ["fetch", "train", "commit"]
    assert script.decisions_at_commit == [1]
    assert service.decisions[0].trigger == "labels"


def test_labels_below_the_threshold_are_neither_retrained_on_nor_committed(
    settings: Settings, outcome: TrainingOutcome
) -> None:
    """``retraining.min_new_labels`` counts: one short of it is no decision and no commit (a
    trainer dying now must read them again); the label that reaches it is both."""
    script = Script()
    service = _service(settings, _recording(script, outcome))

    _drive(
        service,
        script,
        [_labels(settings, 0, MIN_NEW_LABELS - 1), [], _labels(settings, MIN_NEW_LABELS - 1, 1)],
    )

    assert script.events == ["fetch", "fetch", "fetch", "train", "commit"]
    assert script.decisions_at_commit == [1]
    assert service.decisions[0].gate.holdout_size == round(
        MIN_NEW_LABELS * settings.retraining.holdout_fraction
    )


def test_a_retraining_that_dies_with_kafka_commits_nothing(
    settings: Settings, outcome: TrainingOutcome
) -> None:
    """A Kafka error during the decision propagates (the process exits, a supervisor restarts
    it): the labels stay uncommitted, so the successor decides on them again."""
    script = Script()

    def unreachable(data: Dataset) -> TrainingOutcome:
        script.events.append("train")
        raise KafkaConnectionError("the broker went away")

    service = _service(settings, unreachable)

    with pytest.raises(KafkaConnectionError):
        _drive(service, script, [_labels(settings, 0, MIN_NEW_LABELS)])

    assert script.events == ["fetch", "train"]
    assert service.decisions == []


def test_a_trainer_stopped_mid_training_has_committed_nothing(
    settings: Settings, outcome: TrainingOutcome
) -> None:
    script = Script()
    training = threading.Event()
    release = threading.Event()

    def slow(data: Dataset) -> TrainingOutcome:
        script.events.append("train")
        training.set()
        release.wait(60)
        return outcome

    service = _service(settings, slow)
    consumer = Consumer(script, [_labels(settings, 0, MIN_NEW_LABELS)], service)

    async def scenario() -> None:
        loop = asyncio.create_task(service._loop(consumer, Producer(script)))
        assert await asyncio.to_thread(training.wait, 30), "training never started"
        loop.cancel()  # stopped while the challenger is still training
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        release.set()  # let the training thread end, after the loop is gone

    try:
        asyncio.run(scenario())
    finally:
        release.set()

    assert script.events == ["fetch", "train"]
    assert service.decisions == []


# --------------------------------------------------------------- dead letters, then offsets


def test_a_malformed_label_is_dead_lettered_before_the_commit_and_the_next_labels_still_count(
    settings: Settings, outcome: TrainingOutcome
) -> None:
    script = Script()
    sizes: list[int] = []
    service = _service(settings, _recording(script, outcome, sizes))
    labeled = settings.kafka.topics.labeled
    broken = _record(labeled, 0, b'{"request_id": "r0", "features": {}}', b"r0")

    _drive(service, script, [[broken], _labels(settings, 1, MIN_NEW_LABELS)])

    # The refused record alone: its letter is acknowledged, then its offset is committed (no
    # label is waiting for a decision). Then the good labels retrain as if it never came.
    assert script.events == ["fetch", "letter invalid", "commit", "fetch", "train", "commit"]
    (letter,) = script.letters
    assert (letter.consumer, letter.reason) == ("trainer", "invalid")
    assert (letter.source_topic, letter.partition, letter.offset) == (labeled, 0, 0)
    assert letter.original == broken.value
    held = round(MIN_NEW_LABELS * settings.retraining.holdout_fraction)
    assert sizes == [150 + MIN_NEW_LABELS - held]  # base data + the good labels' training part


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"\xff not json", b"r0", "undecodable"),
        (None, b"r0", "undecodable"),
        (b'{"request_id": "r0", "features": {}, "true_label": 3}', b"r0", "invalid"),
        (b"x" * (1024 * 1024 + 1), b"r0", "too_large"),
    ],
)
def test_every_refused_label_costs_one_letter_signed_trainer_then_its_offset_is_committed(
    settings: Settings,
    outcome: TrainingOutcome,
    value: bytes | None,
    key: bytes,
    reason: str,
) -> None:
    script = Script()
    service = _service(settings, _recording(script, outcome))

    _drive(service, script, [[_record(settings.kafka.topics.labeled, 7, value, key)]])

    assert script.events == ["fetch", f"letter {reason}", "commit"]
    assert [(letter.consumer, letter.offset) for letter in script.letters] == [("trainer", 7)]


def test_a_failed_retraining_dead_letters_its_labels_before_committing_and_the_loop_goes_on(
    settings: Settings, outcome: TrainingOutcome
) -> None:
    script = Script()
    attempts: list[int] = []

    def first_fails(data: Dataset) -> TrainingOutcome:
        script.events.append("train")
        attempts.append(data.n_samples)
        if len(attempts) == 1:
            raise ValueError("cannot learn this")
        return outcome

    service = _service(settings, first_fails)
    doomed = _labels(settings, 0, MIN_NEW_LABELS)

    _drive(service, script, [doomed, _labels(settings, MIN_NEW_LABELS, MIN_NEW_LABELS)])

    letters = ["letter training_failed"] * MIN_NEW_LABELS
    assert script.events == ["fetch", "train", *letters, "commit", "fetch", "train", "commit"]
    assert [letter.original for letter in script.letters] == [record.value for record in doomed]
    assert {letter.consumer for letter in script.letters} == {"trainer"}
    assert [decision.outcome for decision in service.decisions] == ["failed", "rejected"]


# ------------------------------------------------------------------- drift, with its cooldown


class Clock:
    """Stands in for the ``time`` module inside ``trainer.service``: a monotonic clock we move."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(10_000.0)
    monkeypatch.setattr("trainer.service.time", clock)
    return clock


@pytest.mark.parametrize(
    ("seconds_later", "retrains_again"),
    [(1.0, False), (COOLDOWN - 0.001, False), (COOLDOWN, True), (COOLDOWN + 60, True)],
)
def test_a_drift_alarm_retrains_once_per_cooldown(
    settings: Settings,
    outcome: TrainingOutcome,
    clock: Clock,
    seconds_later: float,
    retrains_again: bool,
) -> None:
    script = Script()
    service = _service(settings, _recording(script, outcome))
    start = clock.now

    def at(index: int) -> None:
        clock.now = start + (seconds_later if index else 0.0)

    _drive(service, script, [[_drift(settings, 0)], [_drift(settings, 1)]], before_batch=at)

    expected = ["drift", "drift"] if retrains_again else ["drift"]
    assert [decision.trigger for decision in service.decisions] == expected
    assert script.events.count("train") == len(expected)


def test_the_cooldown_counts_from_the_alarm_that_retrained_not_from_the_ignored_ones(
    settings: Settings, clock: Clock
) -> None:
    service = RetrainingService(settings)
    record = _drift(settings, 0)

    def alarm(at: float) -> str | None:
        clock.now = 10_000.0 + at
        return service._take(record)

    assert alarm(0) == "drift"
    assert alarm(COOLDOWN - 1) is None
    assert alarm(COOLDOWN) == "drift"  # not pushed back by the ignored alarm at COOLDOWN - 1
    assert alarm(2 * COOLDOWN - 1) is None


def test_a_retrain_request_is_not_held_back_by_the_drift_cooldown(
    settings: Settings, outcome: TrainingOutcome, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[int | None] = []

    async def save_and_publish(
        settings: Settings, outcome: TrainingOutcome, *, trigger: str, live_version: int | None
    ) -> ModelUpdate:
        published.append(live_version)
        return model_update((live_version or 0) + 1)

    # A person's request promotes even without held-out labels: the publish is stood in for.
    monkeypatch.setattr("trainer.retraining.save_and_publish", save_and_publish)
    script = Script()
    service = _service(settings, _recording(script, outcome))

    _drive(service, script, [[_drift(settings, 0)], [_request(settings, 1)]])

    assert [decision.trigger for decision in service.decisions] == ["drift", "manual"]


def test_a_retrain_request_polled_with_a_drift_alarm_and_labels_is_decided_as_manual(
    settings: Settings, outcome: TrainingOutcome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several triggers in one poll make one retraining; a person's request among them keeps
    its meaning (a manual decision, which may promote over too few held-out labels) instead
    of becoming the drift retraining that came first in the batch, which could not."""
    published: list[int | None] = []

    async def save_and_publish(
        settings: Settings, outcome: TrainingOutcome, *, trigger: str, live_version: int | None
    ) -> ModelUpdate:
        published.append(live_version)
        return model_update((live_version or 0) + 1)

    monkeypatch.setattr("trainer.retraining.save_and_publish", save_and_publish)
    script = Script()
    service = _service(settings, _recording(script, outcome))
    batch = [
        _drift(settings, 0),
        *_labels(settings, 1, MIN_NEW_LABELS),
        _request(settings, MIN_NEW_LABELS + 1),
    ]

    _drive(service, script, [batch])

    (decision,) = service.decisions
    assert (decision.trigger, decision.outcome) == ("manual", "promoted"), decision.gate.reason
    assert len(published) == 1
    assert script.events == ["fetch", "train", "commit"]


def test_the_loop_waits_for_records_between_polls_and_takes_bounded_batches(
    settings: Settings, outcome: TrainingOutcome
) -> None:
    """An idle trainer must not spin on empty polls (aiokafka's default ``timeout_ms`` is 0),
    and one poll must not hand it an unbounded batch (the default ``max_records`` is None)."""
    script = Script()
    service = _service(settings, _recording(script, outcome))
    consumer = Consumer(script, [_labels(settings, 0, 3)], service)

    asyncio.run(_run_until_idle(service, consumer, script))

    assert len(consumer.polls) == 2
    for options in consumer.polls:
        assert options["timeout_ms"] >= 100
        assert isinstance(options["max_records"], int)
        assert options["max_records"] >= 1


# ------------------------------------------------------------- while a rollout is in progress


def _rolling_out(service: RetrainingService) -> None:
    """Version 2 in shadow beside the live version 1, as ``irisflow rollout start`` leaves it."""
    service.rollouts.start(model_update(2), RolloutMode.SHADOW, decided_by="test")
    assert service.rollouts.active


def _abort(service: RetrainingService) -> None:
    service.rollouts.handle(
        RolloutCommand(model_name="iris", command_id="abort-1", action="abort", requested_by="t")
    )
    assert not service.rollouts.active


def test_labels_past_the_threshold_wait_for_an_active_rollout_to_end_then_retrain(
    settings: Settings, outcome: TrainingOutcome, caplog: pytest.LogCaptureFixture
) -> None:
    """A retraining published during a rollout would replace the champion under it and end it
    unjudged: the labels wait, uncommitted, and retrain once the rollout is over. The wait is
    logged once per rollout, not at every poll."""
    script = Script()
    service = _service(settings, _recording(script, outcome))
    _rolling_out(service)

    with caplog.at_level(logging.INFO, logger="trainer.service"):
        _drive(service, script, [_labels(settings, 0, MIN_NEW_LABELS), []])

    assert script.events == ["fetch", "fetch"]  # no training, nothing committed
    assert service.decisions == []
    said = [r.getMessage() for r in caplog.records if "postponed" in r.getMessage()]
    rollout = service.rollouts.state
    assert rollout is not None
    assert said == [
        f"retraining on labels postponed: rollout {rollout.rollout_id} of version 2 is in "
        "progress (the labels wait for its end)"
    ]

    _abort(service)
    _drive(service, script, [[]])

    assert script.events[2:] == ["fetch", "train", "commit"]
    assert [decision.trigger for decision in service.decisions] == ["labels"]


def test_a_drift_alarm_during_a_rollout_neither_retrains_nor_starts_the_cooldown(
    settings: Settings, clock: Clock
) -> None:
    service = RetrainingService(settings)
    assert asyncio.run(service._on_model(model_update(1)))
    _rolling_out(service)
    clock.now = 10_000.0

    assert service._take(_drift(settings, 0)) is None

    _abort(service)
    assert service._take(_drift(settings, 1)) == "drift"  # no cooldown from the postponed one


def test_a_retrain_request_during_a_rollout_trains_now_but_its_winner_is_saved_not_published(
    settings: Settings, outcome: TrainingOutcome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person's request is not postponed, and a manual decision promotes without held-out
    labels; published, its version would still replace the champion under the rollout."""
    published: list[int | None] = []
    saved: list[int | None] = []

    async def save_and_publish(
        settings: Settings, outcome: TrainingOutcome, *, trigger: str, live_version: int | None
    ) -> ModelUpdate:
        published.append(live_version)
        return model_update((live_version or 0) + 1)

    async def save_version(
        settings: Settings, outcome: TrainingOutcome, *, trigger: str, live_version: int | None
    ) -> ModelUpdate:
        saved.append(live_version)
        return model_update(3)

    monkeypatch.setattr("trainer.retraining.save_and_publish", save_and_publish)
    monkeypatch.setattr("trainer.retraining.save_version", save_version)
    script = Script()
    service = _service(settings, _recording(script, outcome))
    _rolling_out(service)

    _drive(service, script, [[_request(settings, 0)]])

    (decision,) = service.decisions
    assert (decision.trigger, decision.outcome, decision.version) == ("manual", "held", 3)
    assert "in progress" in (decision.rollout or "")
    assert published == []
    assert len(saved) == 1
    assert service.rollouts.active  # the rollout goes on, judged against the same champion


# -------------------------------------------------------------------- the gate as configured


class Constant:
    """A challenger that always answers one class: far worse than any fitted champion."""

    def predict(self, x: Any) -> Any:
        return ["setosa"] * len(x)


@pytest.mark.parametrize(("tolerance", "outcome_"), [(0.02, "rejected"), (0.9, "promoted")])
def test_the_gate_applies_the_configured_tolerance_on_the_held_out_recent_labels(
    make_settings: SettingsFactory,
    outcome: TrainingOutcome,
    monkeypatch: pytest.MonkeyPatch,
    tolerance: float,
    outcome_: str,
) -> None:
    """``retraining.tolerance`` is the margin the service's gate uses, not a constant: a
    challenger worse by about 0.8 macro-F1 is rejected at 0.02 and promoted at 0.9."""
    published: list[int] = []

    async def save_and_publish(
        settings: Settings, outcome: TrainingOutcome, *, trigger: str, live_version: int | None
    ) -> ModelUpdate:
        published.append(2)
        return model_update(2)

    monkeypatch.setattr("trainer.retraining.save_and_publish", save_and_publish)
    settings = make_settings(**{"retraining.min_new_labels": 40, "retraining.tolerance": tolerance})
    bad = dataclasses.replace(outcome, model=Constant())
    script = Script()
    service = _service(settings, _recording(script, bad))

    _drive(service, script, [_labels(settings, 0, 40)])

    (decision,) = service.decisions
    assert decision.outcome == outcome_, decision.gate.reason
    assert decision.gate.tolerance == tolerance
    assert decision.gate.holdout_size == round(40 * settings.retraining.holdout_fraction)
    assert decision.gate.challenger_score is not None
    assert decision.gate.champion_score is not None
    assert decision.gate.champion_score - decision.gate.challenger_score > 0.5
    assert published == ([2] if outcome_ == "promoted" else [])
    # Every decision, promoted or rejected, is appended with its numbers and counted.
    (entry,) = LocalRegistry(settings.registry_dir).decisions()
    assert (entry["trigger"], entry["outcome"], entry["tolerance"]) == (
        "labels",
        outcome_,
        tolerance,
    )
    assert entry["challenger_score"] == decision.gate.challenger_score
    assert entry["champion_score"] == decision.gate.champion_score
    assert entry["holdout_size"] == decision.gate.holdout_size
    assert entry["version"] == (2 if outcome_ == "promoted" else None)
    retrains = service.metrics.registry.get_sample_value(
        "irisflow_retrains_total", {"trigger": "labels", "outcome": outcome_}
    )
    assert retrains == 1


# ------------------------------------------------------- a version that cannot be written


def test_a_promoted_version_whose_writing_fails_midway_publishes_nothing_and_v1_keeps_serving(
    settings: Settings, outcome: TrainingOutcome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The challenger wins (a person asked), the disk fills half-way through its artifact: a
    ``failed`` decision, nothing on the model topic, the champion unchanged, the labels
    dead-lettered ``training_failed`` and only then committed."""
    published: list[ModelUpdate] = []

    async def publish_update(kafka: object, update: ModelUpdate) -> None:
        published.append(update)

    monkeypatch.setattr("trainer.publish.publish_update", publish_update)
    disk = FailingDisk("write")
    monkeypatch.setattr("irisflow.registry.os.fdopen", disk)
    script = Script()
    service = _service(settings, _recording(script, outcome))
    labels = _labels(settings, 0, 3)

    _drive(service, script, [[*labels, _request(settings, 3)]])

    assert disk.failed
    assert published == []
    (decision,) = service.decisions
    assert decision.outcome == "failed"
    assert "No space left on device" in (decision.error or "")
    assert service._retraining.champion is not None
    assert service._retraining.champion[0].version == 1
    assert service.metrics.registry.get_sample_value("irisflow_trainer_live_model_version") == 1
    assert script.events == ["fetch", "train", *["letter training_failed"] * 3, "commit"]
    assert [letter.original for letter in script.letters] == [r.value for r in labels]
    assert LocalRegistry(settings.registry_dir).versions() == []
