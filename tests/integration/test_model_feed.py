"""Model versions travel in the compacted topic; every reader sees the live one and each change."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from irisflow.errors import KafkaUnavailable
from irisflow.kafka.admin import ensure_topics, wait_for_kafka
from irisflow.kafka.clients import TopicMissing, assign_all, make_consumer, make_producer
from irisflow.kafka.model_topic import ModelFeed, publish_update, read_live_update
from irisflow.local.broker.runtime import free_port
from irisflow.schemas import ModelUpdate
from irisflow.settings import Settings
from streams.model_updates import ModelHolder
from tests.conftest import SettingsFactory
from tests.factories import forged_update, model_update
from tests.integration.letters import dead_letters

pytestmark = pytest.mark.kafka


def test_an_empty_topic_means_no_model_is_live(kafka_settings: SettingsFactory) -> None:
    settings = kafka_settings()

    async def check() -> None:
        await ensure_topics(settings.kafka)
        assert await read_live_update(settings.kafka, settings.model_name) is None

    asyncio.run(check())


def test_the_last_published_version_is_live_and_later_ones_arrive_live(
    kafka_settings: SettingsFactory,
) -> None:
    settings = kafka_settings()

    async def check() -> None:
        await ensure_topics(settings.kafka)
        await publish_update(settings.kafka, model_update(1))
        await publish_update(settings.kafka, model_update(2))
        await publish_update(settings.kafka, model_update(7, model_name="another-model"))
        live = await read_live_update(settings.kafka, settings.model_name)
        assert live is not None
        assert live.version == 2

        seen: list[int] = []

        async def on_update(update: ModelUpdate) -> bool:
            seen.append(update.version)
            return True

        feed = ModelFeed(settings.kafka, settings.model_name, on_update)
        task = asyncio.create_task(feed.run())
        try:
            await asyncio.wait_for(feed.caught_up.wait(), 30)
            assert seen == [2]  # only the live version at catch-up, not the whole history
            await publish_update(settings.kafka, model_update(3))
            await publish_update(settings.kafka, model_update(1))  # a rollback republishes v1
            for _ in range(100):
                if len(seen) == 3:
                    break
                await asyncio.sleep(0.1)
            assert seen == [2, 3, 1]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(check())


async def _following(
    settings: Settings, accept: Callable[[ModelUpdate], Awaitable[bool]], **options: Any
) -> tuple[ModelFeed, asyncio.Task[None]]:
    feed = ModelFeed(settings.kafka, settings.model_name, accept, **options)
    task = asyncio.create_task(feed.run())
    await asyncio.wait_for(feed.caught_up.wait(), 30)
    return feed, task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("broken", ["checksum", "zip_bomb", "wrong_features"])
def test_a_fresh_reader_falls_back_to_the_newest_version_that_loads(
    kafka_settings: SettingsFactory, broken: str
) -> None:
    """[v1 good, v2 broken] in the topic: a worker started now serves v1, not nothing."""
    settings = kafka_settings()

    async def check() -> None:
        await ensure_topics(settings.kafka)
        await publish_update(settings.kafka, model_update(1))
        await publish_update(settings.kafka, forged_update(2, broken))
        holder = ModelHolder(artifacts=settings.artifacts)
        _, task = await _following(settings, holder.apply)
        try:
            assert holder.current is not None
            assert holder.current.version == 1
            assert [version for version, _ in holder.refused] == [2]
        finally:
            await _stop(task)

    asyncio.run(check())


def test_a_live_update_that_is_refused_keeps_the_current_version_and_is_dead_lettered(
    kafka_settings: SettingsFactory,
) -> None:
    settings = kafka_settings()

    async def check() -> None:
        await ensure_topics(settings.kafka)
        await publish_update(settings.kafka, model_update(1))
        holder = ModelHolder(artifacts=settings.artifacts)

        async def accept(update: ModelUpdate) -> bool:
            if await holder.apply(update):
                return True
            await feed.refuse(update, holder.refused[-1][1])
            return False

        feed, task = await _following(settings, accept, consumer="test.model-feed")
        try:
            await publish_update(settings.kafka, forged_update(2, "regressor"))
            letters = await dead_letters(settings, 1)
            assert holder.current is not None
            assert holder.current.version == 1
            (letter,) = letters
            assert (letter.reason, letter.consumer) == ("refused_model", "test.model-feed")
            assert "version 2" in letter.error
            assert "predict_proba" in letter.error
            assert (letter.partition, letter.offset) == (0, 1)  # the record it came in
        finally:
            await _stop(task)

    asyncio.run(check())


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"\xff\xfe", None, "undecodable"),
        (b"\xff\xfe", b"{}", "invalid"),
        (b"iris", b"\x00\x01 not json", "undecodable"),
        (b"\xc3\x28", "good", "bad_key"),
    ],
)
def test_an_unreadable_record_does_not_stop_the_feed_and_is_dead_lettered_when_live(
    kafka_settings: SettingsFactory, key: bytes, value: bytes | str | None, reason: str
) -> None:
    """A non-UTF-8 key used to kill the feed task: now it costs one dead letter."""
    settings = kafka_settings()

    async def check() -> None:
        await ensure_topics(settings.kafka)
        await publish_update(settings.kafka, model_update(1))
        seen: list[int] = []

        async def accept(update: ModelUpdate) -> bool:
            seen.append(update.version)
            return True

        feed, task = await _following(settings, accept, consumer="test.model-feed")
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            raw = model_update(2).to_bytes() if value == "good" else value
            await producer.send_and_wait(settings.kafka.topics.model_updates, raw, key=key)
            (letter,) = await dead_letters(settings, 1)
            assert letter.reason == reason
            await publish_update(settings.kafka, model_update(3))
            for _ in range(100):
                if seen[-1:] == [3]:
                    break
                await asyncio.sleep(0.1)
            assert seen == [1, 3]
            assert not task.done()
            assert feed.refused_records == 1
        finally:
            await producer.stop()
            await _stop(task)

    asyncio.run(check())


def test_following_a_topic_that_does_not_exist_fails_with_what_to_do(
    kafka_settings: SettingsFactory,
) -> None:
    settings = kafka_settings()

    async def check() -> None:
        consumer = make_consumer(settings.kafka, group_id=None)
        await consumer.start()
        try:
            with pytest.raises(TopicMissing, match="irisflow kafka topics"):
                await assign_all(consumer, "no-such-topic-here", start="beginning", timeout=0.5)
        finally:
            await consumer.stop()

    asyncio.run(check())


def test_waiting_for_a_broker_that_is_not_there_says_what_to_do() -> None:
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match="irisflow kafka start"):
        asyncio.run(wait_for_kafka(f"127.0.0.1:{free_port()}", timeout=1.0))
    assert time.monotonic() - started < 15
