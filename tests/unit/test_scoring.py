"""Scoring a micro-batch: one predict_proba call, one answer per request, nothing dropped."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import pytest

from irisflow.registry import deserialize_model
from irisflow.schemas import PredictionRequest
from streams.scoring import Incoming, LiveModel, score_batch
from tests.factories import SETOSA, VIRGINICA, model_update


@pytest.fixture(scope="module")
def live() -> LiveModel:
    update = model_update(4)
    return LiveModel(update.metadata(), deserialize_model(update.artifact, sha256=update.sha256))


def _record(request_id: str, features: dict[str, Any], offset: int = 0) -> Incoming:
    raw = PredictionRequest(request_id=request_id, features=features).to_bytes()
    return Incoming(value=raw, key=request_id.encode(), partition=0, offset=offset)


def test_every_request_in_a_batch_is_answered_by_one_predict_proba_call(live: LiveModel) -> None:
    records = [_record(f"r{i}", SETOSA if i % 2 else VIRGINICA, i) for i in range(50)]
    with patch.object(live.estimator, "predict_proba", wraps=live.estimator.predict_proba) as spy:
        result = score_batch(live, records, source_topic="requests")
    assert spy.call_count == 1
    assert [a.request_id for a in result.answers] == [f"r{i}" for i in range(50)]
    assert {a.label for a in result.answers} == {"setosa", "virginica"}
    assert all(a.model_version == 4 for a in result.answers)
    assert not result.dead_letters


def test_an_answer_has_probabilities_for_every_class(live: LiveModel) -> None:
    (answer,) = score_batch(live, [_record("a", SETOSA)], source_topic="t").answers
    assert answer.label == "setosa"
    assert set(answer.probabilities) == {"setosa", "versicolor", "virginica"}
    assert sum(answer.probabilities.values()) == pytest.approx(1.0)


def test_with_no_model_live_every_request_gets_an_explicit_error(live: LiveModel) -> None:
    result = score_batch(None, [_record("a", SETOSA), _record("b", SETOSA)], source_topic="t")
    assert [a.error_code for a in result.answers] == ["no_model", "no_model"]
    assert result.rejected == {"no_model": 2}
    assert not result.dead_letters


def test_a_request_that_does_not_fit_the_model_is_answered_and_dead_lettered(
    live: LiveModel,
) -> None:
    wrong = {"sepal_length": 1.0, "colour": 2.0}
    result = score_batch(
        live, [_record("bad", wrong, 7), _record("good", SETOSA, 8)], source_topic="t"
    )
    by_id = {a.request_id: a for a in result.answers}
    assert by_id["good"].label == "setosa"
    assert by_id["bad"].error_code == "schema_mismatch"
    assert "missing features: sepal_width" in (by_id["bad"].error or "")
    assert "unknown features: colour" in (by_id["bad"].error or "")
    ((key, letter),) = result.dead_letters
    assert key == b"bad"
    assert (letter.source_topic, letter.offset) == ("t", 7)


def test_unparseable_bytes_are_dead_lettered_with_the_original_and_answered_by_key(
    live: LiveModel,
) -> None:
    poison = Incoming(value=b"{not json", key=b"p1", partition=1, offset=3)
    anonymous = Incoming(value=b"\xff", key=None, partition=1, offset=4)
    result = score_batch(live, [poison, anonymous, _record("ok", SETOSA)], source_topic="t")
    assert [letter.original for _, letter in result.dead_letters] == [b"{not json", b"\xff"]
    assert {a.request_id: a.error_code for a in result.answers} == {
        "p1": "invalid_request",
        "ok": None,
    }
    assert result.rejected == {"unparseable": 2}
