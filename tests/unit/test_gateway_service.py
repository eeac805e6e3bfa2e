"""Request ids answered once, with or without waiting, and only with answers to their own input.

The bridge here publishes to a list instead of Kafka and a fake worker answers at once, echoing
the request's ``input_digest`` as the real workers do; everything else is the gateway's own code
(answer book, audit store on SQLite, late-answer handling). Findings 4 and 8 of issue #10.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.answer_book import AnswerBook, input_digest
from gateway.audit.feed import feedback_row, prediction_row, request_row
from gateway.audit.store import AuditBatch, AuditStore, audit_url
from gateway.bodies import PredictionPublic
from gateway.bridge import KafkaBridge
from gateway.errors import RequestIdConflict
from gateway.metrics import GatewayMetrics
from gateway.model_versions import ModelHistory
from gateway.predicting import accept, on_late_answer, predict
from gateway.state import GatewayState
from irisflow.errors import KafkaUnavailable, PredictionFailed
from irisflow.schemas import Feedback, Prediction, PredictionRequest
from irisflow.topics import Outgoing, decode_request
from tests.conftest import SettingsFactory
from tests.factories import SETOSA, VIRGINICA, model_update

PROBS = {"setosa": 0.9, "versicolor": 0.05, "virginica": 0.05}


class _Bridge(KafkaBridge):
    """Publishes into ``published``; a worker answers each request after ``delay`` seconds."""

    def __init__(self, *args: Any, delay: float = 0.05, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.published: list[PredictionRequest] = []
        self.delay = delay
        self.no_model = False  # the worker answers no_model (nothing is live there yet)
        self.failing = 0  # how many publishes fail next, as with an unreachable broker

    async def publish(self, record: Outgoing, *, timeout: float) -> None:
        await asyncio.sleep(0.01)  # a broker round trip, during which others may call
        if self.failing > 0:
            self.failing -= 1
            raise KafkaUnavailable("no broker answered")
        request = decode_request(record.value)
        assert isinstance(request, PredictionRequest)
        self.published.append(request)
        answer = Prediction(
            request_id=request.request_id,
            label="setosa",
            probabilities=PROBS,
            model_version=1,
            input_digest=request.input_digest,
        )
        if self.no_model:
            answer = Prediction(
                request_id=request.request_id,
                error="no model is live",
                error_code="no_model",
                input_digest=request.input_digest,
            )
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay, self.deliver, request.request_id, answer.to_bytes())


@pytest.fixture
def state(make_settings: SettingsFactory, tmp_path: Path) -> GatewayState:
    settings = make_settings(**{"gateway.predict_timeout_seconds": 2.0})
    state = GatewayState(
        settings=settings,
        bridge=_Bridge(settings.kafka),
        history=ModelHistory("iris", tmp_path / "registry"),
        answers=AnswerBook(100),
        audit=AuditStore(audit_url(None, tmp_path / "home")),
        kafka_ready=True,
    )
    state.history.make_live(model_update(1))
    state.bridge.on_late = on_late_answer(state)
    return state


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics.create()


def _published(state: GatewayState) -> list[PredictionRequest]:
    assert isinstance(state.bridge, _Bridge)
    return state.bridge.published


async def _predict(state: GatewayState, metrics: GatewayMetrics, features: Any, rid: str) -> Any:
    return await predict(state=state, metrics=metrics, payload=features, request_id=rid)


async def _accept(state: GatewayState, metrics: GatewayMetrics, features: Any, rid: str) -> Any:
    return await accept(state=state, metrics=metrics, payload=features, request_id=rid)


async def test_every_published_request_carries_the_digest_of_its_input(
    state: GatewayState, metrics: GatewayMetrics
) -> None:
    await _predict(state, metrics, SETOSA, "d1")
    await _accept(state, metrics, VIRGINICA, "d2")
    assert [(r.request_id, r.input_digest) for r in _published(state)] == [
        ("d1", input_digest("single", SETOSA)),
        ("d2", input_digest("single", VIRGINICA)),
    ]


async def test_two_concurrent_calls_without_waiting_publish_once(
    state: GatewayState, metrics: GatewayMetrics
) -> None:
    accepted = await asyncio.gather(*[_accept(state, metrics, SETOSA, "w1") for _ in range(5)])
    assert {a.request_id for a in accepted} == {"w1"}
    assert [r.request_id for r in _published(state)] == ["w1"]


async def test_a_waiting_call_awaits_the_answer_to_a_call_that_did_not_wait(
    state: GatewayState, metrics: GatewayMetrics
) -> None:
    accepted, answer = await asyncio.gather(
        _accept(state, metrics, SETOSA, "w2"), _predict(state, metrics, SETOSA, "w2")
    )
    assert accepted.request_id == "w2"
    assert isinstance(answer, PredictionPublic)
    assert answer.label == "setosa"
    assert len(_published(state)) == 1


async def test_the_same_id_with_other_input_is_a_conflict_with_or_without_waiting(
    state: GatewayState, metrics: GatewayMetrics
) -> None:
    await _accept(state, metrics, SETOSA, "w3")
    with pytest.raises(RequestIdConflict):
        await _accept(state, metrics, VIRGINICA, "w3")
    with pytest.raises(RequestIdConflict):
        await _predict(state, metrics, VIRGINICA, "w3")
    running = asyncio.ensure_future(_predict(state, metrics, SETOSA, "w4"))
    await asyncio.sleep(0)
    with pytest.raises(RequestIdConflict):
        await _accept(state, metrics, VIRGINICA, "w4")
    await running
    assert [r.request_id for r in _published(state)] == ["w3", "w4"]


async def test_an_id_with_only_feedback_in_the_audit_is_published_and_answered(
    state: GatewayState, metrics: GatewayMetrics
) -> None:
    """Finding 4: feedback for a never-requested id must not make the id look published."""
    for rid in ("victim-1", "victim-2"):
        labeled = Feedback(request_id=rid, label="setosa")
        state.audit.write(AuditBatch(feedback=[feedback_row(labeled)]))
        record = state.audit.get(rid)
        assert record is not None
        assert record.status == "unrequested"
    answer = await _predict(state, metrics, SETOSA, "victim-1")
    assert answer.label == "setosa"
    await _accept(state, metrics, SETOSA, "victim-2")
    assert [r.request_id for r in _published(state)] == ["victim-1", "victim-2"]


async def test_a_failed_answer_to_a_call_that_did_not_wait_lets_a_retry_publish_again(
    state: GatewayState, metrics: GatewayMetrics
) -> None:
    await _accept(state, metrics, SETOSA, "w5")
    late = Prediction(
        request_id="w5",
        error="no model is live",
        error_code="no_model",
        input_digest=input_digest("single", SETOSA),
    )
    state.bridge.deliver("w5", late.to_bytes())  # before the fake worker's answer
    await _accept(state, metrics, SETOSA, "w5")
    assert [r.request_id for r in _published(state)] == ["w5", "w5"]


async def test_a_late_answer_with_neither_a_result_nor_an_error_is_ignored(
    state: GatewayState, metrics: GatewayMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: ``{"request_id": X}`` for a watched X used to hit an assert in the
    reader (which then died); it is ignored, and a retry of X is scored normally."""
    digest = input_digest("single", SETOSA)
    decode = state.bridge._topic.decode
    monkeypatch.setattr(
        state.bridge._topic,
        "decode",
        lambda value, key=None: Prediction.model_construct(
            request_id="z1", input_digest=digest, error=None
        ),
    )
    state.bridge.watch("z1", Prediction, digest, 0.0, digest)
    state.bridge.deliver("z1", b'{"request_id": "z1"}')
    monkeypatch.setattr(state.bridge._topic, "decode", decode)
    assert state.answers.lookup("z1", digest) is None
    answer = await _predict(state, metrics, SETOSA, "z1")
    assert answer.label == "setosa"


async def test_a_call_awaiting_an_id_with_only_feedback_in_the_audit_gets_the_answer(
    state: GatewayState, metrics: GatewayMetrics
) -> None:
    """Review finding: awaiting a claimed id read the audit's ``unrequested`` row (feedback
    only, no model version) as the answer and failed on an assert (a 500)."""
    state.audit.write(
        AuditBatch(feedback=[feedback_row(Feedback(request_id="u1", label="setosa"))])
    )
    assert isinstance(state.bridge, _Bridge)
    state.bridge.delay = 0.6  # the audit is polled (every 0.25 s) before the answer comes
    accepted, answer = await asyncio.gather(
        _accept(state, metrics, SETOSA, "u1"), _predict(state, metrics, SETOSA, "u1")
    )
    assert (accepted.request_id, answer.label) == ("u1", "setosa")
    assert [r.request_id for r in _published(state)] == ["u1"]


async def test_a_transient_failure_seen_by_a_waiting_call_does_not_stick_to_the_id(
    state: GatewayState, metrics: GatewayMetrics
) -> None:
    """Review finding: ``?wait=false`` claimed the id, a concurrent waiting call took the
    ``no_model`` answer, and the claim stayed: every retry then awaited the audit's
    ``no_model`` (503) instead of publishing again, even with a model live."""
    assert isinstance(state.bridge, _Bridge)
    state.bridge.no_model = True
    results = await asyncio.gather(
        _accept(state, metrics, SETOSA, "c1"),
        _predict(state, metrics, SETOSA, "c1"),
        return_exceptions=True,
    )
    assert isinstance(results[1], PredictionFailed)
    assert results[1].code == "no_model"
    first = _published(state)[0]  # the audit feed sees the request and its answer
    failed = Prediction(
        request_id="c1", error="no model", error_code="no_model", input_digest=first.input_digest
    )
    state.audit.write(
        AuditBatch(requests=[request_row(first)], predictions=[prediction_row(failed)])
    )
    state.bridge.no_model = False  # a model is live now
    answer = await _predict(state, metrics, SETOSA, "c1")
    assert answer.label == "setosa"
    assert [r.request_id for r in _published(state)] == ["c1", "c1"]


async def test_no_202_for_a_record_a_concurrent_waiting_call_failed_to_publish(
    state: GatewayState, metrics: GatewayMetrics
) -> None:
    """Review finding: ``?wait=false`` answered 202 at once because a waiting call with the id
    was in flight; that call's publish then failed (503), and the 202 client polled forever."""
    assert isinstance(state.bridge, _Bridge)
    state.bridge.failing = 1
    waiting = asyncio.ensure_future(_predict(state, metrics, SETOSA, "p1"))
    await asyncio.sleep(0)
    with pytest.raises(KafkaUnavailable):
        await _accept(state, metrics, SETOSA, "p1")
    with pytest.raises(KafkaUnavailable):
        await waiting


async def test_no_wait_after_a_waiting_call_answers_once_that_call_has_published(
    state: GatewayState, metrics: GatewayMetrics
) -> None:
    waiting = asyncio.ensure_future(_predict(state, metrics, SETOSA, "p2"))
    await asyncio.sleep(0)
    accepted = await _accept(state, metrics, SETOSA, "p2")
    assert [r.request_id for r in _published(state)] == ["p2"]  # on the broker before the 202
    assert accepted.request_id == "p2"
    assert (await waiting).label == "setosa"


async def test_a_waiting_call_publishes_itself_if_the_claimed_publish_failed(
    state: GatewayState, metrics: GatewayMetrics
) -> None:
    """A waiting call that found the id claimed by ``?wait=false`` awaits that publish; if it
    failed, it publishes itself instead of waiting for an answer that cannot come."""
    assert isinstance(state.bridge, _Bridge)
    state.bridge.failing = 1  # the claim's publish fails; the waiting call's own succeeds
    accepting = asyncio.ensure_future(_accept(state, metrics, SETOSA, "p3"))
    await asyncio.sleep(0)
    assert state.answers.claimed("p3")
    waiting = asyncio.ensure_future(_predict(state, metrics, SETOSA, "p3"))
    await asyncio.sleep(0)
    with pytest.raises(KafkaUnavailable):
        await accepting
    assert (await asyncio.wait_for(waiting, 1.0)).label == "setosa"
    assert [r.request_id for r in _published(state)] == ["p3"]
