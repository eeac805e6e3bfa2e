"""Careful HTTP clients for the fault drills: their own request ids, the same id retried.

A careful client of a request-reply service names each request (``request_id``) and, when a
call fails in a way that says nothing about whether it was done (a 5xx, a timeout, a dropped
connection), sends the same call again under the same id until it is accepted or its patience
runs out. That is what the gateway's idempotent ids exist for, and what the drills exercise:
a broker stopped mid-stream makes some calls fail or stall, and the retried ones must be
answered once, correctly, without anything the gateway accepted going missing.

Each lane is one such client: it sends a prediction, waits for it, sends the feedback of the
answered request (its true Iris label), then the next prediction at its pace. Request ids are
:func:`~tests.cluster.checker.lane_id` so the checker can tell the order each lane sent in.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from tests.cluster.checker import Call, Ledger, lane_id
from tests.factories import IRIS_FEATURES, iris_xy

__all__ = ["Fault", "Traffic"]

Fault = tuple[float, Callable[[], Any]]
"""At this many seconds into the traffic, run this (blocking: it runs in a thread)."""

_RETRY_STATUSES = frozenset({500, 502, 503, 504})


@dataclass
class Traffic:
    """``lanes`` careful clients sending ``rate`` predictions a second between them."""

    url: str
    run: str
    lanes: int = 6
    rate: float = 24.0
    patience: float = 60.0
    """How long one call is retried before the client gives up on it."""
    feedback: bool = True
    http_timeout: float = 15.0

    def go(self, seconds: float, faults: Sequence[Fault] = ()) -> Ledger:
        """Send for ``seconds``, running ``faults`` on time; every call settled on return."""
        return asyncio.run(self._run(seconds, faults))

    async def _run(self, seconds: float, faults: Sequence[Fault]) -> Ledger:
        ledger = Ledger()
        started = time.monotonic()
        limits = httpx.Limits(max_connections=4 * self.lanes)
        async with httpx.AsyncClient(timeout=self.http_timeout, limits=limits) as client:
            drills = [asyncio.create_task(_at(started + at, fault)) for at, fault in faults]
            lanes = [
                asyncio.create_task(self._lane(client, lane, started, seconds, ledger))
                for lane in range(self.lanes)
            ]
            await asyncio.gather(*lanes, *drills)
        return ledger

    async def _lane(
        self,
        client: httpx.AsyncClient,
        lane: int,
        started: float,
        seconds: float,
        ledger: Ledger,
    ) -> None:
        x, y = iris_xy()
        pick = random.Random(f"{self.run}-{lane}")
        period = self.lanes / self.rate
        seq = 0
        while (due := started + lane * period / self.lanes + seq * period) < started + seconds:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            row = pick.randrange(len(x))
            features = {name: float(v) for name, v in zip(IRIS_FEATURES, x[row], strict=True)}
            rid = lane_id(self.run, lane, seq)
            seq += 1
            ledger.attempted.add(rid)
            body = {"request_id": rid, "features": features}
            answer = await self._call(client, "/v1/predict", body, f"predict {rid}", ledger)
            if answer is None:
                continue
            told = answer.json()
            truth = str(y[row])
            call = Call(features, told.get("label"), told.get("model_version"), truth)
            ledger.accepted[rid] = call
            if self.feedback:
                await self._feedback(client, rid, truth, ledger)

    async def _feedback(
        self, client: httpx.AsyncClient, rid: str, label: str, ledger: Ledger
    ) -> None:
        body = {"request_id": rid, "label": label}
        if await self._call(client, "/v1/feedback", body, f"feedback {rid}", ledger):
            ledger.feedback[rid] = label

    def feedback_for(self, ledger: Ledger) -> None:
        """Give the feedback of every prediction ``ledger`` holds as accepted (into the same
        ledger), each lane's in the order it predicted: the feedback of earlier predictions."""

        async def give() -> None:
            lanes: dict[str, list[str]] = {}
            for rid in sorted(ledger.accepted):
                lanes.setdefault(rid.rsplit(".", 1)[0], []).append(rid)
            async with httpx.AsyncClient(timeout=self.http_timeout) as client:

                async def lane(mine: list[str]) -> None:
                    for rid in mine:
                        truth = ledger.accepted[rid].truth or ""
                        await self._feedback(client, rid, truth, ledger)

                await asyncio.gather(*(lane(mine) for mine in lanes.values()))

        asyncio.run(give())

    async def _call(
        self,
        client: httpx.AsyncClient,
        path: str,
        body: dict[str, Any],
        what: str,
        ledger: Ledger,
    ) -> httpx.Response | None:
        """The accepted response (2xx), or ``None`` (refused with a 4xx, or out of patience)."""
        began = time.monotonic()
        backoff = 0.2
        while True:
            try:
                response = await client.post(self.url + path, json=body)
            except httpx.HTTPError as exc:
                ledger.retried[type(exc).__name__] += 1
            else:
                if response.is_success:
                    ledger.slowest = max(ledger.slowest, time.monotonic() - began)
                    return response
                if response.status_code not in _RETRY_STATUSES:
                    ledger.refused.append(f"{what}: {response.status_code} {response.text[:200]}")
                    return None
                ledger.retried[f"{response.status_code} {_code(response)}"] += 1
            if time.monotonic() - began > self.patience:
                ledger.gave_up.append(what)
                return None
            await asyncio.sleep(backoff)
            backoff = min(2 * backoff, 2.0)


def _code(response: httpx.Response) -> str:
    """The gateway's error code (``kafka_unavailable``, ``timeout``, …) of a failed call."""
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


async def _at(moment: float, fault: Callable[[], Any]) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))
    await asyncio.to_thread(fault)
