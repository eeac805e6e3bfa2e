"""The matrix wire form on the worker: decoded without a dict per row, scored like a batch,
answered column-wise, and refused (answered and dead-lettered) when it does not fit."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from irisflow.registry import deserialize_model
from irisflow.schemas import (
    BatchPrediction,
    BatchPredictionRequest,
    DeadLetter,
    MatrixPrediction,
    MatrixPredictionRequest,
    Prediction,
    PredictionRequest,
)
from irisflow.topics import Incoming, decode_answer
from streams.intake import LiveModel
from streams.scoring import score_batch
from tests.factories import SETOSA, VIRGINICA, model_update

NAMES = list(SETOSA)
VERSICOLOR = {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5}


@pytest.fixture(scope="module")
def live() -> LiveModel:
    update = model_update(2)
    return LiveModel(
        update.metadata(),
        deserialize_model(update.artifact, sha256=update.sha256),
        max_reference_std=100.0,
    )


def _matrix(rid: str, rows: list[dict[str, float]], names: list[str] = NAMES) -> Incoming:
    request = MatrixPredictionRequest(
        request_id=rid,
        feature_names=names,
        rows=[[row[n] for n in names] for row in rows],
        input_digest="digest-1",
    )
    return Incoming(value=request.to_bytes(), key=rid.encode(), partition=2, offset=7)


def _raw(rid: str, body: dict[str, Any]) -> Incoming:
    return Incoming(value=orjson.dumps(body), key=rid.encode(), partition=0, offset=3)


def test_a_matrix_is_answered_like_the_same_rows_sent_as_a_batch(live: LiveModel) -> None:
    rows = [SETOSA, VIRGINICA, VERSICOLOR] * 5
    batch = BatchPredictionRequest(request_id="b", instances=rows).to_bytes()
    result = score_batch(
        live, [_matrix("m", rows), Incoming(batch, b"b", 1, 0)], source_topic="requests"
    )
    answers = {o.key.decode(): decode_answer(o.value) for o in result.answers if o.key}
    matrix, dicts = answers["m"], answers["b"]
    assert isinstance(matrix, MatrixPrediction)
    assert isinstance(dicts, BatchPrediction)
    assert matrix.classes == ["setosa", "versicolor", "virginica"]
    assert matrix.labels == [p.label for p in dicts.predictions]
    assert matrix.probabilities == [
        [p.probabilities[c] for c in matrix.classes] for p in dicts.predictions
    ]
    assert matrix.labels[:3] == ["setosa", "virginica", "versicolor"]
    assert (matrix.input_digest, matrix.model_version) == ("digest-1", 2)
    assert not result.dead_letters


def test_a_matrix_in_another_column_order_is_reordered_to_the_model(live: LiveModel) -> None:
    reversed_names = NAMES[::-1]
    result = score_batch(
        live, [_matrix("m", [VIRGINICA, SETOSA], reversed_names)], source_topic="requests"
    )
    (answer,) = [decode_answer(a.value) for a in result.answers]
    assert isinstance(answer, MatrixPrediction)
    assert answer.labels == ["virginica", "setosa"]


def test_singles_batches_and_matrices_share_one_micro_batch_in_order(live: LiveModel) -> None:
    single = PredictionRequest(request_id="s", features=VIRGINICA).to_bytes()
    records = [
        _matrix("m1", [SETOSA, SETOSA]),
        Incoming(single, b"s", 0, 1),
        _matrix("m2", [VIRGINICA]),
    ]
    result = score_batch(live, records, source_topic="requests")
    answers = {o.key.decode(): decode_answer(o.value) for o in result.answers if o.key}
    assert isinstance(answers["s"], Prediction)
    assert answers["s"].label == "virginica"
    m1, m2 = answers["m1"], answers["m2"]
    assert isinstance(m1, MatrixPrediction)
    assert isinstance(m2, MatrixPrediction)
    assert (m1.labels, m2.labels) == (["setosa", "setosa"], ["virginica"])
    assert result.labels == ["setosa", "setosa", "virginica", "virginica"]


def test_a_matrix_whose_names_do_not_fit_is_answered_and_dead_lettered(live: LiveModel) -> None:
    names = [*NAMES[:3], "colour"]
    request = MatrixPredictionRequest(request_id="m", feature_names=names, rows=[[1.0] * 4])
    record = Incoming(request.to_bytes(), b"m", 0, 5)
    result = score_batch(live, [record], source_topic="requests")
    (answer,) = [decode_answer(a.value) for a in result.answers]
    (letter,) = [DeadLetter.from_bytes(o.value) for o in result.dead_letters]
    assert answer.error_code == "schema_mismatch"
    assert "feature_names.colour" in (answer.error or "")
    assert "feature_names.petal_width" in (answer.error or "")
    assert (letter.reason, letter.offset) == ("schema_mismatch", 5)


def test_a_matrix_with_a_row_out_of_the_models_domain_names_the_row(live: LiveModel) -> None:
    far = {**SETOSA, "petal_width": 1e30}
    result = score_batch(live, [_matrix("m", [SETOSA, far, far])], source_topic="requests")
    (answer,) = [decode_answer(a.value) for a in result.answers]
    (letter,) = [DeadLetter.from_bytes(o.value) for o in result.dead_letters]
    assert answer.error_code == "out_of_domain"
    assert (answer.error or "").startswith("rows.1.petal_width")
    assert "rows [1, 2]" in (answer.error or "")
    assert letter.reason == "out_of_domain"


@pytest.mark.parametrize(
    ("rows", "names", "named"),
    [
        ([[5.1, 3.5, 1.4]], NAMES, "rows.0: 3 values for 4"),
        ([[5.1, 3.5, 1.4, "0.2"]], NAMES, "rows.0.3"),
        ([[5.1, 3.5, 1.4, True]], NAMES, "rows.0.3"),
        ([[5.1, 3.5, 1.4, None]], NAMES, "rows.0.3"),
        ([], NAMES, "rows"),
        ([[5.1, 3.5, 1.4, 0.2]], [*NAMES[:3], NAMES[0]], "named twice"),
        ([[1.0]], [], "feature_names"),
        ("rows", NAMES, "rows"),
    ],
)
def test_a_malformed_matrix_is_dead_lettered_invalid_and_its_caller_answered(
    live: LiveModel, rows: Any, names: list[str], named: str
) -> None:
    body = {"request_id": "m", "feature_names": names, "rows": rows}
    result = score_batch(live, [_raw("m", body)], source_topic="requests")
    (letter,) = [DeadLetter.from_bytes(o.value) for o in result.dead_letters]
    (answer,) = [decode_answer(a.value) for a in result.answers]
    assert letter.reason == "invalid"
    assert named in letter.error
    assert answer.error_code == "invalid_request"
    assert result.labels == []


def test_a_non_finite_literal_in_a_matrix_is_undecodable(live: LiveModel) -> None:
    raw = b'{"request_id":"m","feature_names":["a"],"rows":[[NaN]]}'
    result = score_batch(live, [Incoming(raw, b"m", 0, 0)], source_topic="requests")
    (letter,) = [DeadLetter.from_bytes(o.value) for o in result.dead_letters]
    assert letter.reason == "undecodable"


def test_a_matrix_answer_must_hold_one_row_of_probabilities_per_label() -> None:
    base = {"request_id": "m", "model_version": 1, "classes": ["a", "b"]}
    with pytest.raises(ValueError, match="2 labels but 1 rows"):
        MatrixPrediction.model_validate(
            {**base, "labels": ["a", "b"], "probabilities": [[0.5, 0.5]]}
        )
    with pytest.raises(ValueError, match="needs 2 values"):
        MatrixPrediction.model_validate({**base, "labels": ["a"], "probabilities": [[1.0]]})
    with pytest.raises(ValueError, match="result and a model_version"):
        MatrixPrediction.model_validate({"request_id": "m", "model_version": 1})


def test_an_error_answer_that_mentions_labels_is_still_read_as_the_error_it_is() -> None:
    mention = {"request_id": "m", "error": "no model", "error_code": "no_model"}
    answer = decode_answer(orjson.dumps({**mention, "note": {"labels": ["a"]}}))
    assert isinstance(answer, Prediction)
    assert (answer.error, answer.error_code) == ("no model", "no_model")
    matrix = decode_answer(
        orjson.dumps(
            {"request_id": "m", "model_version": 1, "classes": ["a"], "labels": ["a"]}
            | {"probabilities": [[1.0]]}
        )
    )
    assert isinstance(matrix, MatrixPrediction)
    assert matrix.labels == ["a"]
