"""A late request gets a copy on a partition that answers; a prompt one never does."""

from __future__ import annotations

import asyncio

import pytest

from gateway.bridge import KafkaBridge
from gateway.hedging import Hedger
from gateway.trips import Trip
from irisflow.schemas import Prediction, PredictionRequest
from irisflow.settings import KafkaSettings
from irisflow.topics import Outgoing
from irisflow.tracing import HEDGE_OF, REQUEST_PARTITION, trace_of
from tests.factories import SETOSA

PROBS = {"setosa": 0.9, "versicolor": 0.05, "virginica": 0.05}


class Bridge(KafkaBridge):
    """Publishes nowhere: records what it was asked to send (originals land on partition 0)."""

    def __init__(self, delay: float) -> None:
        kafka = KafkaSettings()
        super().__init__(kafka, hedger=Hedger(kafka.partitions, delay=delay))
        self.sent: list[Outgoing] = []

    async def publish(self, record: Outgoing, *, timeout: float) -> int | None:
        self.sent.append(record)
        return 0 if record.partition is None else record.partition


def _answer(rid: str) -> bytes:
    return Prediction(
        request_id=rid, label="setosa", probabilities=PROBS, model_version=1
    ).to_bytes()


async def _ask(bridge: Bridge, rid: str, answer_after: float, trip: Trip) -> Prediction:
    request = PredictionRequest(request_id=rid, features=SETOSA)

    async def worker() -> None:
        await asyncio.sleep(answer_after)
        bridge.deliver(rid, _answer(rid), ((REQUEST_PARTITION, b"2"),))

    answering = asyncio.ensure_future(worker())
    try:
        answer = await bridge.request(request, context="c", timeout=5.0, trip=trip)
    finally:
        await answering
    assert isinstance(answer, Prediction)
    return answer


async def test_a_prompt_answer_costs_no_copy() -> None:
    bridge = Bridge(delay=0.5)
    await _ask(bridge, "quick", 0.01, Trip.start(None))
    assert [r.partition for r in bridge.sent] == [None]


async def test_a_late_request_is_copied_to_the_partition_that_answers_most_recently() -> None:
    bridge = Bridge(delay=0.05)
    bridge.hedger.answered(1)
    bridge.hedger.answered(3)  # the most recent answer
    trip = Trip.start(None)
    answer = await _ask(bridge, "late", 0.3, trip)
    assert answer.request_id == "late"
    original, copy, *_ = bridge.sent
    assert (original.partition, copy.partition) == (None, 3)
    assert (HEDGE_OF, b"0") in copy.headers
    assert copy.key == original.key == b"late"
    assert copy.value == original.value
    copied, first = trace_of(copy.headers), trace_of(original.headers)
    assert copied is not None
    assert first is not None
    assert copied.trace_id == first.trace_id
    assert trip.hedges == len(bridge.sent) - 1 >= 1


async def test_a_request_without_a_trip_is_never_copied() -> None:
    bridge = Bridge(delay=0.05)
    request = PredictionRequest(request_id="plain", features=SETOSA)
    waiting = asyncio.ensure_future(bridge.request(request, context="c", timeout=5.0))
    await asyncio.sleep(0.3)
    bridge.deliver("plain", _answer("plain"))
    await waiting
    assert [r.partition for r in bridge.sent] == [None]


async def test_the_trip_learns_the_partition_and_the_workers_stamps() -> None:
    bridge = Bridge(delay=0.5)
    trip = Trip.start(None)
    await _ask(bridge, "stamped", 0.01, trip)
    assert trip.partition == 0
    assert trip.published is not None
    assert trip.answered is not None
    assert trip.received <= trip.published <= trip.answered


class _Record:
    def __init__(self, key: str, value: bytes, headers: tuple[tuple[str, bytes], ...]) -> None:
        self.key, self.value, self.headers = key.encode(), value, headers
        self.topic, self.partition, self.offset = "irisflow.predictions", 0, 0


@pytest.mark.parametrize("partition", [b"not a number", b"\xff\xfe", b""])
async def test_an_answer_with_a_junk_partition_header_is_still_delivered(partition: bytes) -> None:
    bridge = Bridge(delay=0.5)
    request = PredictionRequest(request_id="junk-header", features=SETOSA)
    waiting = asyncio.ensure_future(bridge.await_answer(request, context="c", timeout=5.0))
    await asyncio.sleep(0)
    bridge._handle(
        _Record("junk-header", _answer("junk-header"), ((REQUEST_PARTITION, partition),))
    )
    answer = await waiting
    assert answer.request_id == "junk-header"
