"""The topic codec: every value decodes to a valid message or is refused with a reason.

Property-based: whatever bytes arrive, a consumer gets a message or a :class:`Refused`,
never another exception, so the only thing a bad record can cost is its dead letter.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irisflow.schemas import DeadLetter, Feedback, PredictionRequest
from irisflow.settings import TopicNames
from irisflow.topics import DeadLetters, Incoming, Reason, Refused, Topic, Topics

TOPICS = Topics(TopicNames())
ALL = list(TOPICS.by_name().values())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


def _json_bytes(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # NaN/inf floats: orjson writes null; JSON text with NaN is tested too
        return repr(value).encode()


def _outcome(topic: Topic[Any], value: bytes | None, key: bytes | None) -> object:
    """The decoded message, or the refusal (anything else raised fails the test)."""
    try:
        return topic.decode(value, key)
    except Refused as exc:
        refusal = exc
    assert isinstance(refusal.reason, Reason)
    assert len(str(refusal)) <= 4096
    return refusal


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(0, len(ALL) - 1),
    value=st.none() | st.binary(max_size=300),
    key=st.none() | st.binary(max_size=40),
)
def test_any_bytes_decode_or_are_refused_with_a_reason(
    index: int, value: bytes | None, key: bytes | None
) -> None:
    _outcome(ALL[index], value, key)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(ALL) - 1), body=json_values, key=st.binary(max_size=40))
def test_any_json_decodes_or_is_refused_with_a_reason(index: int, body: object, key: bytes) -> None:
    _outcome(ALL[index], _json_bytes(body), key)


@settings(max_examples=200, deadline=None)
@given(
    field=st.sampled_from(["features.sepal_length", "sent_at"]),
    literal=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e309", "-1e309"]),
)
def test_non_finite_numbers_never_get_through(field: str, literal: str) -> None:
    body = {"request_id": "r1", "features": {"sepal_length": 1.0}, "sent_at": 1.0}
    text = orjson.dumps(body).decode()
    placeholder = "12345.678"
    if field == "sent_at":
        text = text.replace('"sent_at":1.0', f'"sent_at":{placeholder}')
    else:
        text = text.replace('"sepal_length":1.0', f'"sepal_length":{placeholder}')
    raw = text.replace(placeholder, literal).encode()
    outcome = _outcome(TOPICS.requests, raw, b"r1")
    assert isinstance(outcome, Refused)


@pytest.mark.parametrize(
    "request_id",
    ["", "a/b", "..", ".", "-x", "tab\there", "bidi\u202eevil", "x" * 129, "naïve", "a b"],
)
def test_request_ids_outside_the_charset_are_refused(request_id: str) -> None:
    raw = orjson.dumps({"request_id": request_id, "features": {"a": 1.0}})
    refusal = _outcome(TOPICS.requests, raw, request_id.encode())
    assert isinstance(refusal, Refused)
    assert refusal.reason == Reason.INVALID
    assert "request_id" in str(refusal)


def test_a_value_keyed_by_another_id_is_refused() -> None:
    raw = PredictionRequest(request_id="mine", features={"a": 1.0}).to_bytes()
    for key in (None, b"theirs", b"\xff"):
        refusal = _outcome(TOPICS.requests, raw, key)
        assert isinstance(refusal, Refused)
        assert refusal.reason == Reason.BAD_KEY


def test_small_topics_refuse_huge_values_before_parsing_them() -> None:
    raw = (
        Feedback(request_id="r", label="setosa").to_bytes()[:-1] + b',"x":"' + b"a" * 70000 + b'"}'
    )
    refusal = _outcome(TOPICS.feedback, raw, b"r")
    assert isinstance(refusal, Refused)
    assert refusal.reason == Reason.TOO_LARGE


def test_a_huge_number_of_bad_fields_makes_a_short_message() -> None:
    raw = orjson.dumps({"request_id": "r", "features": {f"f{i}": "x" for i in range(50000)}})
    refusal = _outcome(TOPICS.requests, raw, b"r")
    assert isinstance(refusal, Refused)
    assert len(str(refusal)) < 4096
    assert "more" in str(refusal)


def test_a_dead_letter_keeps_the_original_and_says_where_it_came_from() -> None:
    seen: list[tuple[str, str, str]] = []
    letters = DeadLetters(
        "dlq",
        "tests.consumer",
        max_message_bytes=1024 * 1024,
        on_letter=lambda *labels: seen.append(labels),
    )
    record = Incoming(value=b"\xff junk", key=b"k", partition=2, offset=41, topic="src")
    out = letters.letter(record, source_topic="src", reason=Reason.UNDECODABLE, error="bad")
    letter = DeadLetter.from_bytes(out.value)
    assert (letter.original, letter.partition, letter.offset) == (b"\xff junk", 2, 41)
    assert (letter.reason, letter.consumer, letter.source_topic) == (
        "undecodable",
        "tests.consumer",
        "src",
    )
    assert (out.topic, out.key) == ("dlq", b"k")
    assert dict(out.headers)["irisflow-source-offset"] == b"41"
    assert seen == [("src", "undecodable", "tests.consumer")]


def test_a_letter_for_a_record_near_the_size_limit_still_fits_the_topic() -> None:
    limit = 1024 * 1024
    letters = DeadLetters("dlq", "c", max_message_bytes=limit)
    record = Incoming(value=b"x" * limit, key=None)
    out = letters.letter(record, source_topic="src", reason=Reason.INVALID, error="e" * 10000)
    assert out.value is not None
    assert len(out.value) < limit
    letter = DeadLetter.from_bytes(out.value)
    assert letter.original_size == limit
    assert len(letter.original) < limit


def test_finite_floats_are_required_in_every_wire_message() -> None:
    raw = b'{"request_id":"victim-1","label":"setosa","labeled_at":NaN}'
    assert isinstance(_outcome(TOPICS.feedback, raw, b"victim-1"), Refused)
    good = Feedback(request_id="victim-1", label="setosa")
    assert math.isfinite(good.labeled_at)


def test_a_record_with_a_huge_key_near_the_size_limit_still_gets_a_letter_that_fits() -> None:
    """A 3 MiB key with a 7 MiB value fits a 10 MiB topic; its letter used to be 12.9 MB."""
    limit = 10 * 1024 * 1024
    letters = DeadLetters("dlq", "c", max_message_bytes=limit)
    key = b"k" * (3 * 1024 * 1024)
    record = Incoming(value=b"v" * (7 * 1024 * 1024), key=key, partition=0, offset=1)
    out = letters.letter(record, source_topic="src", reason=Reason.TOO_LARGE, error="big")
    assert out.value is not None
    assert out.key is not None
    assert len(out.value) + len(out.key) < limit
    assert out.key.startswith(b"sha256:")
    letter = DeadLetter.from_bytes(out.value)
    assert letter.original_key_size == len(key)
    assert letter.original_key == key[: len(letter.original_key or b"")]


def test_a_short_key_stays_the_letters_key() -> None:
    letters = DeadLetters("dlq", "c", max_message_bytes=1024 * 1024)
    out = letters.letter(Incoming(b"x", b"r-1"), source_topic="s", reason="invalid", error="e")
    assert out.key == b"r-1"
    assert DeadLetter.from_bytes(out.value).original_key is None
