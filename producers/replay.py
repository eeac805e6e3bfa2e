"""Send planned traffic to Kafka at a set rate, with a progress bar."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from tqdm import tqdm

from irisflow.settings import Settings
from producers.client import IrisflowProducer
from producers.samples import load_samples
from producers.traffic import Scenario, plan_traffic

__all__ = ["ReplayReport", "replay"]


@dataclass(frozen=True)
class ReplayReport:
    sent: int
    feedback: int
    drifted: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else float("inf")


async def _later(delay: float, producer: IrisflowProducer, request_id: str, label: str) -> None:
    await asyncio.sleep(delay)
    await producer.feedback(request_id, label)


async def replay(
    settings: Settings,
    scenario: Scenario,
    *,
    rate: float | None = None,
    progress: bool = True,
) -> ReplayReport:
    """Send ``scenario.count`` requests (and their feedback); ``rate`` caps requests/second."""
    samples = load_samples(settings)
    started = time.perf_counter()
    feedback = drifted = 0
    delayed: list[asyncio.Task[None]] = []
    async with IrisflowProducer(settings.kafka) as producer:
        with tqdm(total=scenario.count, unit="req", desc="requests", disable=not progress) as bar:
            for planned in plan_traffic(samples, scenario):
                request_id = await producer.request(planned.features)
                drifted += planned.drifted
                if planned.feedback_label is not None:
                    feedback += 1
                    if scenario.label_delay > 0:
                        delayed.append(
                            asyncio.create_task(
                                _later(
                                    scenario.label_delay,
                                    producer,
                                    request_id,
                                    planned.feedback_label,
                                )
                            )
                        )
                    else:
                        await producer.feedback(request_id, planned.feedback_label)
                bar.update(1)
                if rate:
                    ahead = (planned.index + 1) / rate - (time.perf_counter() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        if delayed:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*delayed)
        await producer.flush()
    return ReplayReport(
        sent=scenario.count,
        feedback=feedback,
        drifted=drifted,
        seconds=time.perf_counter() - started,
    )
