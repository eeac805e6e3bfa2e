"""The scoring lane's contract, with a stand-in consumer: what it scores, and when it commits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaConnectionError
from aiokafka.structs import ConsumerRecord

from irisflow.settings import load_settings
from irisflow.topics import Incoming, Outgoing
from streams import lane as lane_module
from streams.handover import Handover
from streams.lane import ScoringLane, partition_lags, scoring_lane
from tests.conftest import ROOT

TOPIC = "requests"


def _record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=TOPIC,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=f"r{partition}-{offset}".encode(),
        value=f'{{"o": {offset}}}'.encode(),
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=2,
        headers=[("traceparent", f"t{partition}-{offset}".encode())],
    )


class FakeConsumer:
    """Serves prepared fetches for the partitions it is assigned; remembers every commit.

    Every ``getmany`` is one turn of the lane's loop (fetch, settle, maybe commit), counted in
    :attr:`turns` so a test can wait for turns to pass instead of sleeping. An empty fetch
    returns after ``IDLE_SECONDS``, not the lane's 100 ms, so idle turns are cheap.
    """

    IDLE_SECONDS = 0.005

    def __init__(self) -> None:
        self.fetches: asyncio.Queue[dict[TopicPartition, list[Any]]] = asyncio.Queue()
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.commits: list[dict[TopicPartition, int]] = []
        self.commit_attempts = 0
        self.turns = 0
        self.asked: list[tuple[int, int]] = []  # (timeout_ms, max_records) of every fetch
        self.highwaters: dict[TopicPartition, int] = {}
        self.positions: dict[TopicPartition, int | None] = {}
        self.fail_commits = False
        self.hang_commits = False
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        self.assigned = frozenset(partitions)

    def assignment(self) -> frozenset[TopicPartition]:
        return self.assigned

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
        self.turns += 1
        self.asked.append((timeout_ms, max_records))
        try:
            fetch = await asyncio.wait_for(
                self.fetches.get(), min(timeout_ms / 1000, self.IDLE_SECONDS)
            )
        except TimeoutError:
            return {}
        return {tp: records for tp, records in fetch.items() if tp in self.assigned}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commit_attempts += 1
        if set(offsets) - self.assigned:  # as aiokafka does
            raise IllegalStateError(f"partitions not assigned: {set(offsets) - self.assigned}")
        if self.fail_commits:
            raise KafkaConnectionError("coordinator gone")
        if self.hang_commits:
            await asyncio.Event().wait()  # the coordinator never answers
        self.commits.append(dict(offsets))

    def committed(self) -> dict[TopicPartition, int]:
        merged: dict[TopicPartition, int] = {}
        for commit in self.commits:
            merged.update(commit)
        return merged

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)

    async def position(self, tp: TopicPartition) -> int | None:
        found = self.positions[tp]
        if found == -1:
            raise KafkaConnectionError("coordinator gone")
        if found == -2:
            await asyncio.Event().wait()  # never answers
        return found


class Clock:
    """The lane's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A lane wired to the fake consumer, a scorer that echoes, and deliveries we control."""

    def __init__(
        self,
        *,
        commit_interval: float = 0.0,
        finish_timeout: float = 0.2,
        clock: Clock | None = None,
    ) -> None:
        self.consumer = FakeConsumer()
        self.scored: list[Incoming] = []
        self.deliveries: list[asyncio.Future[None]] = []
        self.futures_per_send = 1
        self.lane = ScoringLane(
            lambda: self.consumer,
            topic=TOPIC,
            score=self.score,
            send=self.send,
            batch_size=500,
            commit_interval_seconds=commit_interval,
            finish_timeout_seconds=finish_timeout,
            commit_timeout_seconds=0.3,
            monotonic=clock or time.monotonic,
        )
        self.task: asyncio.Task[None] | None = None

    def score(self, records: Sequence[Incoming]) -> list[Outgoing]:
        self.scored.extend(records)
        return [Outgoing("answers", r.key, b"ok", r.partition) for r in records]

    async def send(self, messages: Sequence[Outgoing]) -> list[asyncio.Future[None]]:
        """One delivery future per send, or ``futures_per_send`` of them."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = [
            loop.create_future() for _ in range(self.futures_per_send)
        ]
        self.deliveries.extend(futures)
        return futures

    def start(self, ready: Any = None) -> None:
        self.task = asyncio.ensure_future(self.lane.run(ready))

    async def stop(self) -> None:
        """Cancel the lane and wait for its way out, which must end (a hang fails the test)."""
        assert self.task is not None
        self.task.cancel()
        await asyncio.wait_for(asyncio.gather(self.task, return_exceptions=True), 5)

    async def fetch(self, partition: int, *offsets: int) -> None:
        await self.consumer.fetches.put(
            {TopicPartition(TOPIC, partition): [_record(partition, o) for o in offsets]}
        )

    async def scored_fetch(self, partition: int, *offsets: int) -> asyncio.Future[None]:
        """Serve a fetch and wait until its answers are handed to the producer."""
        sent = len(self.deliveries)
        await self.fetch(partition, *offsets)
        await self.until(lambda: len(self.deliveries) == sent + 1)
        return self.deliveries[-1]

    async def full_turns(self, count: int = 2) -> None:
        """Wait until ``count`` turns of the lane's loop began and ended after this call: each
        of them could have committed, so what they did not do, the lane does not do."""
        target = self.consumer.turns + count + 1  # the turn under way may predate the call
        await self.until(lambda: self.consumer.turns >= target)

    async def until(self, condition: Any, timeout: float = 2.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.01)


@pytest.fixture
async def harness() -> Any:
    h = Harness()
    yield h
    if h.task is not None and not h.task.done():
        await h.stop()


@pytest.fixture
async def patient() -> Any:
    """A harness whose lane waits 30 s for answers before letting go (long enough to be seen
    waiting, whatever the machine's load); its tests deliver every answer."""
    h = Harness(finish_timeout=30.0)
    yield h
    if h.task is not None and not h.task.done():
        await h.stop()


def tp(partition: int) -> TopicPartition:
    return TopicPartition(TOPIC, partition)


async def test_partitions_handed_over_before_the_lane_starts_are_read_once_it_runs(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.lane")
    assert harness.lane.partitions == set()
    await harness.lane.assign([1, 0])
    assert caplog.record_tuples == [
        ("streams.lane", logging.INFO, "scoring lane reads requests partitions [0, 1]")
    ]
    harness.start()
    await harness.until(lambda: harness.lane.partitions == {0, 1})
    await harness.fetch(0, 0, 1)
    await harness.until(lambda: len(harness.scored) == 2)
    assert [(r.partition, r.offset) for r in harness.scored] == [(0, 0), (0, 1)]


async def test_a_whole_fetch_is_scored_in_one_call_in_offset_order(harness: Harness) -> None:
    harness.start()
    await harness.lane.assign([0, 1])
    await harness.consumer.fetches.put(
        {
            TopicPartition(TOPIC, 0): [_record(0, o) for o in range(5, 8)],
            TopicPartition(TOPIC, 1): [_record(1, o) for o in range(2)],
        }
    )
    await harness.until(lambda: len(harness.scored) == 5)
    assert len(harness.deliveries) == 1  # one call, one hand-off to the producer
    assert {records for _, records in harness.consumer.asked} == {500}  # batch_size at most
    assert [(r.partition, r.offset) for r in harness.scored] == [
        (0, 5),
        (0, 6),
        (0, 7),
        (1, 0),
        (1, 1),
    ]
    assert harness.scored[0] == Incoming(
        b'{"o": 5}', b"r0-5", 0, 5, headers=(("traceparent", b"t0-5"),)
    )


async def test_offsets_are_committed_only_after_their_answers_are_delivered(
    harness: Harness,
) -> None:
    harness.start()
    await harness.lane.assign([0])
    await harness.scored_fetch(0, 0, 1, 2)
    await harness.full_turns()  # each one could commit
    assert harness.consumer.commit_attempts == 0
    harness.deliveries[0].set_result(None)
    await harness.until(lambda: bool(harness.consumer.commits))
    assert harness.consumer.committed() == {TopicPartition(TOPIC, 0): 3}


async def test_a_later_batch_delivered_first_does_not_commit_past_an_earlier_one(
    harness: Harness,
) -> None:
    harness.start()
    await harness.lane.assign([0])
    await harness.scored_fetch(0, 0, 1)
    await harness.scored_fetch(0, 2, 3)
    harness.deliveries[1].set_result(None)
    await harness.full_turns()
    assert harness.consumer.commit_attempts == 0
    harness.deliveries[0].set_result(None)
    await harness.until(lambda: harness.consumer.committed() == {TopicPartition(TOPIC, 0): 4})


async def test_release_waits_for_answers_in_flight_commits_them_and_lets_go(
    patient: Harness,
) -> None:
    harness = patient
    harness.start()
    await harness.lane.assign([0, 1])
    await harness.scored_fetch(1, 10, 11)
    release = asyncio.ensure_future(harness.lane.release())
    await harness.until(lambda: harness.lane.partitions == set())  # the release has the lane
    assert not release.done()  # the answers are not on the broker yet
    harness.deliveries[0].set_result(None)
    await asyncio.wait_for(release, 2)
    assert harness.consumer.committed() == {TopicPartition(TOPIC, 1): 12}
    assert harness.consumer.assigned == frozenset()
    # A fetch served while released stays unread: a lane still fetching would have drawn it
    # (and dropped it, nothing being assigned), so it could not be scored once handed back.
    await harness.fetch(1, 12)
    await harness.lane.assign([1])
    await harness.until(lambda: [r.offset for r in harness.scored] == [10, 11, 12])
    harness.deliveries[1].set_result(None)


async def test_a_failed_delivery_stops_the_lane_without_committing_past_it(
    harness: Harness,
) -> None:
    harness.start()
    await harness.lane.assign([0])
    await harness.scored_fetch(0, 0, 1)
    harness.deliveries[0].set_exception(KafkaConnectionError("broker gone"))
    assert harness.task is not None
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(harness.task, 2)
    assert harness.consumer.committed() == {}
    assert harness.consumer.stopped


async def test_a_failed_commit_is_retried_and_scoring_goes_on(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.consumer.fail_commits = True
    harness.start()
    await harness.lane.assign([0, 1])
    await harness.consumer.fetches.put({tp(1): [_record(1, 4)], tp(0): [_record(0, 0)]})
    await harness.until(lambda: len(harness.deliveries) == 1)
    harness.deliveries[0].set_result(None)
    await harness.until(lambda: harness.consumer.commit_attempts >= 2)  # failed, tried again
    assert harness.consumer.commits == []
    assert caplog.record_tuples[-1] == (
        "streams.lane",
        logging.WARNING,
        "could not commit request offsets requests[0]@1, requests[1]@5: "
        "KafkaConnectionError('coordinator gone')",
    )
    await harness.scored_fetch(0, 1)
    harness.deliveries[1].set_result(None)
    harness.consumer.fail_commits = False
    await harness.until(lambda: harness.consumer.committed() == {tp(0): 2, tp(1): 5})


async def test_stopping_the_lane_commits_what_was_answered_and_closes_the_consumer() -> None:
    lane = Harness(commit_interval=3600.0)  # only the stop itself may commit
    lane.start()
    await lane.lane.assign([2])
    await lane.scored_fetch(2, 7, 8)
    lane.deliveries[0].set_result(None)
    await lane.full_turns()
    assert lane.consumer.commit_attempts == 0
    await lane.stop()
    assert lane.consumer.committed() == {TopicPartition(TOPIC, 2): 9}
    assert lane.consumer.stopped


async def test_a_failed_batch_blocks_every_later_commit_even_on_the_way_out(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.start()
    await harness.lane.assign([0])
    await harness.scored_fetch(0, 0, 1)
    await harness.scored_fetch(0, 2, 3)
    harness.deliveries[1].set_result(None)  # the later batch made it...
    harness.deliveries[0].set_exception(KafkaConnectionError("broker gone"))  # ...this did not
    assert harness.task is not None
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(harness.task, 2)
    assert (
        "streams.lane",
        logging.WARNING,
        "scoring lane stopped without its last commit: KafkaConnectionError('broker gone')",
    ) in caplog.record_tuples
    await asyncio.wait_for(harness.lane.release(), 2)  # Faust's revoke may still come
    assert harness.consumer.committed() == {}


async def test_a_partition_taken_away_is_committed_first_and_never_after(
    patient: Harness,
) -> None:
    harness = patient
    harness.start()
    await harness.lane.assign([0, 1])
    await harness.scored_fetch(1, 4, 5)
    reassign = asyncio.ensure_future(harness.lane.assign([0]))
    await harness.until(lambda: harness.lane.partitions == {0})  # it waits for the answers
    assert not reassign.done()
    harness.deliveries[0].set_result(None)
    await asyncio.wait_for(reassign, 2)
    assert harness.consumer.committed() == {TopicPartition(TOPIC, 1): 6}
    assert harness.lane.partitions == {0}
    await harness.scored_fetch(0, 0)
    harness.deliveries[1].set_result(None)
    await harness.until(lambda: TopicPartition(TOPIC, 0) in harness.consumer.committed())
    assert all(set(commit) <= {TopicPartition(TOPIC, 0)} for commit in harness.consumer.commits[1:])


async def test_a_commit_that_never_returns_does_not_hold_up_a_revoke(harness: Harness) -> None:
    harness.start()
    await harness.lane.assign([0])
    await harness.scored_fetch(0, 0)
    harness.consumer.hang_commits = True
    harness.deliveries[0].set_result(None)
    await asyncio.wait_for(harness.lane.release(), 3)
    assert harness.lane.partitions == set()
    assert harness.consumer.commits == []


async def test_the_lane_waits_for_ready_before_its_first_fetch(harness: Harness) -> None:
    waiting = asyncio.Event()
    go = asyncio.Event()

    async def ready() -> None:
        waiting.set()
        await go.wait()

    await harness.lane.assign([0])
    harness.start(ready())
    await harness.fetch(0, 0)
    await asyncio.wait_for(waiting.wait(), 2)
    assert harness.consumer.turns == 0  # the lane is held by `ready` and has not fetched
    go.set()
    await harness.until(lambda: len(harness.scored) == 1)


async def test_answered_offsets_are_committed_once_the_commit_interval_has_passed() -> None:
    clock = Clock()
    h = Harness(commit_interval=5.0, clock=clock)
    h.start()
    try:
        await h.lane.assign([0])
        await h.scored_fetch(0, 0, 1)
        h.deliveries[0].set_result(None)
        clock.now = 4.9
        await h.full_turns()
        assert h.consumer.commit_attempts == 0
        clock.now = 5.0
        await h.until(lambda: h.consumer.commits == [{tp(0): 2}])
        await h.scored_fetch(0, 2)
        h.deliveries[1].set_result(None)
        clock.now = 9.9  # the interval counts from the last commit, not from the start
        await h.full_turns()
        assert len(h.consumer.commits) == 1
        clock.now = 10.0
        await h.until(lambda: h.consumer.commits == [{tp(0): 2}, {tp(0): 3}])
    finally:
        await h.stop()


async def test_an_offset_is_committed_once_not_at_every_turn(harness: Harness) -> None:
    harness.start()
    await harness.lane.assign([0, 1])
    await harness.scored_fetch(0, 0)
    harness.deliveries[0].set_result(None)
    await harness.until(lambda: harness.consumer.commits == [{tp(0): 1}])
    await harness.scored_fetch(1, 0)
    harness.deliveries[1].set_result(None)
    await harness.until(lambda: len(harness.consumer.commits) == 2)
    await harness.full_turns()
    assert harness.consumer.commits == [{tp(0): 1}, {tp(1): 1}]  # only what moved, once


async def test_a_partition_handed_back_is_not_committed_from_before_it_was_let_go(
    harness: Harness,
) -> None:
    """Another worker may have moved its offset on meanwhile: committing our old one would
    rewind it."""
    harness.start()
    await harness.lane.assign([0, 1])
    await harness.scored_fetch(1, 4, 5)
    harness.deliveries[0].set_result(None)
    await harness.until(lambda: harness.consumer.commits == [{tp(1): 6}])
    await harness.lane.assign([0])
    await harness.lane.assign([0, 1])
    await harness.scored_fetch(0, 0)
    harness.deliveries[1].set_result(None)
    await harness.until(lambda: len(harness.consumer.commits) == 2)
    await harness.full_turns()
    assert harness.consumer.commits == [{tp(1): 6}, {tp(0): 1}]


async def test_adding_partitions_does_not_wait_for_answers_in_flight(patient: Harness) -> None:
    patient.start()
    await patient.lane.assign([0])
    await patient.scored_fetch(0, 0)
    await asyncio.wait_for(patient.lane.assign([0, 1]), 2)  # nothing let go: nothing to finish
    assert patient.lane.partitions == {0, 1}
    assert patient.consumer.commit_attempts == 0
    patient.deliveries[0].set_result(None)
    await patient.until(lambda: patient.consumer.committed() == {tp(0): 1})


async def test_a_release_gives_up_on_answers_never_confirmed_and_commits_what_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(commit_interval=3600.0, finish_timeout=0.2)  # only the release commits
    h.start()
    try:
        await h.lane.assign([0])
        await h.scored_fetch(0, 0, 1)
        await h.scored_fetch(0, 2, 3)  # never confirmed
        h.deliveries[0].set_result(None)
        await asyncio.wait_for(h.lane.release(), 2)
        assert h.consumer.committed() == {tp(0): 2}  # 2 and 3 will be answered again
        assert h.lane.partitions == set()
        assert (
            "streams.lane",
            logging.WARNING,
            "1 batches of answers unconfirmed after 0 s; their requests stay uncommitted and "
            "will be answered again",
        ) in caplog.record_tuples
    finally:
        await h.stop()


async def test_lags_are_the_records_not_yet_read_of_the_partitions_read_now(
    harness: Harness,
) -> None:
    assert await harness.lane.lags() == []  # not started: no consumer to ask
    harness.consumer.highwaters = {tp(0): 10, tp(1): 5}
    harness.consumer.positions = {tp(0): 4, tp(1): 5}
    harness.start()
    await harness.lane.assign([0, 1])
    await harness.until(lambda: harness.consumer.turns > 0)
    assert sorted(await harness.lane.lags()) == [(TOPIC, 0, 6), (TOPIC, 1, 0)]


async def test_partition_lags_leave_out_what_the_consumer_cannot_tell_yet() -> None:
    consumer = FakeConsumer()
    consumer.highwaters = {tp(0): 10, tp(2): 7, tp(3): 7, tp(4): 7, tp(5): 3}
    consumer.positions = {tp(1): 0, tp(2): None, tp(3): -1, tp(4): -2, tp(5): 9}
    found = await partition_lags(consumer, [tp(1), tp(2), tp(3), tp(4), tp(5)])
    # 1: no highwater; 2: no position; 3: position failed; 4: position never answered (1 s);
    # 5: read past a stale highwater, which is no lag, never a negative one
    assert found == [(TOPIC, 5, 0)]
    consumer.positions[tp(0)] = 3
    assert await partition_lags(consumer, [tp(0)]) == [(TOPIC, 0, 7)]


async def test_a_workers_lane_reads_the_requests_topic_in_its_own_commit_only_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(ROOT / "params.yaml", environ={})
    consumer = FakeConsumer()
    made: list[dict[str, Any]] = []

    def make_consumer(kafka: Any, *topics: str, **overrides: Any) -> FakeConsumer:
        made.append({"kafka": kafka, "topics": topics, **overrides})
        return consumer

    scored: list[Incoming] = []
    sent: list[Outgoing] = []
    was_sent = asyncio.Event()

    def score(records: Sequence[Incoming]) -> list[Outgoing]:
        scored.extend(records)
        return [Outgoing("answers", r.key, b"ok", r.partition) for r in records]

    async def send(messages: Sequence[Outgoing]) -> list[asyncio.Future[None]]:
        sent.extend(messages)
        was_sent.set()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return [done]

    monkeypatch.setattr(lane_module, "make_consumer", make_consumer)
    lane = scoring_lane(settings, score=score, send=send)
    assert lane.topic == settings.kafka.topics.requests
    task = asyncio.ensure_future(lane.run())
    try:
        await lane.assign([0])
        await consumer.fetches.put({TopicPartition(lane.topic, 0): [_record(0, 0)]})
        await asyncio.wait_for(was_sent.wait(), 2)
        assert [r.key for r in scored] == [b"r0-0"]  # scored by the worker's pipeline...
        assert [m.key for m in sent] == [b"r0-0"]  # ...and sent by its producer
    finally:
        task.cancel()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    app_id = settings.kafka.app_id
    assert made == [
        {
            "kafka": settings.kafka,
            "topics": (),  # assigned partitions, never subscribed: the group has no members
            "group_id": f"{app_id}-streams-scoring",
            "client_id": f"{app_id}-scoring-lane",
        }
    ]
    assert {records for _, records in consumer.asked} == {settings.scoring.batch_size}
    assert lane._commit_interval == settings.scoring.commit_interval_seconds


async def test_a_fetch_is_committed_only_once_every_one_of_its_answers_is_delivered(
    harness: Harness,
) -> None:
    harness.futures_per_send = 2  # e.g. an answer and a dead letter
    harness.start()
    await harness.lane.assign([0])
    await harness.fetch(0, 0, 1)
    await harness.until(lambda: len(harness.deliveries) == 2)
    harness.deliveries[0].set_result(None)
    await harness.full_turns()
    assert harness.consumer.commit_attempts == 0
    harness.deliveries[1].set_result(None)
    await harness.until(lambda: harness.consumer.committed() == {tp(0): 2})


async def test_a_fetch_with_nothing_to_send_is_committed_at_once(harness: Harness) -> None:
    harness.futures_per_send = 0
    harness.start()
    await harness.lane.assign([0])
    await harness.fetch(0, 0, 1)
    await harness.until(lambda: harness.consumer.committed() == {tp(0): 2})


async def test_late_answers_of_a_partition_let_go_are_not_committed_and_block_nothing(
    harness: Harness,
) -> None:
    harness.start()
    await harness.lane.assign([0, 1])
    await harness.scored_fetch(1, 4)
    await asyncio.wait_for(harness.lane.assign([0]), 2)  # gives up on the answer after 0.2 s
    harness.deliveries[0].set_result(None)  # ...which arrives late
    await harness.scored_fetch(0, 0)
    harness.deliveries[1].set_result(None)
    await harness.until(lambda: harness.consumer.committed() == {tp(0): 1})
    assert all(tp(1) not in commit for commit in harness.consumer.commits)


async def test_answers_not_yet_committed_survive_a_rebalance_that_keeps_their_partition() -> None:
    clock = Clock()
    h = Harness(commit_interval=5.0, clock=clock)
    h.start()
    try:
        await h.lane.assign([0])
        await h.scored_fetch(0, 0)
        h.deliveries[0].set_result(None)
        await h.full_turns()  # answered, not committed yet: the interval has not passed
        await h.lane.assign([0, 1])
        clock.now = 5.0
        await h.until(lambda: h.consumer.commits == [{tp(0): 1}])
        await h.lane.assign([0, 2])  # 0 stays: what it committed stays committed
        clock.now = 10.0
        await h.full_turns()
        assert h.consumer.commits == [{tp(0): 1}]
    finally:
        await h.stop()


class Faust:
    """The partitions Faust says this worker owns, as the Handover reads them."""

    def __init__(self) -> None:
        self.owned: set[int] = set()

    def __call__(self) -> set[int]:
        return set(self.owned)


async def test_partitions_are_handed_over_when_recovery_completes_not_before(
    harness: Harness,
) -> None:
    faust = Faust()
    handover = Handover(harness.lane, faust)
    await handover.revoked()
    faust.owned = {0, 2}
    handover.assigned()
    assert harness.lane.partitions == set()
    await handover.completed()
    assert harness.lane.partitions == {0, 2}


async def test_a_completion_that_a_newer_rebalance_overtook_hands_nothing_over(
    harness: Harness,
) -> None:
    faust = Faust()
    handover = Handover(harness.lane, faust)
    faust.owned = {0, 1}
    handover.assigned()
    await handover.revoked()  # rebalance 2 begins before rebalance 1's recovery completes
    await handover.completed()  # rebalance 1's late completion
    await handover.reconcile()
    assert harness.lane.partitions == set()
    faust.owned = {1}
    handover.assigned()
    await handover.completed()
    assert harness.lane.partitions == {1}


async def test_reconcile_repairs_a_missed_hand_over_once_the_rebalance_is_over(
    harness: Harness,
) -> None:
    faust = Faust()
    handover = Handover(harness.lane, faust)
    faust.owned = {3}
    handover.assigned()
    await handover.completed()
    faust.owned = {2, 3}  # Faust's view moved on without a completion reaching us
    await handover.reconcile()
    assert harness.lane.partitions == {2, 3}
