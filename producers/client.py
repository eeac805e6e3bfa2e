"""irisflow's Python clients, from one import.

* over HTTP, for applications: :class:`IrisflowClient` / :class:`AsyncIrisflowClient` (the
  gateway's ``/v1`` API: predict, batches, feedback, the audit record, models) and
  :class:`InferenceClient` / :class:`AsyncInferenceClient` (the Open Inference Protocol v2:
  readiness, model metadata, infer with numpy arrays), each with batching helpers that cut
  any number of rows into calls;
* over Kafka, for traffic generators (``irisflow produce``): :class:`IrisflowProducer`, which
  publishes requests and feedback straight to the topics without waiting for answers.
"""

from __future__ import annotations

import uuid
from types import TracebackType

from aiokafka import AIOKafkaProducer

from irisflow.kafka.clients import make_producer
from irisflow.schemas import Feedback, PredictionRequest
from irisflow.settings import KafkaSettings
from irisflow.topics import Outgoing, Topics
from producers.errors import FieldProblem, GatewayError, GatewayUnreachable
from producers.inference import AsyncInferenceClient, InferenceClient
from producers.rest import AsyncIrisflowClient, IrisflowClient
from producers.results import (
    Accepted,
    BatchResult,
    FeedbackSent,
    InferResult,
    ModelCatalog,
    OipModel,
    PredictionRecord,
    PredictResult,
    RowResult,
)

__all__ = [
    "Accepted",
    "AsyncInferenceClient",
    "AsyncIrisflowClient",
    "BatchResult",
    "FeedbackSent",
    "FieldProblem",
    "GatewayError",
    "GatewayUnreachable",
    "InferResult",
    "InferenceClient",
    "IrisflowClient",
    "IrisflowProducer",
    "ModelCatalog",
    "OipModel",
    "PredictResult",
    "PredictionRecord",
    "RowResult",
]


class IrisflowProducer:
    """``async with IrisflowProducer(settings.kafka) as p: await p.request({...})``."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._topics = Topics.of(kafka)
        self._producer: AIOKafkaProducer = make_producer(kafka, linger_ms=5)

    async def __aenter__(self) -> IrisflowProducer:
        await self._producer.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._producer.stop()

    async def request(self, features: dict[str, float], *, request_id: str | None = None) -> str:
        """Publish one prediction request (buffered); returns its request id."""
        message = PredictionRequest(request_id=request_id or uuid.uuid4().hex, features=features)
        await self._buffer(self._topics.requests.record(message))
        return message.request_id

    async def feedback(self, request_id: str, label: str) -> None:
        """Publish the true label of an earlier request (buffered)."""
        await self._buffer(
            self._topics.feedback.record(Feedback(request_id=request_id, label=label))
        )

    async def flush(self) -> None:
        await self._producer.flush()

    async def _buffer(self, record: Outgoing) -> None:
        """Hand ``record`` to the producer without waiting for the broker (see :meth:`flush`)."""
        await self._producer.send(record.topic, key=record.key, value=record.value)
