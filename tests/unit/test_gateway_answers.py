"""A request id is answered once: duplicates share the first answer, in flight or after."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from gateway.answers import AnswerBook, fingerprint
from gateway.errors import RequestIdConflict


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
    book.remember("r1", fingerprint("single", {"a": 1.0}), Answer(value=1))
    with pytest.raises(RequestIdConflict):
        await book.once("r1", fingerprint("single", {"a": 2.0}), Producer())


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


def test_fingerprints_ignore_key_order_but_not_values() -> None:
    assert fingerprint("single", {"a": 1.0, "b": 2.0}) == fingerprint(
        "single", {"b": 2.0, "a": 1.0}
    )
    assert fingerprint("single", {"a": 1.0}) != fingerprint("single", {"a": 1.5})
    assert fingerprint("single", [{"a": 1.0}]) != fingerprint("batch", [{"a": 1.0}])
