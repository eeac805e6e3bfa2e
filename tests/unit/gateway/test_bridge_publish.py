"""The gateway produces through the topic codecs: topic, key and encoding are chosen in one place
(:class:`irisflow.topics.Topic`), never rebuilt by hand in the bridge or a route."""

from __future__ import annotations

from typing import Any

from gateway.bridge import KafkaBridge
from irisflow.schemas import Feedback, PredictionRequest
from irisflow.settings import KafkaSettings
from irisflow.topics import Outgoing, Topics
from tests.factories import SETOSA


class _Producer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, **record: Any) -> None:
        self.sent.append({"topic": topic, **record})


def _bridge() -> tuple[KafkaBridge, _Producer]:
    bridge = KafkaBridge(KafkaSettings())
    producer = _Producer()
    bridge._producer = producer
    return bridge, producer


async def test_a_request_is_produced_as_its_topic_encodes_it() -> None:
    bridge, producer = _bridge()
    request = PredictionRequest(request_id="r1", features=SETOSA, input_digest="single:x")
    await bridge.submit(request, context="c", timeout=1.0)
    record = Topics.of(KafkaSettings()).requests.record(request)
    assert producer.sent == [
        {
            "topic": record.topic,
            "key": record.key,
            "value": record.value,
            "partition": None,
            "headers": None,
        }
    ]


async def test_the_bridge_publishes_the_record_its_topic_builds() -> None:
    """A codec change (a header, another key) reaches the wire without touching the bridge."""
    bridge, producer = _bridge()
    original = bridge.topics.requests.record

    def record(message: Any, **kwargs: Any) -> Outgoing:
        built = original(message, **kwargs)
        return Outgoing(built.topic, b"codec-key", built.value, None, (("codec", b"1"),))

    bridge.topics.requests.record = record  # type: ignore[method-assign]
    request = PredictionRequest(request_id="r2", features=SETOSA)
    await bridge.submit(request, context="c", timeout=1.0)
    assert [(s["key"], s["headers"]) for s in producer.sent] == [(b"codec-key", [("codec", b"1")])]


async def test_feedback_is_published_as_its_topic_encodes_it() -> None:
    bridge, producer = _bridge()
    message = Feedback(request_id="r3", label="setosa", labeled_at=1.0)
    await bridge.publish(bridge.topics.feedback.record(message), timeout=1.0)
    assert producer.sent[0]["topic"] == KafkaSettings().topics.feedback
    assert producer.sent[0]["key"] == b"r3"
    assert producer.sent[0]["value"] == message.to_bytes()
