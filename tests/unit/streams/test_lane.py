"""The scoring lane's contract, with a stand-in consumer: what it scores, and when it commits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaConnectionError
from aiokafka.structs import ConsumerRecord

from irisflow.topics import Incoming, Outgoing
from streams.handover import Handover
from streams.lane import ScoringLane

TOPIC = "requests"


def _record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=TOPIC,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=f"r{partition}-{offset}".encode(),
        value=b"{}",
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=2,
        headers=(),
    )


class FakeConsumer:
    """Serves prepared fetches for the partitions it is assigned; remembers every commit."""

    def __init__(self) -> None:
        self.fetches: asyncio.Queue[dict[TopicPartition, list[Any]]] = asyncio.Queue()
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.commits: list[dict[TopicPartition, int]] = []
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
        try:
            fetch = await asyncio.wait_for(self.fetches.get(), timeout_ms / 1000)
        except TimeoutError:
            return {}
        return {tp: records for tp, records in fetch.items() if tp in self.assigned}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
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


class Harness:
    """A lane wired to the fake consumer, a scorer that echoes, and deliveries we control."""

    def __init__(self, *, commit_interval: float = 0.0) -> None:
        self.consumer = FakeConsumer()
        self.scored: list[Incoming] = []
        self.deliveries: list[asyncio.Future[None]] = []
        self.lane = ScoringLane(
            lambda: self.consumer,  # type: ignore[arg-type,return-value]
            topic=TOPIC,
            score=self.score,
            send=self.send,
            batch_size=500,
            commit_interval_seconds=commit_interval,
            finish_timeout_seconds=0.5,
            commit_timeout_seconds=0.3,
        )
        self.task: asyncio.Task[None] | None = None

    def score(self, records: Sequence[Incoming]) -> list[Outgoing]:
        self.scored.extend(records)
        return [Outgoing("answers", r.key, b"ok", r.partition) for r in records]

    async def send(self, messages: Sequence[Outgoing]) -> list[asyncio.Future[None]]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.deliveries.append(future)
        return [future]

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.lane.run())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

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


async def test_partitions_handed_over_before_the_lane_starts_are_read_once_it_runs(
    harness: Harness,
) -> None:
    await harness.lane.assign([1, 0])
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
    assert [(r.partition, r.offset) for r in harness.scored] == [
        (0, 5),
        (0, 6),
        (0, 7),
        (1, 0),
        (1, 1),
    ]


async def test_offsets_are_committed_only_after_their_answers_are_delivered(
    harness: Harness,
) -> None:
    harness.start()
    await harness.lane.assign([0])
    await harness.scored_fetch(0, 0, 1, 2)
    await asyncio.sleep(0.3)  # several idle turns of the loop, each one could commit
    assert harness.consumer.commits == []
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
    await asyncio.sleep(0.3)
    assert harness.consumer.committed() == {}
    harness.deliveries[0].set_result(None)
    await harness.until(lambda: harness.consumer.committed() == {TopicPartition(TOPIC, 0): 4})


async def test_release_waits_for_answers_in_flight_commits_them_and_lets_go(
    harness: Harness,
) -> None:
    harness.start()
    await harness.lane.assign([0, 1])
    await harness.scored_fetch(1, 10, 11)
    release = asyncio.ensure_future(harness.lane.release())
    await asyncio.sleep(0.2)
    assert not release.done()  # the answers are not on the broker yet
    harness.deliveries[0].set_result(None)
    await asyncio.wait_for(release, 2)
    assert harness.consumer.committed() == {TopicPartition(TOPIC, 1): 12}
    assert harness.lane.partitions == set()
    await harness.fetch(1, 12)
    await asyncio.sleep(0.3)
    assert [r.offset for r in harness.scored] == [10, 11]  # nothing read after the release


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


async def test_a_failed_commit_is_retried_and_scoring_goes_on(harness: Harness) -> None:
    harness.consumer.fail_commits = True
    harness.start()
    await harness.lane.assign([0])
    await harness.scored_fetch(0, 0)
    harness.deliveries[0].set_result(None)
    await asyncio.sleep(0.3)
    assert harness.consumer.commits == []
    await harness.scored_fetch(0, 1)
    harness.deliveries[1].set_result(None)
    harness.consumer.fail_commits = False
    await harness.until(lambda: harness.consumer.committed() == {TopicPartition(TOPIC, 0): 2})


async def test_stopping_the_lane_commits_what_was_answered_and_closes_the_consumer() -> None:
    lane = Harness(commit_interval=3600.0)  # only the stop itself may commit
    lane.start()
    await lane.lane.assign([2])
    await lane.scored_fetch(2, 7, 8)
    lane.deliveries[0].set_result(None)
    await asyncio.sleep(0.2)
    assert lane.consumer.commits == []
    await lane.stop()
    assert lane.consumer.committed() == {TopicPartition(TOPIC, 2): 9}
    assert lane.consumer.stopped


async def test_a_failed_batch_blocks_every_later_commit_even_on_the_way_out(
    harness: Harness,
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
    await harness.lane.release()  # Faust's revoke may still come
    assert harness.consumer.committed() == {}


async def test_a_partition_taken_away_is_committed_first_and_never_after(
    harness: Harness,
) -> None:
    harness.start()
    await harness.lane.assign([0, 1])
    await harness.scored_fetch(1, 4, 5)
    reassign = asyncio.ensure_future(harness.lane.assign([0]))
    await asyncio.sleep(0.1)
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
