"""``?wait=false`` claims in the answer book: one publish per id, and no 202 before Kafka has it.

README, "Idempotent request ids": a second call with an id publishes nothing while the first is
claimed or in flight, it answers only once that call's record is on the broker (sharing its
failure), and a call whose claim was given up publishes itself. These tests drive
:class:`~gateway.answer_book.AnswerBook` directly with publishers that wait for a signal, so each
interleaving is chosen, not raced. The event loop's exception handler is watched too: a done
callback that fails, or a failure nobody retrieved, is a defect asyncio only logs.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from gateway.answer_book import AnswerBook
from gateway.errors import RequestIdConflict
from irisflow.errors import KafkaUnavailable

DEADLINE = 5.0
"""Seconds a step that must happen is given before the test fails (it takes milliseconds)."""


class Answer(BaseModel):
    value: int


class Publisher:
    """Counts its calls; each call waits for ``go`` and then succeeds or raises ``fail``."""

    def __init__(self, *, fail: BaseException | None = None, wait: bool = True) -> None:
        self.calls = 0
        self.go = asyncio.Event()
        self.fail = fail
        if not wait:
            self.go.set()

    async def __call__(self) -> None:
        self.calls += 1
        await self.go.wait()
        if self.fail is not None:
            raise self.fail


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What the running loop's exception handler is given while the test runs."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    yield reported
    loop.set_exception_handler(previous)


async def _until(condition: Any, what: str) -> None:
    """Poll ``condition()`` until true, failing after :data:`DEADLINE` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


async def test_a_call_with_an_unclaimed_id_publishes_and_says_so() -> None:
    book = AnswerBook(10)
    publish = Publisher(wait=False)
    assert await book.publish_once("r1", "p", publish) is True
    assert publish.calls == 1
    assert book.claimed("r1")


async def test_an_id_already_answered_here_is_not_published_again() -> None:
    book = AnswerBook(10)
    book.remember("r1", "p", Answer(value=1))
    publish = Publisher(wait=False)
    assert await book.publish_once("r1", "p", publish) is False
    assert publish.calls == 0


async def test_a_second_call_waits_for_the_claims_record_and_does_not_publish() -> None:
    book = AnswerBook(10)
    first_publish, second_publish = Publisher(), Publisher(wait=False)
    first = asyncio.ensure_future(book.publish_once("r1", "p", first_publish))
    await _until(lambda: first_publish.calls == 1, "the first publish")
    second = asyncio.ensure_future(book.publish_once("r1", "p", second_publish))
    await _until(lambda: book.claimed("r1"), "the claim")
    assert not second.done()  # no 202 before the record is on the broker
    first_publish.go.set()
    assert await asyncio.wait_for(first, DEADLINE) is True
    assert await asyncio.wait_for(second, DEADLINE) is False
    assert second_publish.calls == 0


async def test_a_second_call_shares_the_503_of_a_publish_that_failed() -> None:
    book = AnswerBook(10)
    failed = KafkaUnavailable("no broker")
    first_publish, second_publish = Publisher(fail=failed), Publisher(wait=False)
    first = asyncio.ensure_future(book.publish_once("r1", "p", first_publish))
    await _until(lambda: first_publish.calls == 1, "the first publish")
    second = asyncio.ensure_future(book.publish_once("r1", "p", second_publish))
    await asyncio.sleep(0)
    first_publish.go.set()
    for call in (first, second):
        with pytest.raises(KafkaUnavailable):
            await asyncio.wait_for(call, DEADLINE)
    assert second_publish.calls == 0
    assert not book.claimed("r1")  # the failed claim is dropped: a retry publishes


async def test_a_failed_publish_drops_its_claim_so_a_retry_publishes_again() -> None:
    book = AnswerBook(10)
    with pytest.raises(KafkaUnavailable):
        await book.publish_once("r1", "p", Publisher(fail=KafkaUnavailable("down"), wait=False))
    assert not book.claimed("r1")
    retry = Publisher(wait=False)
    assert await book.publish_once("r1", "p", retry) is True
    assert retry.calls == 1


async def test_a_call_whose_claim_was_given_up_publishes_itself() -> None:
    """The first caller hung up (cancelled) before Kafka had its record: nobody published, so
    the second call must, rather than answer 202 for a record that is not there."""
    book = AnswerBook(10)
    first_publish, second_publish = Publisher(), Publisher(wait=False)
    first = asyncio.ensure_future(book.publish_once("r1", "p", first_publish))
    await _until(lambda: first_publish.calls == 1, "the first publish")
    second = asyncio.ensure_future(book.publish_once("r1", "p", second_publish))
    await asyncio.sleep(0)
    first.cancel()
    assert await asyncio.wait_for(second, DEADLINE) is True
    assert second_publish.calls == 1
    assert first.cancelled()


async def test_a_call_in_flight_that_reports_its_record_sent_releases_the_202_waiters() -> None:
    """A waiting call has the id in flight; once its record is on the broker (``sent``), a
    ``?wait=false`` call with the id answers without publishing, before the answer comes."""
    book = AnswerBook(10)
    answer = asyncio.Event()

    async def produce() -> BaseModel:
        await answer.wait()
        return Answer(value=1)

    waiting = asyncio.ensure_future(book.once("r1", "p", produce))
    await _until(lambda: book.in_flight("r1"), "the call in flight")
    publish = Publisher(wait=False)
    no_wait = asyncio.ensure_future(book.publish_once("r1", "p", publish))
    await asyncio.sleep(0)
    assert not no_wait.done()
    book.sent("r1")
    assert await asyncio.wait_for(no_wait, DEADLINE) is False
    assert publish.calls == 0
    assert not waiting.done()  # still waiting for its answer
    book.sent("r1")  # said twice (a hedged copy): harmless
    book.sent("unknown")  # nothing in flight under that id: nothing to do
    answer.set()
    assert await asyncio.wait_for(waiting, DEADLINE) == (Answer(value=1), False)


async def test_claims_are_bounded_and_the_oldest_is_dropped_first() -> None:
    book = AnswerBook(1)
    for rid in ("r1", "r2"):
        assert await book.publish_once(rid, "p", Publisher(wait=False)) is True
    assert (book.claimed("r1"), book.claimed("r2")) == (False, True)


async def test_a_claim_is_served_once_its_answer_is_remembered() -> None:
    book = AnswerBook(10)
    await book.publish_once("r1", "p", Publisher(wait=False))
    book.remember("r1", "p", Answer(value=1))
    assert not book.claimed("r1")


async def test_reusing_a_claimed_id_for_other_input_is_a_conflict_that_names_the_id() -> None:
    book = AnswerBook(10)
    first_publish = Publisher()
    first = asyncio.ensure_future(book.publish_once("r1", "p", first_publish))
    await _until(lambda: first_publish.calls == 1, "the first publish")
    with pytest.raises(RequestIdConflict, match="'r1'"):
        await book.publish_once("r1", "other", Publisher(wait=False))
    with pytest.raises(RequestIdConflict, match="'r1'"):
        await book.once("r1", "other", _never)
    first_publish.go.set()
    assert await asyncio.wait_for(first, DEADLINE) is True


async def test_reusing_an_id_in_flight_or_answered_for_other_input_names_the_id() -> None:
    book = AnswerBook(10)
    answer = asyncio.Event()

    async def produce() -> BaseModel:
        await answer.wait()
        return Answer(value=1)

    waiting = asyncio.ensure_future(book.once("r1", "p", produce))
    await _until(lambda: book.in_flight("r1"), "the call in flight")
    with pytest.raises(RequestIdConflict, match="'r1'"):
        await book.once("r1", "other", _never)
    with pytest.raises(RequestIdConflict, match="'r1'"):
        await book.publish_once("r1", "other", Publisher(wait=False))
    answer.set()
    await asyncio.wait_for(waiting, DEADLINE)
    with pytest.raises(RequestIdConflict, match="'r1'"):
        book.lookup("r1", "other")


async def _never() -> BaseModel:
    raise AssertionError("a conflicting call must not produce")


async def test_close_cancels_what_is_in_flight_and_reports_nothing_to_the_loop(
    loop_errors: list[dict[str, Any]],
) -> None:
    """Stopping the gateway: answers in flight are cancelled, whatever they raise on the way
    out, and close() itself neither raises nor leaves errors for asyncio to log."""
    book = AnswerBook(10)
    started = asyncio.Event()

    async def hangs() -> BaseModel:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def fails_when_cancelled() -> BaseModel:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None
        raise AssertionError("unreachable")

    calls = [
        asyncio.ensure_future(book.once("r1", "p", hangs)),
        asyncio.ensure_future(book.once("r2", "p", fails_when_cancelled)),
    ]
    await _until(lambda: started.is_set() and book.in_flight("r2"), "both calls in flight")
    await asyncio.wait_for(book.close(), DEADLINE)
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert isinstance(outcomes[1], RuntimeError)
    assert not book.in_flight("r1")
    assert not book.in_flight("r2")
    gc.collect()
    await asyncio.sleep(0)
    assert loop_errors == []


async def test_failures_nobody_waits_for_leave_nothing_for_the_loop_to_log(
    loop_errors: list[dict[str, Any]],
) -> None:
    """A publish that fails or is cancelled, and an answer that fails: their futures are
    retrieved by the book, so asyncio has no 'exception was never retrieved' to report."""
    book = AnswerBook(10)
    with pytest.raises(KafkaUnavailable):
        await book.publish_once("r1", "p", Publisher(fail=KafkaUnavailable("down"), wait=False))
    cancelled = Publisher()
    call = asyncio.ensure_future(book.publish_once("r2", "p", cancelled))
    await _until(lambda: cancelled.calls == 1, "the publish")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    async def fails() -> BaseModel:
        raise TimeoutError("no worker")

    with pytest.raises(TimeoutError):
        await book.once("r3", "p", fails)
    ok = asyncio.ensure_future(book.once("r4", "p", _answer))
    assert await asyncio.wait_for(ok, DEADLINE) == (Answer(value=4), False)
    gc.collect()
    await asyncio.sleep(0)
    assert loop_errors == []


async def _answer() -> BaseModel:
    return Answer(value=4)
