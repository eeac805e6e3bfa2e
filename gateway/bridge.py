"""HTTP ↔ Kafka request-reply: send a request, wait for its prediction, with a timeout.

Replies are routed by request id. Each gateway replica reads the whole predictions topic with no
consumer group (all partitions, from the end at start-up) and completes only the futures it is
waiting on; the others are ignored. That costs every replica a read of every prediction (cheap:
a JSON header check per record), and buys replicas that share nothing and need no reply topic
of their own. ``reply_to`` in the request names the replica for audit and debugging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from irisflow.errors import KafkaUnavailable, PredictionFailed, PredictionTimeout, SchemaError
from irisflow.kafka.clients import make_consumer, make_producer
from irisflow.schemas import Prediction, PredictionRequest
from irisflow.settings import KafkaSettings

__all__ = ["KafkaBridge"]

log = logging.getLogger(__name__)


class KafkaBridge:
    """One producer and one group-less reply reader per gateway process."""

    def __init__(self, kafka: KafkaSettings, *, instance_id: str | None = None) -> None:
        self.kafka = kafka
        self.instance_id = instance_id or f"gw-{uuid.uuid4().hex[:8]}"
        self._pending: dict[str, asyncio.Future[Prediction]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._producer = make_producer(self.kafka, request_timeout_ms=5000)
        await self._producer.start()
        self._consumer = make_consumer(self.kafka, group_id=None)
        await self._consumer.start()
        topic = self.kafka.topics.predictions
        partitions = self._consumer.partitions_for_topic(topic)
        while not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(topic)
            if not partitions:
                await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, so no reply can slip past
            await self._consumer.position(tp)
        self._reader = asyncio.create_task(self._read_replies(), name="gateway-replies")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for pending in self._pending.values():
            pending.cancel()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def _read_replies(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    rid = record.key.decode(errors="replace") if record.key else None
                    waiter = self._pending.get(rid) if rid else None
                    if waiter is None or waiter.done():
                        continue
                    try:
                        waiter.set_result(Prediction.from_bytes(record.value))
                    except SchemaError as exc:
                        waiter.set_exception(exc)

    async def predict(self, request: PredictionRequest, *, timeout: float) -> Prediction:
        """Publish ``request`` and wait for its answer; raise a typed error otherwise."""
        if self._producer is None:
            raise KafkaUnavailable("the gateway is not connected to Kafka yet")
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        rid = request.request_id
        self._pending[rid] = future
        try:
            try:
                await asyncio.wait_for(
                    self._producer.send_and_wait(
                        self.kafka.topics.requests, key=rid.encode(), value=request.to_bytes()
                    ),
                    timeout=timeout,
                )
            except (KafkaError, TimeoutError) as exc:
                raise KafkaUnavailable(
                    f"could not publish to {self.kafka.topics.requests} at "
                    f"{self.kafka.bootstrap_servers}: {exc!r}"
                ) from exc
            try:
                answer = await asyncio.wait_for(future, timeout=timeout)
            except TimeoutError as exc:
                raise PredictionTimeout(
                    f"no worker answered request {rid} within {timeout:g}s: check that "
                    "`irisflow worker` is running and keeping up"
                ) from exc
        finally:
            self._pending.pop(rid, None)
        if answer.error is not None:
            raise PredictionFailed(answer.error, code=answer.error_code or "invalid_request")
        return answer
