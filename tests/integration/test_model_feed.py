"""Model versions travel in the compacted topic; every reader sees the live one and each change."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.model_topic import ModelFeed, publish_update, read_live_update
from irisflow.schemas import ModelUpdate
from tests.conftest import SettingsFactory
from tests.factories import model_update

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

        async def on_update(update: ModelUpdate) -> None:
            seen.append(update.version)

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
