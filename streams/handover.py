"""The scoring lane follows Faust: it reads the request partitions whose feedback Faust assigned.

Kafka waits for the revoke handler, so the lane's last answers and commit for a partition happen
before its next owner reads it. New partitions are handed over only after table recovery, so the
join entries the lane writes are never overwritten by recovery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import faust

from streams.lane import ScoringLane

__all__ = ["Handover", "follow_assignment"]

log = logging.getLogger(__name__)


class Handover:
    """When the lane may take the partitions Faust assigned, from Faust's rebalance signals.

    Per rebalance Faust signals revoked, then assigned, then (after table recovery) complete.
    A completion can be stale: Faust sends it before checking whether another rebalance began,
    and its own end-of-rebalance flags can be cleared by a stale recovery. So this counts
    revokes itself: a completion hands partitions over only if no revoke came after the last
    assignment, and :meth:`reconcile` (run every second) repairs a hand-over that was missed.
    """

    def __init__(self, lane: ScoringLane, owned: Callable[[], set[int]]) -> None:
        self.lane = lane
        self.owned = owned
        self._revokes = 0
        self._assigned_at = -1
        self._completed_at = -1

    async def revoked(self) -> None:
        self._revokes += 1
        await self.lane.release()

    def assigned(self) -> None:
        self._assigned_at = self._revokes

    async def completed(self) -> None:
        if self._assigned_at != self._revokes:  # revoked since: a newer rebalance is under way
            return
        self._completed_at = self._revokes
        await self.lane.assign(self.owned())

    async def reconcile(self) -> None:
        if not self._assigned_at == self._completed_at == self._revokes:
            return
        owned = self.owned()
        if self.lane.partitions != owned:
            log.warning("scoring lane missed a hand-over; taking %s now", sorted(owned))
            await self.lane.assign(owned)


def follow_assignment(app: faust.App, lane: ScoringLane, owned: Callable[[], set[int]]) -> None:
    """Give the lane what Faust gives this worker, and take it away before anyone else gets it."""
    handover = Handover(lane, owned)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def release_requests(sender: Any, *args: Any, **kwargs: Any) -> None:
        await handover.revoked()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def note_assignment(sender: Any, *args: Any, **kwargs: Any) -> None:
        handover.assigned()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def take_requests(sender: Any, *args: Any, **kwargs: Any) -> None:
        await handover.completed()

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def reconcile_requests() -> None:
        await handover.reconcile()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def finish_requests(sender: Any, *args: Any, **kwargs: Any) -> None:
        try:
            await lane.release()
        except Exception as exc:  # the crash that stops us was reported; stopping must go on
            log.warning("scoring lane let go without its last commit: %r", exc)
