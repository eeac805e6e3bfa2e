"""Trace context and hop stamps in Kafka headers: W3C rules, and never an error on bad input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from irisflow.settings import Settings
from irisflow.topics import DeadLetters, Incoming, Reason
from irisflow.tracing import (
    HOPS,
    TRACEPARENT,
    TraceContext,
    hop_header,
    read_hops,
    trace_of,
    with_headers,
)

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_traceparent_is_read_back_unchanged() -> None:
    context = TraceContext.parse(VALID)
    assert context == TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)
    assert context.header == VALID


def test_the_sampled_flag_is_the_lowest_bit() -> None:
    context = TraceContext.parse(VALID[:-2] + "00")
    assert context is not None
    assert not context.sampled
    assert context.header.endswith("-00")


@pytest.mark.parametrize(
    "header",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        VALID + "-extra",  # version 00 has exactly four fields
        b"\xff\xfe",
    ],
)
def test_an_invalid_traceparent_is_no_context(header: str | bytes) -> None:
    assert TraceContext.parse(header) is None


def test_a_future_version_is_read_by_its_first_four_fields() -> None:
    context = TraceContext.parse("cc" + VALID[2:] + "-what-comes-later")
    assert context is not None
    assert context.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_child_keeps_the_trace_and_gets_a_new_span() -> None:
    parent = TraceContext.new()
    child = parent.child()
    assert child.trace_id == parent.trace_id
    assert child.span_id != parent.span_id
    assert TraceContext.parse(child.header) == child


def test_the_trace_is_found_among_other_headers_as_pairs_or_a_mapping() -> None:
    context = TraceContext.new()
    pairs = [("irisflow-reason", b"x"), context.as_header()]
    assert trace_of(pairs) == context
    assert trace_of(dict(pairs)) == context
    assert trace_of(None) is None
    assert trace_of([("other", b"1")]) is None


def test_hop_stamps_round_trip_in_order() -> None:
    headers = [hop_header(hop, 1_700_000_000.0 + i / 1000) for i, hop in enumerate(HOPS)]
    hops = read_hops(headers)
    assert list(hops) == list(HOPS)
    assert all(math.isclose(hops[h], 1_700_000_000.0 + i / 1000) for i, h in enumerate(HOPS))


def test_an_unknown_hop_cannot_be_stamped() -> None:
    with pytest.raises(ValueError, match="worker_fetched"):
        hop_header("somewhere", 1.0)


@pytest.mark.parametrize("value", [b"nan", b"inf", b"-1", b"1e11", b"soon", b"\xff"])
def test_a_malformed_stamp_is_skipped(value: bytes) -> None:
    name, _ = hop_header("worker_scored", 1.0)
    assert read_hops([(name, value), hop_header("worker_fetched", 2.0)]) == {"worker_fetched": 2.0}


def test_with_headers_replaces_a_header_of_the_same_name() -> None:
    old, new = TraceContext.new(), TraceContext.new()
    headers = with_headers([old.as_header(), ("a", b"1")], new.as_header())
    assert headers == (("a", b"1"), new.as_header())
    assert [n for n, _ in headers].count(TRACEPARENT) == 1


@given(st.lists(st.tuples(st.text(max_size=30), st.binary(max_size=60)), max_size=8))
def test_any_headers_at_all_read_without_raising(headers: list[tuple[str, bytes]]) -> None:
    trace_of(headers)
    assert all(0 <= at <= 1e10 for at in read_hops(headers).values())


class _Record:
    """What a consumer hands over: aiokafka's ConsumerRecord or a Faust message."""

    def __init__(self, headers: object) -> None:
        self.value, self.key, self.partition, self.offset, self.topic = b"{}", b"k", 0, 7, "t"
        self.headers = headers


@pytest.mark.parametrize(
    "headers",
    [[("traceparent", VALID.encode())], {"traceparent": VALID.encode()}],
    ids=["aiokafka pairs", "faust mapping"],
)
def test_an_incoming_record_keeps_its_headers(headers: object) -> None:
    incoming = Incoming.of(_Record(headers))
    assert incoming.headers == (("traceparent", VALID.encode()),)
    assert trace_of(incoming.headers) == TraceContext.parse(VALID)


def test_a_dead_letter_joins_the_trace_of_the_record_it_refuses() -> None:
    letters = DeadLetters.to(Settings().kafka, "tests")
    record = Incoming(b"junk", b"k", 0, 7, "t", ((TRACEPARENT, VALID.encode()),))
    letter = letters.letter(record, source_topic="t", reason=Reason.UNDECODABLE, error="junk")
    trace = trace_of(letter.headers)
    assert trace is not None
    assert trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace.span_id != "00f067aa0ba902b7"


def test_a_dead_letter_of_an_untraced_record_has_no_trace() -> None:
    letters = DeadLetters.to(Settings().kafka, "tests")
    letter = letters.letter(
        Incoming(b"junk", b"k", 0, 7, "t"), source_topic="t", reason=Reason.UNDECODABLE, error="x"
    )
    assert trace_of(letter.headers) is None
