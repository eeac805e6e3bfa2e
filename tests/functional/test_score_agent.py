"""The score agent inside Faust, without a broker (``agent.test_context()``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from irisflow.registry import deserialize_model
from irisflow.schemas import DeadLetter, Prediction, PredictionRequest
from streams.app import StreamsApp, build_app
from streams.scoring import LiveModel
from tests.conftest import SettingsFactory
from tests.factories import SETOSA, model_update


class Sent:
    """Collects what the agent sends to a topic."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes | None, bytes]] = []

    async def send(self, *, key: bytes | None = None, value: bytes, **_: Any) -> None:
        self.messages.append((key, value))

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.messages) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {count} messages, got {len(self.messages)}")
            await asyncio.sleep(0.01)


@pytest.fixture
async def streams(make_settings: SettingsFactory) -> tuple[StreamsApp, Sent, Sent]:
    settings = make_settings(**{"scoring.batch_size": 10, "scoring.batch_linger_seconds": 0.05})
    app = build_app(settings)
    update = model_update(2)
    app.holder.current = LiveModel(
        update.metadata(), deserialize_model(update.artifact, sha256=update.sha256)
    )
    app.feed.caught_up.set()
    predictions, dead = Sent(), Sent()
    app.predictions.send = predictions.send  # type: ignore[method-assign]
    app.dead_letters.send = dead.send  # type: ignore[method-assign]
    return app, predictions, dead


def _request(request_id: str) -> bytes:
    return PredictionRequest(request_id=request_id, features=SETOSA).to_bytes()


async def test_the_agent_answers_every_request_of_a_batch(
    streams: tuple[StreamsApp, Sent, Sent],
) -> None:
    app, predictions, _ = streams
    async with app.score_agent.test_context() as agent:
        for i in range(25):
            await agent.put(_request(f"r{i}"), key=f"r{i}".encode(), wait=False)
        await predictions.wait_for(25)
    answers = [Prediction.from_bytes(value) for _, value in predictions.messages]
    assert sorted(a.request_id for a in answers) == sorted(f"r{i}" for i in range(25))
    assert {a.label for a in answers} == {"setosa"}
    assert {a.model_version for a in answers} == {2}
    assert all(
        key == a.request_id.encode()
        for (key, _), a in zip(predictions.messages, answers, strict=True)
    )


async def test_a_poison_message_is_dead_lettered_and_the_agent_keeps_going(
    streams: tuple[StreamsApp, Sent, Sent],
) -> None:
    app, predictions, dead = streams
    async with app.score_agent.test_context() as agent:
        await agent.put(b"\x00poison", key=b"p", wait=False)
        await agent.put(_request("after"), key=b"after", wait=False)
        await predictions.wait_for(2)
        await dead.wait_for(1)
    letter = DeadLetter.from_bytes(dead.messages[0][1])
    assert letter.original == b"\x00poison"
    assert "PredictionRequest" in letter.error
    by_id = {
        Prediction.from_bytes(v).request_id: Prediction.from_bytes(v)
        for _, v in predictions.messages
    }
    assert by_id["after"].label == "setosa"
    assert by_id["p"].error_code == "invalid_request"
    samples = app.metrics.registry.get_sample_value(
        "irisflow_dead_letters_total", {"source": app.requests.get_topic_name()}
    )
    assert samples == 1.0


async def test_a_hot_swap_changes_the_version_of_later_answers(
    streams: tuple[StreamsApp, Sent, Sent],
) -> None:
    app, predictions, _ = streams
    async with app.score_agent.test_context() as agent:
        await agent.put(_request("before"), key=b"before", wait=False)
        await predictions.wait_for(1)
        assert await app.holder.apply(model_update(3, kind="naive_bayes"))
        await agent.put(_request("after"), key=b"after", wait=False)
        await predictions.wait_for(2)
    versions = {
        Prediction.from_bytes(v).request_id: Prediction.from_bytes(v).model_version
        for _, v in predictions.messages
    }
    assert versions == {"before": 2, "after": 3}


async def test_a_version_that_fails_to_load_is_refused_and_the_current_one_keeps_serving(
    streams: tuple[StreamsApp, Sent, Sent],
) -> None:
    app, _, _ = streams
    good = model_update(5)
    forged = model_update(6, artifact=good.artifact, sha256="0" * 64)
    assert await app.holder.apply(good)
    assert not await app.holder.apply(forged)
    assert app.holder.current is not None
    assert app.holder.current.version == 5
    assert app.holder.refused[0][0] == 6
