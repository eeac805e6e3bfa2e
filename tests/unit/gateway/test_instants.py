"""``since``/``until`` of ``GET /v1/audit``: exactly the two spellings the OpenAPI document names.

An RFC 3339 date-time with its offset, or Unix seconds from 0 to 1e10; everything else is refused
with a message saying what to send (a naive time, a bare date and a millisecond count used to be
accepted with a meaning the schema did not state).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.instants import INSTANT_SCHEMA, LATEST_SECONDS, parse_instant

_OFFSETS = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-(24 * 60 - 1), 24 * 60 - 1)
)


@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_OFFSETS
    )
)
def test_an_rfc3339_date_time_is_the_moment_it_names(moment: datetime) -> None:
    assert parse_instant(moment.isoformat()) == pytest.approx(moment.timestamp(), abs=1e-6)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2026-01-01T00:00:00Z", 1767225600.0),
        ("2026-01-01t00:00:00z", 1767225600.0),
        ("2026-01-01T01:30:00+01:30", 1767225600.0),
        ("2025-12-31T19:00:00.5-05:00", 1767225600.5),
        ("2016-12-31T23:59:60Z", 1483228800.0),  # a leap second is the next second's start
        ("0000-03-01T00:00:00Z", -62162035200.0),  # RFC 3339 has a year 0; datetime has not
        ("0", 0.0),
        ("0.5", 0.5),
        ("1767225600", 1767225600.0),
        ("1.7672256e9", 1767225600.0),
        ("1e10", LATEST_SECONDS),
    ],
)
def test_both_spellings_are_read(text: str, seconds: float) -> None:
    assert parse_instant(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T00:00:00",  # no offset: which moment?
        "2026-01-01",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00Z",
        "2026-01-01T00:00:00+0100",
        "2026-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:00+24:00",
        "1.8e12",  # milliseconds
        "-1",
        "1e400",
        "inf",
        "nan",
        " 5",
        "1_000",
        "0x10",
        "٣",  # a digit, but not an ASCII one
        "yesterday",
        "",
    ],
)
def test_anything_else_is_refused_saying_what_to_send(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339 date-time .* or Unix seconds"):
        parse_instant(text)


def test_the_schema_states_the_same_two_spellings() -> None:
    string, number = INSTANT_SCHEMA["anyOf"]
    assert string == {"type": "string", "format": "date-time"}
    assert number == {"type": "number", "minimum": 0, "maximum": LATEST_SECONDS}
    assert parse_instant(repr(float(number["maximum"]))) == LATEST_SECONDS
    assert datetime.fromtimestamp(LATEST_SECONDS, UTC).year == 2286
