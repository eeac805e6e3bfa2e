"""The default scoring lane inside a real Faust app, in this process, on the session broker.

``build_app`` builds the worker's app as ``irisflow worker`` does; the app is started here (no
worker process), so the lane takes its partitions through Faust's real rebalance, reads
requests with its own aiokafka consumer, answers through the app's producer and commits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import pytest
from aiokafka import TopicPartition

from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.clients import make_consumer, make_producer
from irisflow.kafka.model_topic import publish_update
from irisflow.local.broker.runtime import free_port
from irisflow.schemas import (
    BatchPrediction,
    BatchPredictionRequest,
    DeadLetter,
    Prediction,
    PredictionRequest,
)
from irisflow.settings import Settings
from streams.app import build_app
from tests.conftest import SettingsFactory
from tests.factories import SETOSA, VIRGINICA, model_update

pytestmark = pytest.mark.kafka

SINGLES = 300
TIMEOUT = 90.0


def test_the_lane_of_a_running_app_answers_every_request_and_commits_what_it_answered(
    kafka_settings: SettingsFactory,
) -> None:
    settings = kafka_settings(**{"worker.port": free_port(), "scoring.consumer": "lane"})
    asyncio.run(_answer_and_commit(settings))


async def _answer_and_commit(settings: Settings) -> None:
    topics = settings.kafka.topics
    await ensure_topics(settings.kafka)
    await publish_update(settings.kafka, model_update(3))
    worker = build_app(settings)
    assert worker.lane is not None
    assert worker.score_agent is None
    await worker.app.start()
    try:
        lane = worker.lane
        await _until(lambda: bool(lane.partitions), "the lane's partitions")
        sent = await _send_requests(settings)
        answers = await _read(settings, topics.predictions, count=SINGLES + 2)
        (letter,) = await _read(settings, topics.dead_letters, count=1)
        assert lane.partitions == set(range(settings.kafka.partitions))
    finally:
        await worker.app.stop()

    by_id = {request_id: (value, partition) for request_id, value, partition in answers}
    assert set(by_id) == set(sent)
    for request_id, (value, partition) in by_id.items():
        assert partition == sent[request_id], "an answer goes to its request's partition"
        if request_id == "batch":
            batch = BatchPrediction.from_bytes(value)
            assert [p.label for p in batch.predictions] == ["setosa", "virginica"]
            continue
        answer = Prediction.from_bytes(value)
        if request_id == "poison":
            assert (answer.error_code, answer.model_version) == ("invalid_request", None)
            continue
        expected = "setosa" if int(request_id.removeprefix("r")) % 2 else "virginica"
        assert (answer.label, answer.model_version) == (expected, 3)
    assert DeadLetter.from_bytes(letter[1]).reason == "undecodable"
    assert await _committed(settings) == await _ends(settings)


async def _until(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready after {TIMEOUT:.0f} s")
        await asyncio.sleep(0.1)


async def _send_requests(settings: Settings) -> dict[str, int]:
    """Produce single requests, a batch request and a poison record; their partitions by id."""
    records: list[tuple[bytes, bytes]] = [
        (
            f"r{i}".encode(),
            PredictionRequest(
                request_id=f"r{i}", features=SETOSA if i % 2 else VIRGINICA
            ).to_bytes(),
        )
        for i in range(SINGLES)
    ]
    batch = BatchPredictionRequest(request_id="batch", instances=[SETOSA, VIRGINICA])
    records += [(b"batch", batch.to_bytes()), (b"poison", b"{not json")]
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        futures = [
            await producer.send(settings.kafka.topics.requests, value, key=key)
            for key, value in records
        ]
        delivered = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {key.decode(): meta.partition for (key, _), meta in zip(records, delivered, strict=True)}


async def _read(settings: Settings, topic: str, *, count: int) -> list[tuple[str, bytes, int]]:
    """The first ``count`` records of ``topic``: (key, value, partition)."""
    consumer = make_consumer(settings.kafka, topic, auto_offset_reset="earliest")
    await consumer.start()
    seen: list[tuple[str, bytes, int]] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(seen) < count and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=500)
            for batch in fetched.values():
                seen += [(r.key.decode(), r.value, r.partition) for r in batch if r.key]
    finally:
        await consumer.stop()
    assert len(seen) >= count, f"{len(seen)} of {count} records on {topic}"
    return seen


async def _ends(settings: Settings) -> dict[int, int]:
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    try:
        tps = _partitions(settings)
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def _committed(settings: Settings) -> dict[int, int | None]:
    """What the lane committed in its own consumer group, by request partition."""
    consumer = make_consumer(settings.kafka, group_id=f"{settings.kafka.app_id}-streams-scoring")
    await consumer.start()
    try:
        return {tp.partition: await consumer.committed(tp) for tp in _partitions(settings)}
    finally:
        await consumer.stop()


def _partitions(settings: Settings) -> Sequence[TopicPartition]:
    topic = settings.kafka.topics.requests
    return [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
