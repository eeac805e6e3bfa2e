"""A trainer whose consumer group rebalances counts each labeled sample once.

The trainer commits its offsets only with a retraining decision, so between decisions the
labels it holds are uncommitted; a rebalance of its group (a second trainer starting, a
session lost while the cluster was away) makes its consumer read them again from the last
commit. Those are the same records, not new labels: counted twice they would bring the next
retraining forward and weigh those samples double in it.
"""

from __future__ import annotations

import asyncio

import pytest

from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.clients import make_consumer
from irisflow.kafka.model_topic import publish_update
from irisflow.schemas import LabeledSample
from irisflow.settings import Settings
from tests.conftest import SettingsFactory
from tests.factories import SETOSA, model_update
from tests.integration.labels import running, send_labeled
from trainer.service import RetrainingService

pytestmark = pytest.mark.kafka


def _samples(prefix: str, count: int) -> list[LabeledSample]:
    return [
        LabeledSample(request_id=f"{prefix}-{i}", features=SETOSA, true_label="setosa")
        for i in range(count)
    ]


def _held(service: RetrainingService) -> list[str]:
    return [entry.sample.request_id for entry in service._window]


async def _until(check: object, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def _rebalance(settings: Settings) -> None:
    """A second member joins the trainer's group, takes its share, and leaves."""
    kafka = settings.kafka
    intruder = make_consumer(
        kafka, kafka.topics.labeled, group_id=f"{kafka.app_id}-trainer", auto_offset_reset="latest"
    )
    await intruder.start()
    try:
        await _until(lambda: bool(intruder.assignment()))
    finally:
        await intruder.stop()


async def test_a_rebalance_of_the_trainers_group_counts_no_labeled_sample_twice(
    kafka_settings: SettingsFactory,
) -> None:
    settings = kafka_settings(**{"retraining.min_new_labels": 100000})
    await ensure_topics(settings.kafka)
    await publish_update(settings.kafka, model_update(1))
    service = RetrainingService(settings)
    async with running(service):
        await send_labeled(settings.kafka, _samples("before", 20))
        await _until(lambda: len(_held(service)) >= 20)
        await _rebalance(settings)
        await send_labeled(settings.kafka, _samples("after", 5))
        # every partition is read in order: once the new labels are in, any re-read is too
        await _until(lambda: {f"after-{i}" for i in range(5)} <= set(_held(service)))
        held = _held(service)
        seen = service.metrics.registry.get_sample_value("irisflow_trainer_labeled_samples_total")
        pending = service.metrics.registry.get_sample_value("irisflow_trainer_pending_labels")
    assert sorted(held) == sorted(
        [f"before-{i}" for i in range(20)] + [f"after-{i}" for i in range(5)]
    )
    assert (seen, pending) == (25, 25)
