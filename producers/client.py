"""A small async client for publishing requests and feedback, usable from any Python program."""

from __future__ import annotations

import uuid
from types import TracebackType

from aiokafka import AIOKafkaProducer

from irisflow.kafka.clients import make_producer
from irisflow.schemas import BatchPredictionRequest, Feedback, PredictionRequest
from irisflow.settings import KafkaSettings

__all__ = ["IrisflowProducer"]


class IrisflowProducer:
    """``async with IrisflowProducer(settings.kafka) as p: await p.request({...})``."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
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
        await self._producer.send(
            self._kafka.topics.requests, key=message.request_id.encode(), value=message.to_bytes()
        )
        return message.request_id

    async def request_batch(
        self, instances: list[dict[str, float]], *, request_id: str | None = None
    ) -> str:
        """Publish many instances in one message (one answer with one entry per instance)."""
        message = BatchPredictionRequest(
            request_id=request_id or uuid.uuid4().hex, instances=instances
        )
        await self._producer.send(
            self._kafka.topics.requests, key=message.request_id.encode(), value=message.to_bytes()
        )
        return message.request_id

    async def feedback(self, request_id: str, label: str) -> None:
        message = Feedback(request_id=request_id, label=label)
        await self._producer.send(
            self._kafka.topics.feedback, key=request_id.encode(), value=message.to_bytes()
        )

    async def flush(self) -> None:
        await self._producer.flush()
