"""Every error the README lists has its HTTP status and code, and every error body is bounded.

Read from the README's "Errors" paragraph and "Guarantees": no model live → 503 ``no_model``,
features that do not fit → 422, no worker answering → 504, a reused id → 409, and so on. These
pin the mapping itself (``gateway/errors.py``), so a status that drifts is caught without a
broker; the e2e tests show the same answers through real processes.
"""

from __future__ import annotations

import orjson
import pytest

from gateway.bodies import FieldError
from gateway.errors import (
    MAX_MESSAGE,
    MOST_FIELDS,
    AdminDisabled,
    FeatureMismatch,
    Forbidden,
    NoModelLive,
    PredictionNotFound,
    RequestIdConflict,
    TooManyInstances,
    Unauthorized,
    UnreadableAnswer,
    error_response,
    status_of,
)
from irisflow.errors import (
    IrisflowError,
    KafkaUnavailable,
    ModelNotFound,
    PredictionFailed,
    PredictionTimeout,
)
from irisflow.schemas import ErrorCode


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (
            FeatureMismatch([FieldError(field="features.x", message="unknown")]),
            422,
            "invalid_request",
        ),
        (RequestIdConflict("r1"), 409, "request_id_conflict"),
        (TooManyInstances(6, 5), 413, "too_many_instances"),
        (Unauthorized("no key"), 401, "unauthorized"),
        (Forbidden("wrong key"), 403, "forbidden"),
        (AdminDisabled("no key configured"), 403, "admin_disabled"),
        (ModelNotFound("v9"), 404, "not_found"),
        (PredictionNotFound("r1"), 404, "not_found"),
        (KafkaUnavailable("down"), 503, "kafka_unavailable"),
        (NoModelLive("none yet"), 503, "no_model"),
        (PredictionTimeout("late"), 504, "timeout"),
        (UnreadableAnswer("junk"), 502, "bad_answer"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_gateway_error_has_the_status_and_code_the_readme_gives(
    error: IrisflowError, status: int, code: str
) -> None:
    assert status_of(error) == (status, code)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.NO_MODEL, 503),  # no model live yet: retry once one is
        (ErrorCode.INVALID_REQUEST, 422),
        (ErrorCode.SCHEMA_MISMATCH, 422),
        (ErrorCode.OUT_OF_DOMAIN, 422),
    ],
)
def test_a_workers_error_answer_is_relayed_with_its_status_and_code(
    code: ErrorCode, status: int
) -> None:
    assert status_of(PredictionFailed("the worker says no", code=code)) == (status, code.value)


def _body(**kwargs: object) -> dict[str, object]:
    response = error_response(422, "invalid_request", **kwargs)  # type: ignore[arg-type]
    error: dict[str, object] = orjson.loads(response.body)["error"]
    return error


def test_an_error_body_lists_twenty_fields_then_counts_the_rest() -> None:
    fields = [FieldError(field=f"features.f{i}", message="unknown") for i in range(27)]
    listed = _body(message="27 unknown features", fields=fields)["fields"]
    assert isinstance(listed, list)
    assert MOST_FIELDS == 20
    assert [f["field"] for f in listed[:20]] == [f"features.f{i}" for i in range(20)]
    assert listed[20:] == [{"field": "body", "message": "and 7 more"}]


def test_fields_left_out_before_the_body_was_built_are_counted_too() -> None:
    fields = [FieldError(field=f"f{i}", message="bad") for i in range(20)]
    listed = _body(message="many", fields=fields, more_fields=49_980)["fields"]
    assert isinstance(listed, list)
    assert len(listed) == 21
    assert listed[-1] == {"field": "body", "message": "and 49980 more"}


def test_an_error_message_is_cut_at_four_thousand_characters() -> None:
    message = _body(message="x" * 50_000)["message"]
    assert isinstance(message, str)
    assert MAX_MESSAGE == 4000
    assert len(message) <= 4000
    assert message.startswith("x" * 3900)
    assert "more characters" in message
