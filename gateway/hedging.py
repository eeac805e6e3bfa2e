"""Hedged requests: when a request waits too long, a copy goes to a partition that answers.

A worker killed with ``kill -9`` holds its partitions until its group session expires (6 s by
default) and its successor has caught up: every request keyed to those partitions waits that
long, and the gateway's timeout turns the wait into 504s. Kafka offers no faster failover that
is safe, so the gateway hedges (Dean and Barroso, *The Tail at Scale*): a request unanswered
after ``delay`` is published again, same id and input, to the partition whose owner answered
most recently. The first answer wins; the other is dropped by request id like any duplicate.

Hedges are budgeted: at most ``max_ratio`` of requests (plus a small burst), so a gateway whose
workers are merely slow does not double their load. A request whose partition has gone quiet
while others answer is hedged regardless of the budget: that is the failover case, where the
copies are the only answers anyone will get for seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

__all__ = ["Hedger"]


class Hedger:
    """Which partition a late request's copy goes to, and whether one may be sent at all."""

    def __init__(
        self,
        partitions: int,
        *,
        delay: float,
        max_ratio: float = 0.05,
        burst: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.partitions = partitions
        self.delay = delay
        self.max_ratio = max_ratio
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last_answer: dict[int, float] = {}

    @property
    def enabled(self) -> bool:
        return self.delay > 0 and self.partitions > 1

    def sent(self) -> None:
        """A request was published: it earns ``max_ratio`` of a hedge."""
        self._tokens = min(self.burst, self._tokens + self.max_ratio)

    def answered(self, partition: int) -> None:
        """An answer came to a request published on ``partition``: its owner is alive."""
        self._last_answer[partition] = self._clock()

    def stalled(self, partition: int) -> bool:
        """Whether ``partition`` has been quiet for ``delay`` while another one answered."""
        now = self._clock()
        quiet = now - self._last_answer.get(partition, float("-inf")) > self.delay
        others = any(
            now - at <= self.delay for p, at in self._last_answer.items() if p != partition
        )
        return quiet and others

    def target(self, origin: int, tried: Collection[int]) -> int | None:
        """The partition for a copy of a request already sent to ``tried`` (first to ``origin``);
        ``None`` when there is none left or the budget is spent."""
        left = [p for p in range(self.partitions) if p not in tried and p != origin]
        if not left:
            return None
        if not self.stalled(origin):
            if self._tokens < 1.0:
                return None
            self._tokens -= 1.0
        # The most recent answer first; partitions never heard from in partition order.
        return max(left, key=lambda p: (self._last_answer.get(p, float("-inf")), -p))
