"""A fake Kafka bridge for fast tests of the gateway's predict path (no broker).

:class:`FakeBridge` is the real :class:`~gateway.bridge.KafkaBridge` except for ``publish``:
records go into a list, and a fake worker answers each request after ``delay`` seconds through
the bridge's own ``deliver`` (echoing ``input_digest`` as the real workers do), so waiting, late
answers and digest checks are the gateway's own code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway import predicting
from gateway.bodies import Accepted
from gateway.bridge import KafkaBridge
from irisflow.errors import KafkaUnavailable
from irisflow.schemas import (
    MatrixPrediction,
    MatrixPredictionRequest,
    Prediction,
    PredictionRequest,
)
from irisflow.topics import AnyRequest, Outgoing, decode_request

__all__ = ["PROBS", "FakeBridge", "FakeScoring", "ScoringFactory"]

PROBS = {"setosa": 0.9, "versicolor": 0.05, "virginica": 0.05}


class FakeBridge(KafkaBridge):
    """Publishes into ``published``; a worker answers each request after ``delay`` seconds."""

    def __init__(
        self, *args: Any, delay: float = 0.05, silent: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.published: list[AnyRequest] = []
        self.delay = delay
        self.no_model = False  # the worker answers no_model (nothing is live there yet)
        self.refusal: str | None = None  # the worker refuses each request with this error code
        self.failing = 0  # how many publishes fail next, as with an unreachable broker
        self.silent = silent  # the worker never answers (a timeout, then a late answer)

    async def publish(self, record: Outgoing, *, timeout: float) -> None:
        await asyncio.sleep(0.01)  # a broker round trip, during which others may call
        if self.failing > 0:
            self.failing -= 1
            raise KafkaUnavailable("no broker answered")
        request = decode_request(record.value)
        assert isinstance(request, PredictionRequest | MatrixPredictionRequest)
        self.published.append(request)
        if not self.silent:
            loop = asyncio.get_running_loop()
            loop.call_later(self.delay, self.answer, request)

    def answer(self, request: AnyRequest) -> None:
        """What a worker answers to ``request`` (now, whoever waits); a matrix row is
        ``setosa`` when its first value is below 6, else ``virginica``."""
        if self.refusal is not None:
            refused = Prediction(
                request_id=request.request_id,
                error=f"the worker refused it ({self.refusal})",
                error_code=self.refusal,
                input_digest=request.input_digest,
            )
            self.deliver(request.request_id, refused.to_bytes())
            return
        if isinstance(request, MatrixPredictionRequest) and not self.no_model:
            labels = ["setosa" if row[0] < 6 else "virginica" for row in request.rows]
            matrix = MatrixPrediction(
                request_id=request.request_id,
                model_version=1,
                classes=list(PROBS),
                labels=labels,
                probabilities=[list(PROBS.values())[:: 1 if s == "setosa" else -1] for s in labels],
                input_digest=request.input_digest,
            )
            self.deliver(request.request_id, matrix.to_bytes())
            return
        if self.no_model:
            answer = Prediction(
                request_id=request.request_id,
                error="no model is live",
                error_code="no_model",
                input_digest=request.input_digest,
            )
        else:
            answer = Prediction(
                request_id=request.request_id,
                label="setosa",
                probabilities=PROBS,
                model_version=1,
                input_digest=request.input_digest,
            )
        self.deliver(request.request_id, answer.to_bytes())


@dataclass(frozen=True)
class FakeScoring(predicting.Scoring):
    """The predict path over a :class:`FakeBridge`, with the two calls the routes make."""

    @property
    def fake(self) -> FakeBridge:
        assert isinstance(self.bridge, FakeBridge)
        return self.bridge

    @property
    def published(self) -> list[AnyRequest]:
        return self.fake.published

    async def predict(self, features: Any, rid: str | None) -> Any:
        return await predicting.predict(scoring=self, payload=features, request_id=rid)

    async def accept(self, features: Any, rid: str | None) -> Accepted:
        return await predicting.accept(scoring=self, payload=features, request_id=rid)


ScoringFactory = Callable[..., FakeScoring]
"""The ``make_scoring`` fixture: ``make_scoring(delay=…, timeout=…, silent=…)``."""
