"""The wire contract: JSON in, validated models out, and errors that name the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from irisflow.errors import SchemaError
from irisflow.schemas import (
    SCHEMA_VERSION,
    BatchPrediction,
    DeadLetter,
    Prediction,
    PredictionRequest,
)
from tests.factories import SETOSA, model_update


def test_a_request_round_trips_through_bytes_with_its_schema_version() -> None:
    request = PredictionRequest(request_id="r1", features=SETOSA)
    decoded = PredictionRequest.from_bytes(request.to_bytes())
    assert decoded == request
    assert decoded.schema_version == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"request_id": "r", "features": {"a": "x"}}', "features.a"),
        (b'{"request_id": "r", "features": {"a": NaN}}', "features.a"),
        (b'{"features": {"a": 1.0}}', "request_id"),
    ],
)
def test_a_bad_request_names_the_offending_field(raw: bytes, field: str) -> None:
    with pytest.raises(SchemaError, match=field.replace(".", r"\.")):
        PredictionRequest.from_bytes(raw)


def test_unparseable_bytes_and_tombstones_are_schema_errors() -> None:
    with pytest.raises(SchemaError):
        PredictionRequest.from_bytes(b"\x00not json")
    with pytest.raises(SchemaError, match="empty message"):
        PredictionRequest.from_bytes(None)


def test_a_model_update_carries_its_artifact_as_base64_and_back() -> None:
    update = model_update(3)
    decoded = type(update).from_bytes(update.to_bytes())
    assert decoded.artifact == update.artifact
    assert decoded.metadata().version == 3
    assert b'"artifact":"' in update.to_bytes()


def test_a_dead_letter_keeps_the_original_bytes() -> None:
    letter = DeadLetter(source_topic="t", original=b"\xff\x00raw", error="bad")
    assert DeadLetter.from_bytes(letter.to_bytes()).original == b"\xff\x00raw"


def test_a_prediction_with_an_error_is_not_ok() -> None:
    assert not Prediction(request_id="r", error="no model", error_code="no_model").ok
    assert Prediction(request_id="r", label="setosa", model_version=1).ok


@pytest.mark.parametrize(
    ("shape", "fields"),
    [
        (Prediction, {}),
        (Prediction, {"label": "setosa"}),
        (Prediction, {"model_version": 1}),
        (Prediction, {"error": "broken"}),
        (BatchPrediction, {"model_version": 1}),
        (BatchPrediction, {"error": "broken"}),
    ],
)
def test_an_answer_is_either_complete_or_an_error_never_in_between(
    shape: type[Prediction] | type[BatchPrediction], fields: dict[str, object]
) -> None:
    """``{"request_id": "X"}`` alone used to be a valid answer the gateway then choked on."""
    with pytest.raises(ValidationError):
        shape(request_id="r", **fields)  # type: ignore[arg-type]
