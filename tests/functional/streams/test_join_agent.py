"""The feedback agent and the join table inside Faust, without a broker."""

from __future__ import annotations

import pytest

from irisflow.schemas import DeadLetter, Feedback, LabeledSample, PredictionRequest
from streams.app import StreamsApp
from tests.conftest import SettingsFactory
from tests.factories import SETOSA
from tests.functional.streams.test_score_agent import Sent, agent_app


@pytest.fixture
async def streams(make_settings: SettingsFactory) -> tuple[StreamsApp, Sent]:
    return agent_app(make_settings, version=7)


async def test_feedback_meets_its_prediction_in_the_faust_table(
    streams: tuple[StreamsApp, Sent],
) -> None:
    app, sent = streams
    names = app.pipeline.topics
    request = PredictionRequest(request_id="r1", features=SETOSA)
    async with app.score_agent.test_context() as scorer:
        await scorer.put(request.to_bytes(), key=b"r1", partition=1, wait=False)
        await sent.wait_for(names.predictions, 1)
    assert b"r1" in app.table.data
    changelog = app.table.changelog_topic.get_topic_name()
    assert [(m.key, m.partition) for m in sent.on(changelog)] == [(b"r1", 1)]
    feedback = Feedback(request_id="r1", label="versicolor")
    async with app.feedback_agent.test_context() as joiner:
        await joiner.put(feedback.to_bytes(), key=b"r1", partition=1, wait=False)
        await sent.wait_for(names.labeled, 1)
    sample = LabeledSample.from_bytes(sent.on(names.labeled)[0].value)
    assert (sample.true_label, sample.predicted_label, sample.model_version) == (
        "versicolor",
        "setosa",
        7,
    )
    assert sample.features == SETOSA


async def test_poison_feedback_is_dead_lettered_and_good_feedback_still_flows(
    streams: tuple[StreamsApp, Sent],
) -> None:
    app, sent = streams
    names = app.pipeline.topics
    async with app.feedback_agent.test_context() as joiner:
        await joiner.put(b"{broken", key=b"x", wait=False)
        await joiner.put(Feedback(request_id="y", label="setosa").to_bytes(), key=b"y", wait=False)
        await sent.wait_for(names.dead_letters, 1)
        await sent.wait_for(app.table.changelog_topic.get_topic_name(), 1)
    letter = DeadLetter.from_bytes(sent.on(names.dead_letters)[0].value)
    assert (letter.source_topic, letter.original) == (names.feedback, b"{broken")
    assert b"y" in app.table.data  # held until its prediction comes (or the window ends)
