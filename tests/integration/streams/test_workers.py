"""Two real ``irisflow worker`` processes on one stream, on the session broker.

Every request gets an answer while workers share (and lose) partitions, poison is
dead-lettered while good requests flow, feedback is joined, and drift in one feature raises an
event for that feature only.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.clients import make_consumer, make_producer
from irisflow.kafka.model_topic import publish_update
from irisflow.local.broker.runtime import free_port
from irisflow.schemas import (
    BatchPredictionRequest,
    DeadLetter,
    DriftEvent,
    FeatureStats,
    Feedback,
    LabeledSample,
    Prediction,
    PredictionRequest,
)
from irisflow.settings import Settings, load_settings
from tests.conftest import unique_params
from tests.e2e.conftest import Stack
from tests.factories import IRIS_FEATURES, SETOSA, iris_xy, model_update

pytestmark = pytest.mark.kafka

WORKERS = ("worker-a", "worker-b")
CHANGES = {
    "kafka.partitions": 4,
    "scoring.batch_size": 100,
    "scoring.batch_linger_seconds": 0.01,
    "streams.session_timeout_seconds": 6,
    "streams.join_window_seconds": 4,
    "streams.sweep_interval_seconds": 1,
    "drift.window": 300,
    "drift.cooldown_seconds": 600,
}


class Workers(Stack):
    """A Stack whose workers each have their own web port."""

    ports: dict[str, int]

    def start_worker(self, role: str) -> None:
        self.start(role, "worker", "--port", str(self.ports[role]))

    def health(self, role: str) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.ports[role]}/health", timeout=2)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def metric(self, role: str, name: str) -> float:
        body = httpx.get(f"http://127.0.0.1:{self.ports[role]}/metrics", timeout=5).text
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name)
        )

    def wait_sharing(self, roles: tuple[str, ...], timeout: float = 120.0) -> None:
        """Until every role owns requests partitions and together they own all of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for role in roles:
                process = self.processes[role]
                if process.poll() is not None:
                    log = (self.logs / f"{role}.log").read_text(errors="replace")[-3000:]
                    raise AssertionError(f"{role} exited with {process.returncode}:\n{log}")
            owned = [set((self.health(role) or {}).get("partitions", [])) for role in roles]
            everything = set().union(*owned)
            disjoint = sum(len(o) for o in owned) == len(everything)
            if all(owned) and disjoint and everything == set(range(self.settings.kafka.partitions)):
                return
            time.sleep(0.5)
        raise AssertionError(f"workers did not share the partitions: {owned}")


def _workers(folder: Path, bootstrap: str, *, start: bool = True, **changes: Any) -> Workers:
    params = unique_params(folder, bootstrap, **{**CHANGES, **changes})
    settings = load_settings(params, environ={})
    workers = Workers(params=params, settings=settings, logs=folder)
    workers.ports = {role: free_port() for role in WORKERS}
    asyncio.run(ensure_topics(settings.kafka))
    workers.publish(1)
    if start:
        for role in WORKERS:
            workers.start_worker(role)
        workers.wait_sharing(WORKERS)
    return workers


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Workers]:
    stack = _workers(tmp_path_factory.mktemp("workers"), kafka_bootstrap)
    try:
        yield stack
    finally:
        for role in list(stack.processes):
            stack.stop(role)


async def _send(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(settings.kafka, linger_ms=5)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def _collect(
    settings: Settings,
    topic: str,
    done: Callable[[list[Any]], bool],
    *,
    timeout: float = 90.0,
) -> list[Any]:
    """Read ``topic`` from the beginning until ``done(records)`` or the deadline."""
    consumer = make_consumer(settings.kafka, topic, group_id=None)
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while not done(records) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def _requests(count: int, tag: str) -> list[tuple[bytes, bytes]]:
    ids = [f"{tag}-{i}-{uuid.uuid4().hex[:6]}" for i in range(count)]
    return [
        (rid.encode(), PredictionRequest(request_id=rid, features=SETOSA).to_bytes()) for rid in ids
    ]


def _answered(ids: set[bytes]) -> Callable[[list[Any]], bool]:
    return lambda records: ids <= {r.key for r in records}


async def _scoring_offsets(settings: Settings) -> dict[int, int]:
    """Request offsets committed by the workers' scoring lanes, by partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        topic = settings.kafka.topics.requests
        committed = await admin.list_consumer_group_offsets(
            f"{settings.kafka.app_id}-streams-scoring",
            partitions=[TopicPartition(topic, p) for p in range(settings.kafka.partitions)],
        )
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in committed.items() if meta.offset >= 0}


async def _end_offsets(settings: Settings) -> dict[int, int]:
    consumer = make_consumer(settings.kafka, group_id=None)
    await consumer.start()
    try:
        topic = settings.kafka.topics.requests
        ends = await consumer.end_offsets(
            [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        )
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


def _wait_committed(settings: Settings, ends: dict[int, int], timeout: float = 30.0) -> None:
    """Until the scoring lanes have committed ``ends`` (every request up to them answered)."""
    deadline = time.monotonic() + timeout
    while (committed := asyncio.run(_scoring_offsets(settings))) != ends:
        assert time.monotonic() < deadline, f"committed {committed}, expected {ends}"
        time.sleep(0.3)


def test_two_workers_share_one_stream_and_answer_every_request(workers: Workers) -> None:
    settings = workers.settings
    sent = _requests(400, "share")
    before = {role: workers.metric(role, "irisflow_predictions_total") for role in WORKERS}
    asyncio.run(_send(settings, settings.kafka.topics.requests, sent))
    ids = {key for key, _ in sent}
    records = asyncio.run(_collect(settings, settings.kafka.topics.predictions, _answered(ids)))
    assert ids <= {r.key for r in records}
    scored = {
        role: workers.metric(role, "irisflow_predictions_total") - before[role] for role in WORKERS
    }
    assert all(count > 0 for count in scored.values()), scored
    assert sum(scored.values()) >= len(ids)
    # the lanes commit what they answered (every scoring.commit_interval_seconds)
    _wait_committed(settings, asyncio.run(_end_offsets(settings)))


def test_poison_messages_are_dead_lettered_while_good_ones_flow(workers: Workers) -> None:
    settings = workers.settings
    topics = settings.kafka.topics
    poison = [(f"poison-{i}".encode(), b"\x00not json" + bytes([i])) for i in range(10)]
    good = _requests(50, "good")
    mixed = [item for pair in zip(good, poison, strict=False) for item in pair] + good[10:]
    asyncio.run(_send(settings, topics.requests, mixed))
    ids = {key for key, _ in good}
    records = asyncio.run(_collect(settings, topics.predictions, _answered(ids)))
    assert ids <= {r.key for r in records}
    poisoned = {key for key, _ in poison}
    letters = asyncio.run(
        _collect(settings, topics.dead_letters, lambda rs: poisoned <= {r.key for r in rs})
    )
    by_key = {r.key: DeadLetter.from_bytes(r.value) for r in letters}
    assert poisoned <= set(by_key)
    assert all(by_key[key].source_topic == topics.requests for key in poisoned)
    assert {by_key[key].original for key in poisoned} == {value for _, value in poison}


def test_feedback_is_joined_and_feedback_without_a_prediction_is_dead_lettered(
    workers: Workers,
) -> None:
    settings = workers.settings
    topics = settings.kafka.topics
    sent = _requests(100, "joined")
    asyncio.run(_send(settings, topics.requests, sent))
    ids = {key for key, _ in sent}
    answers = asyncio.run(_collect(settings, topics.predictions, _answered(ids)))
    (version,) = {Prediction.from_bytes(r.value).model_version for r in answers if r.key in ids}
    feedback = [(key, Feedback(request_id=key.decode(), label="setosa").to_bytes()) for key in ids]
    orphan = f"orphan-{uuid.uuid4().hex[:6]}".encode()
    feedback.append((orphan, Feedback(request_id=orphan.decode(), label="setosa").to_bytes()))
    asyncio.run(_send(settings, topics.feedback, feedback))
    labeled = asyncio.run(_collect(settings, topics.labeled, _answered(ids)))
    samples = [LabeledSample.from_bytes(r.value) for r in labeled if r.key in ids]
    assert {s.request_id.encode() for s in samples} == ids
    assert {(s.true_label, s.predicted_label, s.model_version) for s in samples} == {
        ("setosa", "setosa", version)  # the version that scored them, whoever published it
    }
    letters = asyncio.run(
        _collect(settings, topics.dead_letters, lambda rs: orphan in {r.key for r in rs})
    )
    (letter,) = [DeadLetter.from_bytes(r.value) for r in letters if r.key == orphan]
    assert letter.source_topic == topics.feedback
    assert "found no prediction" in letter.error


def _reference() -> dict[str, FeatureStats]:
    x, _ = iris_xy()
    return {
        name: FeatureStats(
            mean=float(col.mean()),
            std=float(col.std()),
            min=float(col.min()),
            max=float(col.max()),
            quantiles=[float(q) for q in np.quantile(col, np.linspace(0.1, 0.9, 9))],
        )
        for name, col in zip(IRIS_FEATURES, x.T, strict=True)
    }


def _iris_batches(rng: np.random.Generator, count: int, shift: float) -> list[tuple[bytes, bytes]]:
    x, _ = iris_xy()
    records = []
    for _ in range(count):
        rows = x[rng.integers(len(x), size=25)].copy()
        rows[:, 1] += shift  # sepal_width
        instances = [dict(zip(IRIS_FEATURES, row.tolist(), strict=True)) for row in rows]
        message = BatchPredictionRequest(request_id=uuid.uuid4().hex, instances=instances)
        records.append((message.request_id.encode(), message.to_bytes()))
    return records


def test_drift_in_one_feature_raises_an_event_for_that_feature_and_not_the_others(
    workers: Workers,
) -> None:
    settings = workers.settings
    topics = settings.kafka.topics
    update = model_update(2).model_copy(update={"reference_stats": _reference()})
    asyncio.run(publish_update(settings.kafka, update))
    deadline = time.monotonic() + 60
    while not all((workers.health(r) or {}).get("model_version") == 2 for r in WORKERS):
        assert time.monotonic() < deadline, "the workers did not load version 2"
        time.sleep(0.3)
    rng = np.random.default_rng(11)
    stationary = _iris_batches(rng, 60, shift=0.0)
    drifted = _iris_batches(rng, 60, shift=3 * float(iris_xy()[0][:, 1].std()))
    asyncio.run(_send(settings, topics.requests, stationary + drifted))
    ids = {key for key, _ in drifted}
    asyncio.run(_collect(settings, topics.predictions, _answered(ids)))

    def both_detectors(records: list[Any]) -> bool:
        events = [DriftEvent.from_bytes(r.value) for r in records]
        return {(e.feature, e.detector) for e in events if e.model_version == 2} >= {
            ("sepal_width", "adwin"),
            ("sepal_width", "ks"),
        }

    records = asyncio.run(_collect(settings, topics.drift_events, both_detectors, timeout=30))
    events = [DriftEvent.from_bytes(r.value) for r in records]
    mine = [e for e in events if e.model_version == 2]
    assert {(e.feature, e.detector) for e in mine} >= {
        ("sepal_width", "adwin"),
        ("sepal_width", "ks"),
    }
    assert {e.feature for e in mine} & set(IRIS_FEATURES) == {"sepal_width"}
    alarms = sum(
        workers.metric(role, 'irisflow_drift_alarms_total{detector="ks",feature="sepal_width"}')
        for role in WORKERS
    )
    assert alarms >= 1


@pytest.fixture
def fresh_workers(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Workers]:
    long_join: dict[str, Any] = {"streams.join_window_seconds": 300}
    stack = _workers(tmp_path, kafka_bootstrap, **long_join)
    try:
        yield stack
    finally:
        for role in list(stack.processes):
            stack.stop(role)


def test_a_worker_killed_mid_stream_leaves_no_request_unanswered_nor_unjoined(
    fresh_workers: Workers,
) -> None:
    """The survivor answers the dead worker's requests and rebuilds its join table.

    The first requests are answered and committed before the kill, so the survivor cannot
    score them again: joining their feedback needs the table rebuilt from its changelog.
    """
    workers = fresh_workers
    settings = workers.settings
    topics = settings.kafka.topics
    before = _requests(1000, "before")
    asyncio.run(_send(settings, topics.requests, before))
    asyncio.run(_collect(settings, topics.predictions, _answered({k for k, _ in before})))
    _wait_committed(settings, asyncio.run(_end_offsets(settings)))  # nothing left to re-score
    during = _requests(2000, "during")

    async def stream_and_kill() -> None:
        producer = make_producer(settings.kafka, linger_ms=5)
        await producer.start()
        try:
            for index, (key, value) in enumerate(during):
                await producer.send(topics.requests, key=key, value=value)
                if index % 100 == 99:
                    await asyncio.sleep(0.1)  # ~1000 requests/s for about 2 s
                if index == 500:
                    workers.processes["worker-b"].send_signal(signal.SIGKILL)
            await producer.flush()
        finally:
            await producer.stop()

    assert workers.metric("worker-b", "irisflow_predictions_total") > 0  # b was scoring
    asyncio.run(stream_and_kill())
    workers.processes["worker-b"].wait(10)
    ids = {key for key, _ in before + during}
    records = asyncio.run(_collect(settings, topics.predictions, _answered(ids), timeout=120))
    answered = {r.key for r in records} & ids
    assert len(answered) == len(ids), f"{len(ids) - len(answered)} requests never answered"
    assert set((workers.health("worker-a") or {}).get("partitions", [])) == set(range(4))
    feedback = [(key, Feedback(request_id=key.decode(), label="setosa").to_bytes()) for key in ids]
    asyncio.run(_send(settings, topics.feedback, feedback))
    labeled = asyncio.run(_collect(settings, topics.labeled, _answered(ids), timeout=120))
    joined = {r.key for r in labeled} & ids
    assert len(joined) == len(ids), f"{len(ids) - len(joined)} predictions lost from the join"


def test_a_worker_joining_mid_stream_takes_partitions_without_losing_a_request(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """Scale out under traffic: the rebalance moves partitions that may have no commit yet."""
    workers = _workers(tmp_path, kafka_bootstrap, start=False)
    settings = workers.settings
    topics = settings.kafka.topics
    sent = _requests(3000, "join")

    async def stream_and_join() -> None:
        producer = make_producer(settings.kafka, linger_ms=5)
        await producer.start()
        try:
            for index, (key, value) in enumerate(sent):
                await producer.send(topics.requests, key=key, value=value)
                if index % 100 == 99:
                    await asyncio.sleep(0.1)
                if index == 0:
                    workers.start_worker("worker-a")
                if index == 1500:
                    workers.start_worker("worker-b")
            await producer.flush()
        finally:
            await producer.stop()

    try:
        asyncio.run(stream_and_join())
        ids = {key for key, _ in sent}
        records = asyncio.run(_collect(settings, topics.predictions, _answered(ids), timeout=120))
        answered = {r.key for r in records} & ids
        assert len(answered) == len(ids), f"{len(ids) - len(answered)} requests never answered"
        workers.wait_sharing(WORKERS)
    finally:
        for role in list(workers.processes):
            workers.stop(role)
