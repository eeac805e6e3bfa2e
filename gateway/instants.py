"""Moments in query parameters (``GET /v1/audit?since=…&until=…``), read exactly as documented.

Two spellings, and nothing else: an RFC 3339 date-time (``2026-01-01T00:00:00Z``, with its
offset: a time without one names no moment) or Unix seconds from 0 to 1e10 (a JSON number, so
``1767225600`` or ``1.7672256e9``). The OpenAPI document says the same in :data:`INSTANT_SCHEMA`,
and the parser accepts exactly that: pydantic's lenient datetime parsing took naive times, bare
dates and millisecond counts the schema did not describe, so a client could not know what a
value meant, and a contract test could not either.

The date arithmetic is done here (days from the civil date) rather than with :mod:`datetime`,
whose years start at 1 and which has no leap second: RFC 3339 allows year 0000 and ``:60``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["INSTANT_SCHEMA", "LATEST_SECONDS", "parse_instant"]

LATEST_SECONDS = 1e10
"""The largest Unix seconds accepted (the year 2286, the bound of every wire timestamp)."""

INSTANT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "number", "minimum": 0, "maximum": LATEST_SECONDS},
    ],
}

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_DATE_TIME = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?P<fraction>\.[0-9]+)?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<off_hour>[0-9]{2}):(?P<off_minute>[0-9]{2}))"
)
_WHAT_TO_SEND = (
    "send an RFC 3339 date-time with its offset (2026-01-01T00:00:00Z) "
    "or Unix seconds from 0 to 1e10"
)


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (any year, no table)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _date_time(match: re.Match[str]) -> float | None:
    """Unix seconds of an RFC 3339 date-time, or ``None`` if a field is out of its range."""
    year, month, day = (int(match[k]) for k in ("year", "month", "day"))
    hour, minute, second = (int(match[k]) for k in ("hour", "minute", "second"))
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return None
    if hour > 23 or minute > 59 or second > 60:  # 60: a leap second, one second later
        return None
    offset = 0
    if match["sign"] is not None:
        off_hour, off_minute = int(match["off_hour"]), int(match["off_minute"])
        if off_hour > 23 or off_minute > 59:
            return None
        offset = (off_hour * 60 + off_minute) * 60 * (1 if match["sign"] == "+" else -1)
    whole = _days_since_epoch(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return float(whole - offset) + float(match["fraction"] or 0)


def parse_instant(value: object) -> float:
    """Unix seconds of a query value (see the module); ``ValueError`` saying what to send."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = repr(value)
    if not isinstance(value, str):
        raise ValueError(_WHAT_TO_SEND)
    if _NUMBER.fullmatch(value):
        seconds = float(value)
        if 0 <= seconds <= LATEST_SECONDS:
            return seconds
        raise ValueError(f"{value} seconds is out of range; {_WHAT_TO_SEND}")
    match = _DATE_TIME.fullmatch(value)
    moment = _date_time(match) if match is not None else None
    if moment is None:
        raise ValueError(f"not a moment; {_WHAT_TO_SEND}")
    return moment
