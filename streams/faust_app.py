"""The Faust app of a worker and the sink that hands its records to the producer.

Kept apart from the wiring (:mod:`streams.app`): this is how the worker talks to Kafka (client
settings, raw topics, prebuilt produce batches), the wiring is what flows where.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
from faust.types.auth import CredentialsT

from irisflow.kafka.clients import (
    PRODUCER_POLICY,
    aiokafka_producer_of,
    faust_producer_class,
    ssl_context,
)
from irisflow.settings import KafkaSettings, Settings
from irisflow.topics import Outgoing

__all__ = ["RAW", "Sink", "broker_credentials", "faust_app", "producer_sink"]

log = logging.getLogger(__name__)

Sink = Callable[[Sequence[Outgoing]], Awaitable[Sequence["asyncio.Future[Any]"]]]
"""Hands records to the producer; returns their delivery futures (the lane commits on them)."""

_PREBUILT_BATCH = 64
"""Records for one topic-partition from which a prebuilt batch beats ``send()`` per record."""

RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
"""Topic options: raw bytes in and out, so a malformed record reaches our own decoder."""


def broker_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """``kafka.security`` as Faust takes it (``None``: plain text)."""
    security = kafka.security
    if security.sasl:
        password = security.sasl_password
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=security.sasl_mechanism,
            ssl_context=ssl_context(kafka),
        )
    if security.tls:
        return faust.SSLCredentials(ssl_context(kafka))
    return None


class _App(faust.App):
    """A Faust app whose producer follows the delivery policy (idempotent, ``acks=all``)."""

    def _new_producer(self) -> Any:
        return faust_producer_class()(self.transport, loop=self.loop, beacon=self.beacon)


def faust_app(settings: Settings) -> faust.App:
    kafka = settings.kafka
    datadir = settings.home / "worker" / str(settings.worker.port)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    session = settings.streams.session_timeout_seconds
    return _App(
        f"{kafka.app_id}-streams",
        broker=[f"kafka://{server}" for server in kafka.bootstrap_servers.split(",")],
        broker_credentials=broker_credentials(kafka),
        autodiscover=False,
        store="memory://",
        datadir=str(datadir),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor or 1,  # resolved by run_worker
        table_standby_replicas=0,
        broker_session_timeout=session,
        # A heartbeat a second (at the default 6 s session): a killed worker's partitions move
        # after at most session + one heartbeat.
        broker_heartbeat_interval=min(3.0, session / 6),
        producer_max_request_size=kafka.max_message_bytes,
        producer_max_batch_size=1024 * 1024,
        consumer_max_fetch_size=kafka.max_message_bytes,
        consumer_auto_offset_reset="earliest",
        producer_linger=0.0,  # answers leave at once: a linger is paid by every request
        # Answers, labeled samples, alarms, dead letters and join-table changes follow the
        # delivery policy: every in-sync replica, idempotent (the app's producer class), one
        # request to one broker bounded like every producer's (Faust's default is 20 minutes;
        # an idempotent batch is retried until delivered whatever this says).
        producer_acks=-1,
        producer_request_timeout=PRODUCER_POLICY["request_timeout_ms"] / 1000,
        # At least once, committed after the producer is flushed; no transactions, so the
        # consumer reads uncommitted data (exactly_once would switch both).
        processing_guarantee="at_least_once",
        web_enabled=True,
        # Faust's own pages would expose join entries (features, labels) and routing: off.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_host=settings.worker.host,
        web_port=settings.worker.port,
        web_in_thread=False,
    )


def producer_sink(app: faust.App) -> Sink:
    """Hand a batch's records to the producer without waiting for their delivery.

    Many records for one topic-partition go as one prebuilt Kafka batch (~5 µs a record against
    ~15 µs for ``send()``); a few go through ``send()``, which appends to the batch already
    open instead of waiting for the previous one to drain. A failed delivery (after aiokafka's
    retries) stops the worker loudly.
    """
    crashing: set[asyncio.Future[Any]] = set()

    def check(future: asyncio.Future[Any]) -> None:
        error = None if future.cancelled() else future.exception()
        if error is not None:
            log.error("producing failed, stopping the worker: %r", error)
            crashing.add(asyncio.ensure_future(app.crash(error)))

    async def send(messages: Sequence[Outgoing]) -> list[asyncio.Future[Any]]:
        producer = aiokafka_producer_of(app)
        by_partition: dict[tuple[str, int | None], list[Outgoing]] = defaultdict(list)
        for m in messages:
            by_partition[(m.topic, m.partition)].append(m)
        futures = []
        for (topic, partition), records in by_partition.items():
            if partition is None or len(records) < _PREBUILT_BATCH:
                for m in records:
                    headers = list(m.headers) or None
                    futures.append(
                        await producer.send(topic, m.value, m.key, partition, headers=headers)
                    )
                continue
            batch = producer.create_batch()
            for m in records:
                headers = list(m.headers)
                if batch.append(key=m.key, value=m.value, timestamp=None, headers=headers) is None:
                    batch.close()
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=m.key, value=m.value, timestamp=None, headers=headers)
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        for future in futures:
            future.add_done_callback(check)
        return futures

    return send
