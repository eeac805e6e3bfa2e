"""Request ids answered once, with or without waiting, and only with answers to their own input.

The bridge here is the shared fake (``tests/unit/gateway/fakes.py``): it publishes to a list
instead of Kafka and a fake worker answers shortly after, echoing the request's ``input_digest``
as the real workers do; everything else is the gateway's own code (answer book, audit store on
SQLite, late-answer handling). Findings 4 and 8 of issue #10.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import create_engine

from gateway.answer_book import input_digest
from gateway.audit.feed import feedback_row, prediction_row, request_row
from gateway.audit.store import AuditBatch
from gateway.bodies import PredictionPublic
from gateway.errors import RequestIdConflict
from irisflow.errors import KafkaUnavailable, PredictionFailed, PredictionTimeout
from irisflow.schemas import Feedback, Prediction, PredictionRequest
from tests.factories import SETOSA, VIRGINICA
from tests.unit.gateway.fakes import FakeScoring, ScoringFactory


async def test_every_published_request_carries_the_digest_of_its_input(
    scoring: FakeScoring,
) -> None:
    await scoring.predict(SETOSA, "d1")
    await scoring.accept(VIRGINICA, "d2")
    assert [(r.request_id, r.input_digest) for r in scoring.published] == [
        ("d1", input_digest("single", SETOSA)),
        ("d2", input_digest("single", VIRGINICA)),
    ]


async def test_two_concurrent_calls_without_waiting_publish_once(scoring: FakeScoring) -> None:
    accepted = await asyncio.gather(*[scoring.accept(SETOSA, "w1") for _ in range(5)])
    assert {a.request_id for a in accepted} == {"w1"}
    assert [r.request_id for r in scoring.published] == ["w1"]


async def test_a_waiting_call_awaits_the_answer_to_a_call_that_did_not_wait(
    scoring: FakeScoring,
) -> None:
    accepted, answer = await asyncio.gather(
        scoring.accept(SETOSA, "w2"), scoring.predict(SETOSA, "w2")
    )
    assert accepted.request_id == "w2"
    assert isinstance(answer, PredictionPublic)
    assert answer.label == "setosa"
    assert len(scoring.published) == 1


async def test_the_same_id_with_other_input_is_a_conflict_with_or_without_waiting(
    scoring: FakeScoring,
) -> None:
    await scoring.accept(SETOSA, "w3")
    with pytest.raises(RequestIdConflict):
        await scoring.accept(VIRGINICA, "w3")
    with pytest.raises(RequestIdConflict):
        await scoring.predict(VIRGINICA, "w3")
    running = asyncio.ensure_future(scoring.predict(SETOSA, "w4"))
    await asyncio.sleep(0)
    with pytest.raises(RequestIdConflict):
        await scoring.accept(VIRGINICA, "w4")
    await running
    assert [r.request_id for r in scoring.published] == ["w3", "w4"]


async def test_an_id_with_only_feedback_in_the_audit_is_published_and_answered(
    scoring: FakeScoring,
) -> None:
    """Finding 4: feedback for a never-requested id must not make the id look published."""
    for rid in ("victim-1", "victim-2"):
        labeled = Feedback(request_id=rid, label="setosa")
        scoring.audit.write(AuditBatch(feedback=[feedback_row(labeled)]))
        record = scoring.audit.get(rid)
        assert record is not None
        assert record.status == "unrequested"
    answer = await scoring.predict(SETOSA, "victim-1")
    assert answer.label == "setosa"
    await scoring.accept(SETOSA, "victim-2")
    assert [r.request_id for r in scoring.published] == ["victim-1", "victim-2"]


async def test_a_failed_answer_to_a_call_that_did_not_wait_lets_a_retry_publish_again(
    scoring: FakeScoring,
) -> None:
    await scoring.accept(SETOSA, "w5")
    late = Prediction(
        request_id="w5",
        error="no model is live",
        error_code="no_model",
        input_digest=input_digest("single", SETOSA),
    )
    scoring.fake.deliver("w5", late.to_bytes())  # before the fake worker's answer
    await scoring.accept(SETOSA, "w5")
    assert [r.request_id for r in scoring.published] == ["w5", "w5"]


async def test_a_late_answer_with_neither_a_result_nor_an_error_is_ignored(
    scoring: FakeScoring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: ``{"request_id": X}`` for a watched X used to hit an assert in the
    reader (which then died); it is ignored, and a retry of X is scored normally."""
    digest = input_digest("single", SETOSA)
    decode = scoring.fake.replies.topic.decode
    monkeypatch.setattr(
        scoring.fake.replies.topic,
        "decode",
        lambda value, key=None: Prediction.model_construct(
            request_id="z1", input_digest=digest, error=None
        ),
    )
    scoring.fake.watch("z1", Prediction, digest, 0.0, digest)
    scoring.fake.deliver("z1", b'{"request_id": "z1"}')
    monkeypatch.setattr(scoring.fake.replies.topic, "decode", decode)
    assert scoring.answers.lookup("z1", digest) is None
    answer = await scoring.predict(SETOSA, "z1")
    assert answer.label == "setosa"


async def test_a_call_awaiting_an_id_with_only_feedback_in_the_audit_gets_the_answer(
    scoring: FakeScoring,
) -> None:
    """Review finding: awaiting a claimed id read the audit's ``unrequested`` row (feedback
    only, no model version) as the answer and failed on an assert (a 500)."""
    scoring.audit.write(
        AuditBatch(feedback=[feedback_row(Feedback(request_id="u1", label="setosa"))])
    )
    scoring.fake.delay = 0.6  # the audit is polled (every 0.25 s) before the answer comes
    accepted, answer = await asyncio.gather(
        scoring.accept(SETOSA, "u1"), scoring.predict(SETOSA, "u1")
    )
    assert (accepted.request_id, answer.label) == ("u1", "setosa")
    assert [r.request_id for r in scoring.published] == ["u1"]


async def test_a_transient_failure_seen_by_a_waiting_call_does_not_stick_to_the_id(
    scoring: FakeScoring,
) -> None:
    """Review finding: ``?wait=false`` claimed the id, a concurrent waiting call took the
    ``no_model`` answer, and the claim stayed: every retry then awaited the audit's
    ``no_model`` (503) instead of publishing again, even with a model live."""
    scoring.fake.no_model = True
    results = await asyncio.gather(
        scoring.accept(SETOSA, "c1"),
        scoring.predict(SETOSA, "c1"),
        return_exceptions=True,
    )
    assert isinstance(results[1], PredictionFailed)
    assert results[1].code == "no_model"
    first = scoring.published[0]  # the audit feed sees the request and its answer
    failed = Prediction(
        request_id="c1", error="no model", error_code="no_model", input_digest=first.input_digest
    )
    scoring.audit.write(
        AuditBatch(requests=[request_row(first)], predictions=[prediction_row(failed)])
    )
    scoring.fake.no_model = False  # a model is live now
    answer = await scoring.predict(SETOSA, "c1")
    assert answer.label == "setosa"
    assert [r.request_id for r in scoring.published] == ["c1", "c1"]


async def test_no_202_for_a_record_a_concurrent_waiting_call_failed_to_publish(
    scoring: FakeScoring,
) -> None:
    """Review finding: ``?wait=false`` answered 202 at once because a waiting call with the id
    was in flight; that call's publish then failed (503), and the 202 client polled forever."""
    scoring.fake.failing = 1
    waiting = asyncio.ensure_future(scoring.predict(SETOSA, "p1"))
    await asyncio.sleep(0)
    with pytest.raises(KafkaUnavailable):
        await scoring.accept(SETOSA, "p1")
    with pytest.raises(KafkaUnavailable):
        await waiting


async def test_no_wait_after_a_waiting_call_answers_once_that_call_has_published(
    scoring: FakeScoring,
) -> None:
    waiting = asyncio.ensure_future(scoring.predict(SETOSA, "p2"))
    await asyncio.sleep(0)
    accepted = await scoring.accept(SETOSA, "p2")
    assert [r.request_id for r in scoring.published] == ["p2"]  # on the broker before the 202
    assert accepted.request_id == "p2"
    assert (await waiting).label == "setosa"


async def test_a_waiting_call_publishes_itself_if_the_claimed_publish_failed(
    scoring: FakeScoring,
) -> None:
    """A waiting call that found the id claimed by ``?wait=false`` awaits that publish; if it
    failed, it publishes itself instead of waiting for an answer that cannot come."""
    scoring.fake.failing = 1  # the claim's publish fails; the waiting call's own succeeds
    accepting = asyncio.ensure_future(scoring.accept(SETOSA, "p3"))
    await asyncio.sleep(0)
    assert scoring.answers.claimed("p3")
    waiting = asyncio.ensure_future(scoring.predict(SETOSA, "p3"))
    await asyncio.sleep(0)
    with pytest.raises(KafkaUnavailable):
        await accepting
    assert (await asyncio.wait_for(waiting, 1.0)).label == "setosa"
    assert [r.request_id for r in scoring.published] == ["p3"]


async def test_a_repeated_id_is_answered_from_memory_without_scoring_again(
    scoring: FakeScoring,
) -> None:
    """Idempotency: the second call gets the first answer and publishes nothing."""
    first = await scoring.predict(SETOSA, "m1")
    again = await scoring.predict(SETOSA, "m1")
    assert again == first
    assert [r.request_id for r in scoring.published] == ["m1"]
    assert scoring.metrics.replayed_answers.labels("memory")._value.get() == 1


async def test_concurrent_waiting_calls_with_one_id_share_one_publish_and_one_answer(
    scoring: FakeScoring,
) -> None:
    """In-flight sharing: duplicates that arrive while the first waits await its answer."""
    answers = await asyncio.gather(*[scoring.predict(SETOSA, "f1") for _ in range(5)])
    assert {a.label for a in answers} == {"setosa"}
    assert len({a.model_dump_json() for a in answers}) == 1
    assert [r.request_id for r in scoring.published] == ["f1"]


async def test_an_answer_that_comes_after_the_timeout_answers_the_retry(
    make_scoring: ScoringFactory,
) -> None:
    """Late answers: the caller got a 504, the worker answered later; a retry of the id is
    answered from memory instead of being scored again."""
    scoring = make_scoring(timeout=0.05, silent=True)
    with pytest.raises(PredictionTimeout):
        await scoring.predict(SETOSA, "l1")
    scoring.fake.answer(scoring.published[0])  # the worker catches up
    answer = await scoring.predict(SETOSA, "l1")
    assert isinstance(answer, PredictionPublic)
    assert answer.label == "setosa"
    assert [r.request_id for r in scoring.published] == ["l1"]
    assert scoring.metrics.timeouts._value.get() == 1


async def test_an_id_the_audit_knows_for_other_input_is_a_conflict(scoring: FakeScoring) -> None:
    """Across replicas and restarts the audit is the memory: an id it holds for other input is a
    409 here too, though this process never saw the id (nothing is published)."""
    sent = PredictionRequest(
        request_id="elsewhere-1", features=SETOSA, input_digest=input_digest("single", SETOSA)
    )
    scoring.audit.write(AuditBatch(requests=[request_row(sent)]))
    with pytest.raises(RequestIdConflict):
        await scoring.predict(VIRGINICA, "elsewhere-1")
    with pytest.raises(RequestIdConflict):
        await scoring.accept(VIRGINICA, "elsewhere-1")
    assert scoring.published == []


async def test_an_id_the_audit_has_answered_is_replayed_from_it_without_publishing(
    scoring: FakeScoring,
) -> None:
    digest = input_digest("single", SETOSA)
    sent = PredictionRequest(request_id="elsewhere-2", features=SETOSA, input_digest=digest)
    answered = Prediction(
        request_id="elsewhere-2",
        label="versicolor",
        probabilities={"setosa": 0.1, "versicolor": 0.8, "virginica": 0.1},
        model_version=3,
        input_digest=digest,
    )
    scoring.audit.write(
        AuditBatch(requests=[request_row(sent)], predictions=[prediction_row(answered)])
    )
    answer = await scoring.predict(SETOSA, "elsewhere-2")
    assert (answer.label, answer.model_version) == ("versicolor", 3)
    await scoring.accept(SETOSA, "elsewhere-2")
    assert scoring.published == []
    assert scoring.metrics.replayed_answers.labels("audit")._value.get() == 1


async def test_an_id_pending_in_the_audit_is_awaited_on_the_topic_not_published_again(
    scoring: FakeScoring,
) -> None:
    """Another replica published it and its answer has not come yet: this call waits for that
    answer (the fake worker answers the other replica's record) instead of publishing again."""
    digest = input_digest("single", SETOSA)
    sent = PredictionRequest(request_id="elsewhere-3", features=SETOSA, input_digest=digest)
    scoring.audit.write(AuditBatch(requests=[request_row(sent)]))
    asyncio.get_running_loop().call_later(0.1, scoring.fake.answer, sent)
    answer = await scoring.predict(SETOSA, "elsewhere-3")
    assert answer.label == "setosa"
    assert scoring.published == []


UNREACHABLE_DATABASE = "postgresql+psycopg://irisflow:s3cret@127.0.0.1:1/audit"
"""A real driver's connection error: nothing listens on port 1."""


async def test_an_unreachable_audit_does_not_stop_a_client_id_from_being_scored(
    scoring: FakeScoring,
) -> None:
    """Serving does not wait for the audit: the id is scored as if new (another replica may
    have answered it: the same model gives the same answer)."""
    scoring.audit.engine = create_engine(UNREACHABLE_DATABASE)
    answer = await scoring.predict(SETOSA, "while-the-audit-is-down")
    assert answer.label == "setosa"
    assert len(scoring.published) == 1
