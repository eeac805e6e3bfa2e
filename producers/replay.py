"""Replay the data set as prediction requests (and optionally feedback), at a set rate."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from tqdm import tqdm

from irisflow.settings import Settings
from producers.client import IrisflowProducer
from producers.samples import load_samples

__all__ = ["ReplayReport", "replay"]


@dataclass(frozen=True)
class ReplayReport:
    sent: int
    feedback: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else float("inf")


async def replay(
    settings: Settings,
    *,
    count: int,
    rate: float | None = None,
    with_feedback: bool = False,
    progress: bool = True,
) -> ReplayReport:
    """Send ``count`` requests cycling through the data set; ``rate`` caps requests/second."""
    samples = load_samples(settings)
    started = time.perf_counter()
    feedback = 0
    async with IrisflowProducer(settings.kafka) as producer:
        with tqdm(total=count, unit="req", desc="requests", disable=not progress) as bar:
            for index in range(count):
                request_id = await producer.request(samples.features(index))
                if with_feedback:
                    await producer.feedback(request_id, samples.label(index))
                    feedback += 1
                bar.update(1)
                if rate:
                    ahead = (index + 1) / rate - (time.perf_counter() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        await producer.flush()
    return ReplayReport(sent=count, feedback=feedback, seconds=time.perf_counter() - started)
