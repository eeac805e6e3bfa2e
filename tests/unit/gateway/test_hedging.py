"""Hedged requests: copies go to a partition that answers, within a budget, except in failover."""

from __future__ import annotations

from gateway.hedging import Hedger


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _hedger(clock: Clock, **options: float) -> Hedger:
    return Hedger(4, delay=0.25, clock=clock, **options)  # type: ignore[arg-type]


def test_a_copy_goes_to_the_partition_that_answered_most_recently() -> None:
    clock = Clock()
    hedger = _hedger(clock)
    hedger.answered(1)
    clock.now += 0.1
    hedger.answered(3)
    assert hedger.target(0, tried={0}) == 3


def test_a_copy_never_goes_where_the_request_already_went() -> None:
    clock = Clock()
    hedger = _hedger(clock)
    hedger.answered(3)
    assert hedger.target(0, tried={0, 3}) != 3
    assert hedger.target(0, tried={0, 1, 2, 3}) is None


def test_with_no_answer_heard_yet_the_next_partitions_are_tried_in_order() -> None:
    hedger = _hedger(Clock())
    assert hedger.target(2, tried={2}) == 0
    assert hedger.target(2, tried={2, 0}) == 1


def test_copies_are_limited_to_the_budget_while_every_partition_answers() -> None:
    clock = Clock()
    hedger = _hedger(clock, burst=2, max_ratio=0.05)
    for partition in range(4):
        hedger.answered(partition)
    assert hedger.target(0, tried={0}) is not None
    assert hedger.target(0, tried={0}) is not None
    assert hedger.target(0, tried={0}) is None  # burst spent
    for _ in range(20):  # 20 requests earn one copy
        hedger.sent()
    assert hedger.target(0, tried={0}) is not None
    assert hedger.target(0, tried={0}) is None


def test_a_partition_gone_quiet_while_others_answer_is_hedged_beyond_the_budget() -> None:
    clock = Clock()
    hedger = _hedger(clock, burst=1)
    hedger.answered(0)
    clock.now += 1.0  # partition 0's owner died a second ago
    for partition in (1, 2, 3):
        hedger.answered(partition)
    assert hedger.stalled(0)
    assert all(hedger.target(0, tried={0}) is not None for _ in range(50))


def test_a_quiet_gateway_is_not_a_failover() -> None:
    clock = Clock()
    hedger = _hedger(clock)
    for partition in range(4):
        hedger.answered(partition)
    clock.now += 60.0  # nobody asked anything for a minute
    assert not hedger.stalled(0)


def test_hedging_is_off_with_no_delay_or_a_single_partition() -> None:
    assert not Hedger(4, delay=0).enabled
    assert not Hedger(1, delay=0.25).enabled
    assert Hedger(4, delay=0.25).enabled
