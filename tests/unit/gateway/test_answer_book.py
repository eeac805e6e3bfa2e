"""A request id is answered once: duplicates share the first answer, in flight or after."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from gateway.answer_book import AnswerBook, input_digest
from gateway.bodies import BatchPredictionPublic, InstancePublic, PredictionPublic
from gateway.errors import RequestIdConflict

PROBS = {"setosa": 0.9, "versicolor": 0.05, "virginica": 0.05}


class Answer(BaseModel):
    value: int


class Producer:
    """Counts calls; each call waits for ``release`` so duplicates can pile up meanwhile."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> BaseModel:
        self.calls += 1
        await self.release.wait()
        return Answer(value=self.calls)


async def test_a_repeated_id_gets_the_first_answer_without_producing_again() -> None:
    book = AnswerBook(10)
    produce = Producer()
    produce.release.set()
    first, replayed_first = await book.once("r1", "p", produce)
    second, replayed_second = await book.once("r1", "p", produce)
    assert (first, second) == (Answer(value=1), Answer(value=1))
    assert (replayed_first, replayed_second) == (False, True)
    assert produce.calls == 1


async def test_concurrent_duplicates_share_one_call() -> None:
    book = AnswerBook(10)
    produce = Producer()
    waiters = [asyncio.ensure_future(book.once("r1", "p", produce)) for _ in range(5)]
    await asyncio.sleep(0)
    assert book.in_flight("r1")
    produce.release.set()
    results = await asyncio.gather(*waiters)
    assert [answer for answer, _ in results] == [Answer(value=1)] * 5
    assert sorted(replayed for _, replayed in results) == [False, True, True, True, True]
    assert produce.calls == 1


async def test_a_client_that_hangs_up_does_not_cancel_the_others() -> None:
    book = AnswerBook(10)
    produce = Producer()
    first = asyncio.ensure_future(book.once("r1", "p", produce))
    second = asyncio.ensure_future(book.once("r1", "p", produce))
    await asyncio.sleep(0)
    first.cancel()
    produce.release.set()
    assert (await second)[0] == Answer(value=1)
    assert book.lookup("r1", "p") == Answer(value=1)


async def test_reusing_an_id_for_other_input_is_a_conflict() -> None:
    book = AnswerBook(10)
    book.remember("r1", input_digest("single", {"a": 1.0}), Answer(value=1))
    with pytest.raises(RequestIdConflict):
        await book.once("r1", input_digest("single", {"a": 2.0}), Producer())


async def test_a_failure_is_not_remembered_so_a_retry_runs_again() -> None:
    book = AnswerBook(10)

    async def fail() -> BaseModel:
        raise TimeoutError("no worker")

    with pytest.raises(TimeoutError):
        await book.once("r1", "p", fail)
    assert book.lookup("r1", "p") is None
    assert not book.in_flight("r1")


def test_the_book_forgets_the_least_recently_used_first() -> None:
    book = AnswerBook(2)
    book.remember("a", "p", Answer(value=1))
    book.remember("b", "p", Answer(value=2))
    assert book.lookup("a", "p") is not None  # "a" is now the most recent
    book.remember("c", "p", Answer(value=3))
    assert book.lookup("b", "p") is None
    assert book.lookup("a", "p") == Answer(value=1)
    assert len(book) == 2


def test_input_digests_ignore_key_order_but_not_values() -> None:
    assert input_digest("single", {"a": 1.0, "b": 2.0}) == input_digest(
        "single", {"b": 2.0, "a": 1.0}
    )
    assert input_digest("single", {"a": 1.0}) != input_digest("single", {"a": 1.5})
    assert input_digest("single", [{"a": 1.0}]) != input_digest("batch", [{"a": 1.0}])


def test_remembered_answers_are_bounded_by_bytes_as_well_as_by_count() -> None:
    """Finding 6: 10,000 answers of 1,000 instances must not be kept (~6.5 GiB)."""
    book = AnswerBook(10_000, max_bytes=200_000)
    big = BatchPredictionPublic(
        request_id="b",
        model_version=1,
        predictions=[InstancePublic(label="setosa", probabilities=PROBS)] * 1000,
        latency_seconds=0.01,
    )
    size = len(big.model_dump_json())
    assert 50_000 < size < 100_000
    for i in range(100):
        book.remember(f"b{i}", "p", big.model_copy(update={"request_id": f"b{i}"}))
    assert book.bytes <= 200_000
    assert len(book) == 200_000 // size
    assert book.lookup("b0", "p") is None
    kept = book.lookup("b99", "p")
    assert isinstance(kept, BatchPredictionPublic)
    assert kept.request_id == "b99"
    assert len(kept.predictions) == 1000


def test_an_answer_larger_than_the_whole_budget_is_not_kept() -> None:
    book = AnswerBook(10, max_bytes=100)
    answer = PredictionPublic(
        request_id="r1", label="setosa", probabilities=PROBS, model_version=1, latency_seconds=0
    )
    book.remember("r1", "p", answer)
    assert (len(book), book.bytes) == (0, 0)


def test_an_answer_exactly_the_size_of_the_budget_is_kept() -> None:
    answer = Answer(value=7)
    size = len(answer.model_dump_json())
    book = AnswerBook(1, max_bytes=size)
    book.remember("r1", "p", answer)
    assert book.lookup("r1", "p") == answer
    assert book.bytes == size


def test_an_answer_too_large_to_keep_does_not_push_out_the_ones_that_fit() -> None:
    small = Answer(value=1)
    book = AnswerBook(10, max_bytes=3 * len(small.model_dump_json()))
    book.remember("a", "p", small)
    too_big = PredictionPublic(
        request_id="r1", label="setosa", probabilities=PROBS, model_version=1, latency_seconds=0
    )
    book.remember("big", "p", too_big)
    assert book.lookup("big", "p") is None
    assert book.lookup("a", "p") == small


def test_an_id_remembered_again_is_counted_once_against_the_byte_budget() -> None:
    """Replacing an answer gives back its bytes: the budget must not drift, or the book would
    evict answers it has room for."""
    large, small = Answer(value=1_000_000), Answer(value=1)
    budget = len(large.model_dump_json()) + len(small.model_dump_json())
    book = AnswerBook(10, max_bytes=budget)
    book.remember("a", "p", large)
    book.remember("b", "p", small)
    for _ in range(3):
        book.remember("a", "p", large)
    assert book.bytes == budget
    assert (book.lookup("a", "p"), book.lookup("b", "p")) == (large, small)
    assert len(book) == 2
