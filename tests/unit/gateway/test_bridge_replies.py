"""The reply reader outlives any answer: a record it cannot use costs that record, never the
reader (without it every later call is a 504 while the gateway still reports ready)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.bridge import Answer, KafkaBridge
from irisflow.schemas import Prediction, PredictionRequest
from irisflow.settings import KafkaSettings
from tests.factories import SETOSA

PROBS = {"setosa": 0.9, "versicolor": 0.05, "virginica": 0.05}


class _Record:
    def __init__(self, key: str, value: bytes) -> None:
        self.key, self.value = key.encode(), value
        self.topic, self.partition, self.offset = "irisflow.predictions", 0, 0


class _Consumer:
    """Hands out one batch (or raises one error) per call, then nothing."""

    def __init__(self, *batches: list[_Record] | Exception) -> None:
        self.batches = list(batches)

    async def getmany(self, **_: Any) -> dict[str, list[_Record]]:
        await asyncio.sleep(0.001)
        if not self.batches:
            return {}
        batch = self.batches.pop(0)
        if isinstance(batch, Exception):
            raise batch
        return {"tp": batch}


def _good(rid: str) -> bytes:
    answer = Prediction(request_id=rid, label="setosa", probabilities=PROBS, model_version=1)
    return answer.to_bytes()


async def _read(bridge: KafkaBridge, consumer: _Consumer, request: PredictionRequest) -> Answer:
    bridge._consumer = consumer
    reader = asyncio.ensure_future(bridge._read_forever())
    try:
        return await bridge.await_answer(request, context="c", timeout=2.0)
    finally:
        reader.cancel()


async def test_a_late_answer_whose_handling_raises_is_counted_and_the_reader_goes_on() -> None:
    errors: list[None] = []

    def on_late(*_: Any) -> None:
        raise AssertionError("a handler bug")

    bridge = KafkaBridge(KafkaSettings(), on_late=on_late, on_error=lambda: errors.append(None))
    bridge.watch("x", Prediction, "c", 0.0)
    consumer = _Consumer([_Record("x", _good("x")), _Record("y", _good("y"))])
    answer = await _read(bridge, consumer, PredictionRequest(request_id="y", features=SETOSA))
    assert answer.request_id == "y"
    assert errors == [None]


async def test_a_reader_that_fails_is_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(KafkaBridge, "restart_seconds", 0.01)
    bridge = KafkaBridge(KafkaSettings())
    consumer = _Consumer(RuntimeError("not a KafkaError"), [_Record("y", _good("y"))])
    answer = await _read(bridge, consumer, PredictionRequest(request_id="y", features=SETOSA))
    assert answer.request_id == "y"


def _incomplete(monkeypatch: pytest.MonkeyPatch, bridge: KafkaBridge) -> None:
    """The codec accepts ``{"request_id": …}`` alone (as the schema did before it required a
    label and version); the bridge must not rely on the schema refusing it."""
    monkeypatch.setattr(
        bridge.replies.topic,
        "decode",
        lambda value, key=None: Prediction.model_construct(
            request_id=key.decode(), input_digest="single:mine", error=None
        ),
    )


async def test_an_answer_with_neither_a_result_nor_an_error_is_ignored_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    late: list[str] = []
    mismatched: list[None] = []
    bridge = KafkaBridge(
        KafkaSettings(),
        on_late=lambda rid, *_: late.append(rid),
        on_mismatch=lambda: mismatched.append(None),
    )
    _incomplete(monkeypatch, bridge)
    bridge.watch("x", Prediction, "c", 0.0, "single:mine")
    bridge.deliver("x", b"{}")
    request = PredictionRequest(request_id="y", features=SETOSA, input_digest="single:mine")
    waiting = asyncio.ensure_future(bridge.await_answer(request, context="c", timeout=5))
    await asyncio.sleep(0)
    bridge.deliver("y", b"{}")
    await asyncio.sleep(0)
    assert not waiting.done()
    assert (late, len(mismatched)) == ([], 2)
    waiting.cancel()
