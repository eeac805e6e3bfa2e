"""A publish that outlasts its timeout (a leader election) is a 503, but not the end of it.

The idempotent producer keeps a record it could not deliver yet and delivers it once a leader
is back, so the request may still be answered; that answer is kept for a retry of the id.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.bridge import Answer, KafkaBridge
from irisflow.errors import KafkaUnavailable
from irisflow.schemas import Prediction, PredictionRequest
from irisflow.settings import KafkaSettings
from tests.factories import SETOSA


class StalledProducer:
    """A producer whose partition has no leader yet: every send waits for one."""

    async def send_and_wait(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.Event().wait()


async def test_an_answer_to_a_request_whose_publish_timed_out_is_kept_for_its_retry() -> None:
    late: list[tuple[str, str, Answer]] = []
    bridge = KafkaBridge(KafkaSettings(), on_late=lambda rid, c, a, _: late.append((rid, c, a)))
    bridge._producer = StalledProducer()
    request = PredictionRequest(request_id="r1", features=SETOSA, input_digest="single:d")
    with pytest.raises(KafkaUnavailable, match="could not publish"):
        await bridge.request(request, context="fingerprint", timeout=0.05)
    answer = Prediction(
        request_id="r1", label="setosa", model_version=1, input_digest="single:d"
    ).to_bytes()
    bridge.deliver("r1", answer)
    assert [(rid, context) for rid, context, _ in late] == [("r1", "fingerprint")]
