"""What ``RetrainingService.run`` plugs together, with stand-ins for Kafka and the model feed.

The integration tests run the trainer on a real broker, but they see its wiring only through
its effects after a retraining; here the stand-ins record what the service asked for: which
topics it reads and in which consumer group (the group whose committed offsets say which labels
a restarted trainer reads again), that it commits through that consumer, that its dead letters
leave through its producer, and that the model feed it follows is this model's, on this
cluster, with the service's own champion, numbering and dead-letter counting hooked in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from irisflow.schemas import DeadLetter, LabeledSample, ModelUpdate
from irisflow.settings import DataSettings, KafkaSettings, Settings, TrainingSettings
from tests.conftest import SettingsFactory
from tests.factories import IRIS_FEATURES, iris_xy, model_update
from trainer.data import Dataset, load_dataset
from trainer.service import RetrainingService
from trainer.training import TrainingOutcome, train_on

MIN_NEW_LABELS = 10
DEADLINE = 30.0


@dataclass
class Wiring:
    """What the service asked for, in order."""

    consumers: list[tuple[KafkaSettings, tuple[str, ...], str | None]] = field(default_factory=list)
    producers: list[KafkaSettings] = field(default_factory=list)
    feeds: list[FeedStandIn] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    sent: list[tuple[str, bytes]] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    followed: bool = False


class ConsumerStandIn:
    """Hands out its batches one per ``getmany``, then waits like an idle topic."""

    def __init__(self, wiring: Wiring, batches: list[list[ConsumerRecord[bytes, bytes]]]) -> None:
        self.wiring = wiring
        self.batches = list(batches)

    async def start(self) -> None:
        self.wiring.events.append("consumer start")

    async def stop(self) -> None:
        self.wiring.events.append("consumer stop")

    async def getmany(self, **options: Any) -> dict[TopicPartition, list[Any]]:
        if not self.batches:
            await asyncio.Event().wait()
        batch = self.batches.pop(0)
        return {TopicPartition(batch[0].topic, batch[0].partition): batch}

    async def commit(self) -> None:
        self.wiring.events.append("commit")


class ProducerStandIn:
    def __init__(self, wiring: Wiring) -> None:
        self.wiring = wiring

    async def start(self) -> None:
        self.wiring.events.append("producer start")

    async def stop(self) -> None:
        self.wiring.events.append("producer stop")

    async def send_and_wait(self, topic: str, value: bytes, **options: Any) -> None:
        self.wiring.sent.append((topic, value))


class FeedStandIn:
    """Behaves like :class:`irisflow.kafka.model_topic.ModelFeed` seen from its owner: on
    catch-up it reports every version it saw, offers the newest to ``accept`` and sets
    ``caught_up``; then it offers one live update that cannot be loaded, and a dead letter of
    its own (an unreadable record) is counted through ``on_letter``."""

    def __init__(
        self,
        wiring: Wiring,
        kafka: KafkaSettings,
        model_name: str,
        accept: Any,
        *,
        consumer: str,
        on_seen: Any,
        on_letter: Any,
    ) -> None:
        self.kafka = kafka
        self.model_name = model_name
        self.accept = accept
        self.consumer = consumer
        self.on_seen = on_seen
        self.on_letter = on_letter
        self.caught_up = asyncio.Event()
        self.accepted: list[bool] = []
        self.wiring = wiring
        wiring.feeds.append(self)

    async def run(self) -> None:
        self.on_seen(model_update(4))  # seen on the topic: later versions are numbered after it
        self.accepted.append(await self.accept(model_update(1)))
        self.caught_up.set()
        broken = model_update(5).model_copy(update={"class_labels": ["a", "b", "c"]})
        self.accepted.append(await self.accept(broken))
        self.on_letter(self.kafka.topics.model_updates, "undecodable", self.consumer)
        self.wiring.followed = True
        await asyncio.Event().wait()

    async def refuse(self, update: ModelUpdate, reason: str) -> None:
        self.wiring.refused.append(update.version)


@pytest.fixture
def wiring(monkeypatch: pytest.MonkeyPatch) -> Wiring:
    """Fresh records, and the feed stand-in in place of the model feed."""
    wiring = Wiring()

    def feed(*args: Any, **options: Any) -> FeedStandIn:
        return FeedStandIn(wiring, *args, **options)

    monkeypatch.setattr("trainer.service.ModelFeed", feed)
    return wiring


@pytest.fixture(scope="module")
def outcome() -> TrainingOutcome:
    """One real challenger, trained once: what it learned does not matter here."""
    training = TrainingSettings(candidates={"naive_bayes": {}}, cv_folds=3)
    return train_on(load_dataset(DataSettings()), training, show_progress=False)


def _labels(topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    x, y = iris_xy()
    records = []
    for offset in range(count):
        row = (offset * 7) % len(y)
        sample = LabeledSample(
            request_id=f"r{offset}",
            features=dict(zip(IRIS_FEATURES, map(float, x[row]), strict=True)),
            true_label=str(y[row]),
        )
        value, key = sample.to_bytes(), b"r%d" % offset
        records.append(ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, 0, 0, ()))
    return records


async def _until(condition: Any, what: str) -> None:
    """Wait for ``condition()`` with a deadline (the service runs in the same loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def _run(
    settings: Settings,
    wiring: Wiring,
    monkeypatch: pytest.MonkeyPatch,
    batches: list[list[ConsumerRecord[bytes, bytes]]],
    train: Any,
    done: Any,
) -> RetrainingService:
    """Run the service until ``done()``, then stop it the way a shutdown does (cancel)."""

    def make_consumer(kafka: KafkaSettings, *topics: str, group_id: str | None) -> Any:
        wiring.consumers.append((kafka, topics, group_id))
        return ConsumerStandIn(wiring, batches)

    def make_producer(kafka: KafkaSettings) -> Any:
        wiring.producers.append(kafka)
        return ProducerStandIn(wiring)

    monkeypatch.setattr("trainer.service.make_consumer", make_consumer)
    monkeypatch.setattr("trainer.service.make_producer", make_producer)
    service = RetrainingService(settings, train=train)

    async def scenario() -> None:
        task = asyncio.create_task(service.run())
        try:
            await _until(lambda: done() or task.done(), "the trainer to do its work")
            if task.done():
                task.result()  # the service's own error, if it stopped
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    return service


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(**{"retraining.min_new_labels": MIN_NEW_LABELS})


def test_the_trainer_reads_labels_drift_and_requests_in_its_group_and_commits_through_it(
    settings: Settings,
    wiring: Wiring,
    monkeypatch: pytest.MonkeyPatch,
    outcome: TrainingOutcome,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trainer.service")
    topics = settings.kafka.topics

    def train(data: Dataset) -> TrainingOutcome:
        wiring.events.append("train")
        return outcome

    service = _run(
        settings,
        wiring,
        monkeypatch,
        [_labels(topics.labeled, MIN_NEW_LABELS)],
        train,
        lambda: "commit" in wiring.events,
    )

    ((kafka, read, group),) = wiring.consumers
    assert kafka == settings.kafka
    assert sorted(read) == sorted([topics.labeled, topics.drift_events, topics.retrain_requests])
    assert group == f"{settings.kafka.app_id}-trainer"
    # Started before the work, the decision before the commit, stopped on the way out.
    assert wiring.events == [
        "consumer start",
        "producer start",
        "train",
        "commit",
        "consumer stop",
        "producer stop",
    ]
    assert [decision.trigger for decision in service.decisions] == ["labels"]
    assert service.ready.is_set()
    assert "trainer ready: retrains after 10 new labels, on drift and on request" in [
        record.getMessage() for record in caplog.records
    ]


def test_the_trainer_dead_letters_through_its_producer_on_its_cluster(
    settings: Settings, wiring: Wiring, monkeypatch: pytest.MonkeyPatch, outcome: TrainingOutcome
) -> None:
    topics = settings.kafka.topics
    bad = ConsumerRecord(topics.labeled, 1, 7, 0, 0, b"r7", b"\xff not json", None, 0, 0, ())

    _run(settings, wiring, monkeypatch, [[bad]], None, lambda: "commit" in wiring.events)

    assert wiring.producers == [settings.kafka]
    ((topic, value),) = wiring.sent
    assert topic == topics.dead_letters
    letter = DeadLetter.from_bytes(value)
    assert (letter.consumer, letter.reason, letter.partition, letter.offset) == (
        "trainer",
        "undecodable",
        1,
        7,
    )
    assert wiring.events.index("commit") > wiring.events.index("producer start")


def test_the_trainer_follows_this_models_feed_with_its_champion_numbering_and_letters(
    settings: Settings, wiring: Wiring, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _run(settings, wiring, monkeypatch, [], None, lambda: wiring.followed)

    (feed,) = wiring.feeds
    assert (feed.kafka, feed.model_name) == (settings.kafka, settings.model_name)
    # Refused model updates are dead-lettered and counted as the trainer's model feed.
    assert feed.consumer == "trainer.model-feed"
    # The live version became the champion; the broken live update was refused and
    # dead-lettered through the feed, and the champion kept.
    assert feed.accepted == [True, False]
    assert wiring.refused == [5]
    assert service._retraining.champion is not None
    assert service._retraining.champion[0].version == 1
    registry = service.metrics.registry
    assert registry.get_sample_value("irisflow_trainer_live_model_version") == 1
    # Version 4 was seen on the topic: the next challenger is numbered after it.
    assert service._retraining.newest_published == 4
    assert (
        registry.get_sample_value(
            "irisflow_dead_letters_total",
            {
                "topic": settings.kafka.topics.model_updates,
                "reason": "undecodable",
                "consumer": "trainer.model-feed",
            },
        )
        == 1
    )
