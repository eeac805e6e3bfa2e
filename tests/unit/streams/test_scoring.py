"""Scoring a micro-batch: one predict_proba call, one answer per request, nothing dropped."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import pytest

from irisflow.registry import deserialize_model
from irisflow.schemas import (
    BatchPrediction,
    BatchPredictionRequest,
    DeadLetter,
    Prediction,
    PredictionRequest,
)
from irisflow.topics import Incoming
from streams.intake import BatchResult, LiveModel
from streams.scoring import score_batch
from tests.factories import SETOSA, VIRGINICA, model_update


@pytest.fixture(scope="module")
def live() -> LiveModel:
    update = model_update(4)
    return LiveModel(update.metadata(), deserialize_model(update.artifact, sha256=update.sha256))


def _record(request_id: str, features: dict[str, Any], offset: int = 0) -> Incoming:
    raw = PredictionRequest(request_id=request_id, features=features).to_bytes()
    return Incoming(value=raw, key=request_id.encode(), partition=0, offset=offset)


def _batch(request_id: str, instances: list[dict[str, Any]], partition: int = 1) -> Incoming:
    raw = BatchPredictionRequest(request_id=request_id, instances=instances).to_bytes()
    return Incoming(value=raw, key=request_id.encode(), partition=partition, offset=0)


def _answers(result: BatchResult) -> dict[str, Prediction]:
    return {a.request_id: a for a in (Prediction.from_bytes(o.value) for o in result.answers)}


def _letters(result: BatchResult) -> list[DeadLetter]:
    return [DeadLetter.from_bytes(o.value) for o in result.dead_letters]


def test_every_request_in_a_batch_is_answered_by_one_predict_proba_call(live: LiveModel) -> None:
    records = [_record(f"r{i}", SETOSA if i % 2 else VIRGINICA, i) for i in range(50)]
    with patch.object(live.estimator, "predict_proba", wraps=live.estimator.predict_proba) as spy:
        result = score_batch(live, records, source_topic="requests")
    assert spy.call_count == 1
    answers = [Prediction.from_bytes(o.value) for o in result.answers]
    assert [a.request_id for a in answers] == [f"r{i}" for i in range(50)]
    assert {a.label for a in answers} == {"setosa", "virginica"}
    assert all(a.model_version == 4 for a in answers)
    assert not result.dead_letters


def test_an_answer_has_probabilities_for_every_class(live: LiveModel) -> None:
    answer = _answers(score_batch(live, [_record("a", SETOSA)], source_topic="t"))["a"]
    assert answer.label == "setosa"
    assert set(answer.probabilities) == {"setosa", "versicolor", "virginica"}
    assert sum(answer.probabilities.values()) == pytest.approx(1.0)


def test_an_answer_is_keyed_by_request_id_in_the_partition_of_its_request(
    live: LiveModel,
) -> None:
    record = Incoming(
        value=PredictionRequest(request_id="k1", features=SETOSA).to_bytes(),
        key=b"k1",
        partition=3,
    )
    (out,) = score_batch(live, [record], source_topic="t", answers_topic="answers").answers
    assert (out.topic, out.key, out.partition) == ("answers", b"k1", 3)


def test_batched_and_single_requests_share_one_predict_proba_call(live: LiveModel) -> None:
    records = [
        _record("one", SETOSA),
        _batch("many", [SETOSA, VIRGINICA, SETOSA]),
        _record("two", VIRGINICA),
    ]
    with patch.object(live.estimator, "predict_proba", wraps=live.estimator.predict_proba) as spy:
        result = score_batch(live, records, source_topic="t")
    assert spy.call_count == 1
    assert spy.call_args.args[0].shape == (5, 4)
    by_id = {o.key: o.value for o in result.answers}
    batch = BatchPrediction.from_bytes(by_id[b"many"])
    assert [p.label for p in batch.predictions] == ["setosa", "virginica", "setosa"]
    assert batch.model_version == 4
    assert Prediction.from_bytes(by_id[b"one"]).label == "setosa"
    assert Prediction.from_bytes(by_id[b"two"]).label == "virginica"
    assert result.labels == ["setosa", "setosa", "virginica", "setosa", "virginica"]
    assert [s.key for s in result.singles] == [b"one", b"two"]


def test_a_batch_with_one_instance_that_does_not_fit_is_refused_whole(live: LiveModel) -> None:
    wrong = {k: v for k, v in SETOSA.items() if k != "petal_width"}
    result = score_batch(live, [_batch("b", [SETOSA, wrong])], source_topic="t")
    answer = BatchPrediction.from_bytes(result.answers[0].value)
    assert answer.error_code == "schema_mismatch"
    assert answer.predictions == []
    assert "instances.1.petal_width: Field required" in (answer.error or "")
    assert len(result.dead_letters) == 1


def test_with_no_model_live_every_request_gets_an_explicit_error(live: LiveModel) -> None:
    records = [_record("a", SETOSA), _record("b", SETOSA), _batch("c", [SETOSA])]
    result = score_batch(None, records, source_topic="t")
    answers = [Prediction.from_bytes(o.value) for o in result.answers]
    assert [a.error_code for a in answers] == ["no_model"] * 3
    assert result.rejected == {"no_model": 3}
    assert not result.dead_letters


def test_a_request_that_does_not_fit_the_model_is_answered_and_dead_lettered(
    live: LiveModel,
) -> None:
    wrong = {"sepal_length": 1.0, "colour": 2.0}
    result = score_batch(
        live, [_record("bad", wrong, 7), _record("good", SETOSA, 8)], source_topic="t"
    )
    by_id = _answers(result)
    assert by_id["good"].label == "setosa"
    assert by_id["bad"].error_code == "schema_mismatch"
    assert "features.sepal_width: Field required" in (by_id["bad"].error or "")
    assert "features.colour: Unknown feature" in (by_id["bad"].error or "")
    (out,) = result.dead_letters
    (letter,) = _letters(result)
    assert out.key == b"bad"
    assert (letter.source_topic, letter.offset) == ("t", 7)


@pytest.mark.parametrize(
    "value",
    [
        b'{"request_id": "x", "features": {"sepal_length": "NaN"}}',
        b'{"request_id": "x", "features": {"sepal_length": 1e999}}',
        b'{"request_id": "x", "features": {"sepal_length": "wide"}}',
        b'{"request_id": "x", "instances": []}',
        b"[1, 2, 3]",
    ],
)
def test_values_that_are_not_finite_numbers_are_dead_lettered(
    live: LiveModel, value: bytes
) -> None:
    result = score_batch(live, [Incoming(value=value, key=b"x")], source_topic="t")
    (letter,) = _letters(result)
    assert letter.original == value
    assert _answers(result)["x"].error_code == "invalid_request"


def test_unparseable_bytes_are_dead_lettered_with_the_original_and_answered_by_key(
    live: LiveModel,
) -> None:
    poison = Incoming(value=b"{not json", key=b"p1", partition=1, offset=3)
    anonymous = Incoming(value=b"\xff", key=None, partition=1, offset=4)
    result = score_batch(live, [poison, anonymous, _record("ok", SETOSA)], source_topic="t")
    assert [letter.original for letter in _letters(result)] == [b"{not json", b"\xff"]
    assert {a: p.error_code for a, p in _answers(result).items()} == {
        "p1": "invalid_request",
        "ok": None,
    }
    assert result.rejected == {"undecodable": 2}


def test_latency_runs_from_sent_at_to_scored(live: LiveModel) -> None:
    raw = PredictionRequest(request_id="t", features=SETOSA, sent_at=100.0).to_bytes()
    result = score_batch(
        live, [Incoming(value=raw, key=b"t")], source_topic="t", clock=lambda: 100.25
    )
    assert result.latencies == [pytest.approx(0.25)]
    assert _answers(result)["t"].latency_seconds == pytest.approx(0.25)


def test_values_beyond_float32_are_refused_as_out_of_domain_and_the_rest_is_scored(
    live: LiveModel,
) -> None:
    huge = {**SETOSA, "sepal_width": -1.7976931348623155e308, "petal_width": -6.4e16}
    result = score_batch(
        live, [_record("huge", huge, 1), _record("fine", SETOSA, 2)], source_topic="t"
    )
    answers = _answers(result)
    assert answers["huge"].error_code == "out_of_domain"
    assert "features.sepal_width" in (answers["huge"].error or "")
    assert "float32" in (answers["huge"].error or "")
    assert answers["fine"].label == "setosa"
    ((offset, reason),) = [(letter.offset, letter.reason) for letter in _letters(result)]
    assert (offset, reason) == (1, "out_of_domain")


def test_values_far_from_the_training_data_are_refused_when_a_limit_is_set() -> None:
    update = model_update(5)
    model = LiveModel(
        update.metadata(),
        deserialize_model(update.artifact, sha256=update.sha256),
        max_reference_std=100.0,
    )
    far = {**SETOSA, "sepal_length": 1e6}
    near = {**SETOSA, "sepal_length": SETOSA["sepal_length"] + 4.0}  # drift, not nonsense
    result = score_batch(
        model, [_record("far", far, 1), _record("near", near, 2)], source_topic="t"
    )
    answers = _answers(result)
    assert answers["far"].error_code == "out_of_domain"
    assert "100 training standard deviations" in (answers["far"].error or "")
    assert answers["near"].label is not None


def test_rows_whose_output_is_not_finite_are_refused_and_the_rest_is_scored(
    live: LiveModel,
) -> None:
    real = live.estimator.predict_proba

    def nan_for_first_row(matrix: Any) -> Any:
        out = real(matrix)
        if len(out) > 1:
            out[0, :] = float("nan")
        return out

    with patch.object(live.estimator, "predict_proba", side_effect=nan_for_first_row):
        result = score_batch(
            live, [_record("nan", SETOSA, 1), _record("fine", SETOSA, 2)], source_topic="t"
        )
    answers = _answers(result)
    assert answers["nan"].error_code == "invalid_request"
    assert "not finite" in (answers["nan"].error or "")
    assert answers["fine"].label == "setosa"
    assert [(letter.offset, letter.reason) for letter in _letters(result)] == [(1, "unscorable")]


def test_a_model_that_raises_on_one_request_costs_only_that_request(live: LiveModel) -> None:
    real = live.estimator.predict_proba

    def raise_on_poison(matrix: Any) -> Any:
        if (matrix[:, 0] == 7.25).any():
            raise ValueError("cannot score 7.25")
        return real(matrix)

    poison = {**SETOSA, "sepal_length": 7.25}
    with patch.object(live.estimator, "predict_proba", side_effect=raise_on_poison):
        result = score_batch(
            live,
            [_record("a", SETOSA, 1), _record("poison", poison, 2), _record("b", SETOSA, 3)],
            source_topic="t",
        )
    answers = _answers(result)
    assert (answers["a"].label, answers["b"].label) == ("setosa", "setosa")
    assert answers["poison"].error_code == "invalid_request"
    assert [(letter.offset, letter.reason) for letter in _letters(result)] == [
        (2, "processing_failed")
    ]


def test_a_record_whose_key_is_not_its_request_id_is_dead_lettered(live: LiveModel) -> None:
    raw = PredictionRequest(request_id="real", features=SETOSA).to_bytes()
    result = score_batch(live, [Incoming(value=raw, key=b"other", offset=9)], source_topic="t")
    ((reason, original),) = [(letter.reason, letter.original) for letter in _letters(result)]
    assert (reason, original) == ("bad_key", raw)
    assert _answers(result)["other"].error_code == "invalid_request"


def test_answers_echo_the_input_digest_of_their_request(live: LiveModel) -> None:
    raw = PredictionRequest(request_id="d", features=SETOSA, input_digest="single:abc").to_bytes()
    result = score_batch(live, [Incoming(value=raw, key=b"d")], source_topic="t")
    assert _answers(result)["d"].input_digest == "single:abc"


def test_dead_letters_say_who_refused_and_carry_headers(live: LiveModel) -> None:
    result = score_batch(
        live, [Incoming(value=b"{", key=b"h", partition=1, offset=4)], source_topic="t"
    )
    (out,) = result.dead_letters
    headers = dict(out.headers)
    assert headers["irisflow-reason"] == b"undecodable"
    assert headers["irisflow-consumer"] == b"streams.scoring"
    assert (headers["irisflow-source-topic"], headers["irisflow-source-offset"]) == (b"t", b"4")
