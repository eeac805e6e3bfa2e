"""Replies routed by request id: to the caller waiting, or kept for a retry after a timeout."""

from __future__ import annotations

import asyncio

import pytest

from gateway.bridge import Answer, KafkaBridge
from gateway.errors import UnreadableAnswer, status_of
from irisflow.errors import PredictionFailed, PredictionTimeout
from irisflow.schemas import (
    BatchPrediction,
    BatchPredictionRequest,
    InstancePrediction,
    Prediction,
    PredictionRequest,
)
from irisflow.settings import KafkaSettings
from tests.factories import SETOSA

PROBS = {"setosa": 0.9, "versicolor": 0.05, "virginica": 0.05}


def _answer(rid: str, **fields: object) -> bytes:
    body: dict[str, object] = {"request_id": rid, "model_version": 1, **fields}
    return Prediction.model_validate(body).to_bytes()


async def _waiting(
    bridge: KafkaBridge, request: PredictionRequest | BatchPredictionRequest
) -> asyncio.Task[Answer]:
    task = asyncio.ensure_future(bridge.await_answer(request, context="c", timeout=5))
    await asyncio.sleep(0)
    return task


async def test_a_reply_completes_the_request_waiting_for_it() -> None:
    bridge = KafkaBridge(KafkaSettings())
    waiting = await _waiting(bridge, PredictionRequest(request_id="r1", features=SETOSA))
    bridge.deliver("someone-else", _answer("someone-else", label="virginica", model_version=1))
    assert not waiting.done()
    bridge.deliver("r1", _answer("r1", label="setosa", probabilities=PROBS, model_version=1))
    answer = await waiting
    assert isinstance(answer, Prediction)
    assert answer.label == "setosa"


async def test_a_batch_reply_is_read_as_a_batch() -> None:
    bridge = KafkaBridge(KafkaSettings())
    request = BatchPredictionRequest(request_id="b1", instances=[SETOSA, SETOSA])
    waiting = await _waiting(bridge, request)
    rows = [InstancePrediction(label="setosa", probabilities=PROBS)] * 2
    bridge.deliver(
        "b1", BatchPrediction(request_id="b1", predictions=rows, model_version=3).to_bytes()
    )
    answer = await waiting
    assert isinstance(answer, BatchPrediction)
    assert [p.label for p in answer.predictions] == ["setosa", "setosa"]


async def test_an_answer_with_an_error_raises_it_with_its_code() -> None:
    bridge = KafkaBridge(KafkaSettings())
    waiting = await _waiting(bridge, PredictionRequest(request_id="r1", features=SETOSA))
    bridge.deliver("r1", _answer("r1", error="no model is live", error_code="no_model"))
    with pytest.raises(PredictionFailed) as caught:
        await waiting
    assert caught.value.code == "no_model"


async def test_an_unreadable_answer_is_a_bad_answer_not_the_clients_fault() -> None:
    bridge = KafkaBridge(KafkaSettings())
    waiting = await _waiting(bridge, PredictionRequest(request_id="r1", features=SETOSA))
    bridge.deliver("r1", b'{"request_id": "r1", "probabilities": {"setosa": null}}')
    with pytest.raises(UnreadableAnswer, match=r"probabilities\.setosa"):
        await waiting
    assert status_of(UnreadableAnswer("x")) == (502, "bad_answer")


async def test_an_answer_after_the_timeout_is_handed_over_for_the_retry() -> None:
    late: list[tuple[str, str, Answer]] = []
    bridge = KafkaBridge(KafkaSettings(), on_late=lambda rid, c, a, _: late.append((rid, c, a)))
    request = PredictionRequest(request_id="r1", features=SETOSA)
    with pytest.raises(PredictionTimeout, match="irisflow worker"):
        await bridge.await_answer(request, context="fingerprint", timeout=0.01)
    bridge.deliver("r1", _answer("r1", label="setosa", probabilities=PROBS, model_version=1))
    assert [(rid, context) for rid, context, _ in late] == [("r1", "fingerprint")]
    bridge.deliver("r1", _answer("r1", label="setosa", probabilities=PROBS, model_version=1))
    assert len(late) == 1  # handed over once


def test_only_the_most_recent_watched_ids_are_kept() -> None:
    late: list[str] = []
    bridge = KafkaBridge(
        KafkaSettings(), watch_capacity=2, on_late=lambda rid, *_: late.append(rid)
    )
    for rid in ("a", "b", "c"):
        bridge.watch(rid, Prediction, "c", 0.0)
    for rid in ("a", "b", "c"):
        bridge.deliver(rid, _answer(rid, label="setosa", probabilities=PROBS, model_version=1))
    assert late == ["b", "c"]


async def test_the_gateways_producer_waits_for_every_replica_and_is_idempotent() -> None:
    """Finding 7: an accepted 202 must survive a leader failover, without duplicates."""
    producer = KafkaBridge(KafkaSettings()).new_producer()
    try:
        assert producer._sender._acks == -1  # acks=all
        assert producer._txn_manager is not None  # enable_idempotence=True
    finally:
        await producer.stop()


async def test_an_answer_to_other_input_under_the_same_id_is_ignored_and_counted() -> None:
    """Finding 8: replies are matched by id *and* input digest."""
    mismatched: list[None] = []
    bridge = KafkaBridge(KafkaSettings(), on_mismatch=lambda: mismatched.append(None))
    request = PredictionRequest(request_id="r1", features=SETOSA, input_digest="single:mine")
    waiting = await _waiting(bridge, request)
    other = _answer("r1", label="virginica", model_version=1, input_digest="single:theirs")
    bridge.deliver("r1", other)
    await asyncio.sleep(0)
    assert not waiting.done()
    assert len(mismatched) == 1
    mine = _answer("r1", label="setosa", probabilities=PROBS, model_version=1)
    bridge.deliver("r1", mine.replace(b'"input_digest":null', b'"input_digest":"single:mine"'))
    answer = await waiting
    assert isinstance(answer, Prediction)
    assert (answer.label, answer.input_digest) == ("setosa", "single:mine")


async def test_an_answer_without_a_digest_does_not_answer_a_request_that_sent_one() -> None:
    """Review finding: a junk record on the requests topic keyed with someone's id gets an
    error answer with no digest (the worker could not read one); it must not answer them."""
    mismatched: list[None] = []
    bridge = KafkaBridge(KafkaSettings(), on_mismatch=lambda: mismatched.append(None))
    request = PredictionRequest(request_id="r1", features=SETOSA, input_digest="single:mine")
    waiting = await _waiting(bridge, request)
    junk = _answer("r1", error="not a UTF-8 JSON document", error_code="invalid_request")
    bridge.deliver("r1", junk)
    bridge.deliver("r1", _answer("r1", label="virginica", probabilities=PROBS))
    await asyncio.sleep(0)
    assert not waiting.done()
    assert len(mismatched) == 2
    bridge.deliver("r1", _answer("r1", label="setosa", input_digest="single:mine"))
    answer = await waiting
    assert isinstance(answer, Prediction)
    assert answer.label == "setosa"


def test_a_late_answer_to_other_input_is_not_handed_over_and_the_id_stays_watched() -> None:
    late: list[str] = []
    bridge = KafkaBridge(KafkaSettings(), on_late=lambda rid, *_: late.append(rid))
    bridge.watch("r1", Prediction, "c", 0.0, "single:mine")
    bridge.deliver("r1", _answer("r1", label="virginica", input_digest="single:theirs"))
    bridge.deliver("r1", _answer("r1", error="unreadable", error_code="invalid_request"))
    assert late == []
    bridge.deliver("r1", _answer("r1", label="setosa", input_digest="single:mine"))
    assert late == ["r1"]


async def test_an_answer_of_the_wrong_shape_is_not_taken_for_the_awaited_one() -> None:
    bridge = KafkaBridge(KafkaSettings())
    request = BatchPredictionRequest(request_id="b1", instances=[SETOSA])
    waiting = await _waiting(bridge, request)
    bridge.deliver("b1", _answer("b1", label="setosa", model_version=1))
    await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()
