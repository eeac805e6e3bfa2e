"""The score agent inside Faust, without a broker (``agent.test_context()``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from irisflow.registry import deserialize_model
from irisflow.schemas import (
    BatchPrediction,
    BatchPredictionRequest,
    DeadLetter,
    Prediction,
    PredictionRequest,
)
from irisflow.topics import Outgoing
from streams.app import StreamsApp, build_app
from streams.intake import LiveModel
from tests.conftest import SettingsFactory
from tests.factories import SETOSA, VIRGINICA, model_update


class Sent:
    """Collects what the agents produce, per topic."""

    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    async def __call__(self, messages: Sequence[Outgoing]) -> list[asyncio.Future[None]]:
        self.messages.extend(messages)
        return []

    def on(self, topic: str) -> list[Outgoing]:
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(self, topic: str, count: int, timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.on(topic)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {count} on {topic}, got {len(self.on(topic))}")
            await asyncio.sleep(0.01)


def agent_app(make_settings: SettingsFactory, *, version: int) -> tuple[StreamsApp, Sent]:
    """A worker app whose Faust agents read requests, with ``version`` live and a recording sink."""
    settings = make_settings(
        **{
            "scoring.batch_size": 10,
            "scoring.batch_linger_seconds": 0.05,
            "scoring.consumer": "agent",
        }
    )
    sent = Sent()
    app = build_app(settings, sink=sent)
    update = model_update(version)
    app.holder.current = LiveModel(
        update.metadata(), deserialize_model(update.artifact, sha256=update.sha256)
    )
    app.feed.caught_up.set()
    app.rollouts.caught_up.set()
    return app, sent


@pytest.fixture
async def streams(make_settings: SettingsFactory) -> tuple[StreamsApp, Sent]:
    return agent_app(make_settings, version=2)


def _request(request_id: str) -> bytes:
    return PredictionRequest(request_id=request_id, features=SETOSA).to_bytes()


def _topics(app: StreamsApp) -> tuple[str, str]:
    names = app.pipeline.topics
    return names.predictions, names.dead_letters


async def test_the_agent_answers_every_request_of_a_batch(
    streams: tuple[StreamsApp, Sent],
) -> None:
    app, sent = streams
    predictions, _ = _topics(app)
    async with app.score_agent.test_context() as agent:
        for i in range(25):
            await agent.put(_request(f"r{i}"), key=f"r{i}".encode(), wait=False)
        await sent.wait_for(predictions, 25)
    answers = [Prediction.from_bytes(m.value) for m in sent.on(predictions)]
    assert sorted(a.request_id for a in answers) == sorted(f"r{i}" for i in range(25))
    assert {a.label for a in answers} == {"setosa"}
    assert {a.model_version for a in answers} == {2}
    assert all(
        m.key == a.request_id.encode() for m, a in zip(sent.on(predictions), answers, strict=True)
    )
    sizes = app.metrics.registry.get_sample_value("irisflow_scoring_batch_size_count")
    assert sizes is not None
    assert sizes < 25  # micro-batched: fewer predict_proba calls than requests


async def test_batched_request_messages_are_answered_with_one_entry_per_instance(
    streams: tuple[StreamsApp, Sent],
) -> None:
    app, sent = streams
    predictions, _ = _topics(app)
    batch = BatchPredictionRequest(request_id="b1", instances=[SETOSA, VIRGINICA])
    async with app.score_agent.test_context() as agent:
        await agent.put(batch.to_bytes(), key=b"b1", wait=False)
        await agent.put(_request("single"), key=b"single", wait=False)
        await sent.wait_for(predictions, 2)
    by_key = {m.key: m.value for m in sent.on(predictions)}
    answer = BatchPrediction.from_bytes(by_key[b"b1"])
    assert [p.label for p in answer.predictions] == ["setosa", "virginica"]
    assert Prediction.from_bytes(by_key[b"single"]).label == "setosa"


async def test_a_poison_message_is_dead_lettered_and_the_agent_keeps_going(
    streams: tuple[StreamsApp, Sent],
) -> None:
    app, sent = streams
    predictions, dead_letters = _topics(app)
    async with app.score_agent.test_context() as agent:
        await agent.put(b"\x00poison", key=b"p", wait=False)
        await agent.put(_request("after"), key=b"after", wait=False)
        await sent.wait_for(predictions, 2)
        await sent.wait_for(dead_letters, 1)
    letter = DeadLetter.from_bytes(sent.on(dead_letters)[0].value)
    assert letter.original == b"\x00poison"
    assert "PredictionRequest" in letter.error
    by_id = {
        Prediction.from_bytes(m.value).request_id: Prediction.from_bytes(m.value)
        for m in sent.on(predictions)
    }
    assert by_id["after"].label == "setosa"
    assert by_id["p"].error_code == "invalid_request"
    labels = {
        "topic": app.requests.get_topic_name(),
        "reason": "undecodable",
        "consumer": "streams.scoring",
    }
    assert app.metrics.registry.get_sample_value("irisflow_dead_letters_total", labels) == 1.0


async def test_a_hot_swap_changes_the_version_of_later_answers(
    streams: tuple[StreamsApp, Sent],
) -> None:
    app, sent = streams
    predictions, _ = _topics(app)
    async with app.score_agent.test_context() as agent:
        await agent.put(_request("before"), key=b"before", wait=False)
        await sent.wait_for(predictions, 1)
        assert await app.holder.apply(model_update(3, kind="naive_bayes"))
        await agent.put(_request("after"), key=b"after", wait=False)
        await sent.wait_for(predictions, 2)
    versions = {
        Prediction.from_bytes(m.value).request_id: Prediction.from_bytes(m.value).model_version
        for m in sent.on(predictions)
    }
    assert versions == {"before": 2, "after": 3}


async def test_a_version_that_fails_to_load_is_refused_and_the_current_one_keeps_serving(
    streams: tuple[StreamsApp, Sent],
) -> None:
    app, _ = streams
    good = model_update(5)
    forged = model_update(6, artifact=good.artifact, sha256="0" * 64)
    assert await app.holder.apply(good)
    assert not await app.holder.apply(forged)
    assert app.holder.current is not None
    assert app.holder.current.version == 5
    assert app.holder.refused[0][0] == 6


async def test_with_no_model_requests_are_answered_with_an_error_not_dropped(
    streams: tuple[StreamsApp, Sent],
) -> None:
    app, sent = streams
    predictions, _ = _topics(app)
    app.holder.current = None
    async with app.score_agent.test_context() as agent:
        await agent.put(_request("early"), key=b"early", wait=False)
        await sent.wait_for(predictions, 1)
    answer = Prediction.from_bytes(sent.on(predictions)[0].value)
    assert (answer.request_id, answer.error_code) == ("early", "no_model")
