"""A real ``irisflow worker`` process follows a rollout on the session broker, and a restarted
one resumes it from the compacted ``rollouts`` topic alone.

The test plays the rollout controller: it publishes :class:`RolloutState` records with
:func:`publish_state`, as the controller in the trainer does. Which requests a share takes is
computed here with :func:`irisflow.rollout.point_of`, so every answer's version is known in
advance: in shadow every client gets the champion and each shadowed request gets one shadow
prediction; in canary the share is answered by the candidate, also after a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.clients import make_consumer, make_producer
from irisflow.kafka.rollout_topic import publish_state
from irisflow.local.broker.runtime import free_port
from irisflow.rollout import point_of
from irisflow.schemas import (
    Prediction,
    PredictionRequest,
    RolloutStage,
    RolloutState,
    ShadowPrediction,
)
from irisflow.settings import Settings, load_settings
from tests.conftest import unique_params
from tests.e2e.conftest import Stack, eventually
from tests.factories import SETOSA, model_update

pytestmark = pytest.mark.kafka

ROLLOUT = "rollout-it-1"
SHARE = 0.5
PER_SIDE = 10
TIMEOUT = 90.0


@pytest.fixture
def stack(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Stack]:
    params = unique_params(
        tmp_path,
        kafka_bootstrap,
        **{
            "worker.port": free_port(),
            "scoring.batch_linger_seconds": 0.01,
            "streams.session_timeout_seconds": 6,
        },
    )
    settings = load_settings(params, environ={})
    asyncio.run(ensure_topics(settings.kafka))
    stack = Stack(params=params, settings=settings, logs=tmp_path)
    stack.publish(1)
    try:
        yield stack
    finally:
        for role in list(stack.processes):
            stack.stop(role)


def _state(stage: RolloutStage) -> RolloutState:
    return RolloutState(
        model_name="iris",
        rollout_id=ROLLOUT,
        stage=stage,
        candidate_version=2,
        champion_version=1,
        share=SHARE,
        candidate=model_update(2),
    )


async def _publish(settings: Settings, state: RolloutState) -> None:
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        await publish_state(producer, settings.kafka, state)
    finally:
        await producer.stop()


def _health(stack: Stack) -> dict[str, Any]:
    url = f"http://127.0.0.1:{stack.settings.worker.port}/health"
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return {}
    return response.json() if response.status_code == 200 else {}


def _following(stack: Stack, stage: RolloutStage) -> dict[str, Any] | None:
    """The worker's rollout once it scores with the candidate in ``stage``."""
    rollout = _health(stack).get("rollout") or {}
    if rollout.get("stage") == stage and rollout.get("candidate_loaded") == 2:
        return rollout
    return None


def _ids(tag: str) -> tuple[list[str], list[str]]:
    """``PER_SIDE`` fresh request ids inside the share, and as many outside it."""
    inside: list[str] = []
    outside: list[str] = []
    n = 0
    while len(inside) < PER_SIDE or len(outside) < PER_SIDE:
        rid = f"{tag}-{n}"
        side = inside if point_of(ROLLOUT, rid) < SHARE else outside
        if len(side) < PER_SIDE:
            side.append(rid)
        n += 1
    return inside, outside


async def _exchange(
    settings: Settings, ids: list[str], *, shadows: int
) -> tuple[dict[str, Prediction], dict[str, ShadowPrediction]]:
    """Send a request for each id; read back every answer and ``shadows`` shadow records."""
    names = settings.kafka.topics
    consumer = make_consumer(settings.kafka, group_id=None)
    await consumer.start()
    producer = make_producer(settings.kafka, linger_ms=5)
    await producer.start()
    answers: dict[str, Prediction] = {}
    shadowed: dict[str, ShadowPrediction] = {}
    try:
        consumer.subscribe([names.predictions, names.shadow_predictions])
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        await consumer.seek_to_end()
        for rid in ids:
            request = PredictionRequest(request_id=rid, features=SETOSA)
            await producer.send(names.requests, key=rid.encode(), value=request.to_bytes())
        await producer.flush()
        wanted = set(ids)
        deadline = time.monotonic() + TIMEOUT
        while (len(answers) < len(ids) or len(shadowed) < shadows) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    rid = record.key.decode()
                    if rid not in wanted:
                        continue
                    if record.topic == names.predictions:
                        assert rid not in answers, f"a second answer to {rid}"
                        answers[rid] = Prediction.from_bytes(record.value)
                    else:
                        assert rid not in shadowed, f"a second shadow record of {rid}"
                        shadowed[rid] = ShadowPrediction.from_bytes(record.value)
    finally:
        await producer.stop()
        await consumer.stop()
    return answers, shadowed


def test_a_worker_follows_a_rollout_from_shadow_to_canary_and_resumes_it_after_a_restart(
    stack: Stack,
) -> None:
    settings = stack.settings
    stack.start("worker", "worker")
    stack.wait_ready(TIMEOUT)

    asyncio.run(_publish(settings, _state(RolloutStage.SHADOW)))
    assert eventually(lambda: _following(stack, RolloutStage.SHADOW), TIMEOUT)
    inside, outside = _ids("shadow")
    answers, shadows = asyncio.run(_exchange(settings, inside + outside, shadows=len(inside)))
    assert set(answers) == set(inside + outside)
    assert {a.model_version for a in answers.values()} == {1}, "clients get the champion"
    assert set(shadows) == set(inside)
    assert {(s.mode, s.version, s.served_version) for s in shadows.values()} == {("shadow", 2, 1)}
    assert all(s.labels == s.served_labels == ["setosa"] for s in shadows.values())

    asyncio.run(_publish(settings, _state(RolloutStage.CANARY)))
    assert eventually(lambda: _following(stack, RolloutStage.CANARY), TIMEOUT)
    _answered_by_the_canary(settings, "canary")

    stack.stop("worker")
    stack.start("worker", "worker")  # a new process: the rollout comes from the topic alone
    stack.wait_ready(TIMEOUT)
    assert _following(stack, RolloutStage.CANARY)
    _answered_by_the_canary(settings, "restarted")


def _answered_by_the_canary(settings: Settings, tag: str) -> None:
    inside, outside = _ids(tag)
    answers, shadows = asyncio.run(_exchange(settings, inside + outside, shadows=len(inside)))
    assert {rid: answers[rid].model_version for rid in inside} == dict.fromkeys(inside, 2)
    assert {rid: answers[rid].model_version for rid in outside} == dict.fromkeys(outside, 1)
    assert set(shadows) == set(inside)
    assert {(s.mode, s.version, s.served_version) for s in shadows.values()} == {("canary", 1, 2)}
