"""aiokafka producers and consumers configured once for irisflow's message sizes and delivery.

This is the only module that reaches into client internals (a metadata refresh, the bootstrap
address, the producer under Faust's), and it holds the only group-less follow of a whole topic.

Producers wait for every in-sync replica (``acks=all``) and are idempotent: an accepted request,
feedback, admin command or dead letter survives a leader failover and is not duplicated by the
producer's own retries (docs/architecture.md, delivery policy).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from irisflow.errors import KafkaUnavailable
from irisflow.settings import KafkaSettings
from irisflow.topics import Outgoing

__all__ = [
    "TopicMissing",
    "aiokafka_producer_of",
    "answers_metadata",
    "assign_all",
    "behind",
    "connection_options",
    "make_consumer",
    "make_producer",
    "send",
    "ssl_context",
]


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of ``kafka.security`` (``None`` in plain text)."""
    security = kafka.security
    if not security.tls:
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(security.ssl_cafile) if security.ssl_cafile else None,
        certfile=str(security.ssl_certfile) if security.ssl_certfile else None,
        keyfile=str(security.ssl_keyfile) if security.ssl_keyfile else None,
    )
    return context


def connection_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Where the cluster is and how to authenticate: what every aiokafka client of irisflow
    (producers, consumers, admin clients) is built with."""
    security = kafka.security
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": security.protocol,
    }
    if security.tls:
        options["ssl_context"] = ssl_context(kafka)
    if security.sasl:
        options["sasl_mechanism"] = security.sasl_mechanism
        options["sasl_plain_username"] = security.sasl_username
        password = security.sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def make_producer(kafka: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that can carry model artifacts: ``acks=all``, idempotent, no linger.

    Since aiokafka 0.14 every new batch waits ``linger_ms`` (as in the Java client), so any
    linger is paid on each request-reply hop; records produced together still share a batch.
    """
    options: dict[str, Any] = {
        **connection_options(kafka),
        "max_request_size": kafka.max_message_bytes,
        "acks": "all",
        "linger_ms": 0,
        "enable_idempotence": True,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(kafka: KafkaSettings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer whose fetch limits fit the largest message the topics accept."""
    options: dict[str, Any] = {
        **connection_options(kafka),
        "max_partition_fetch_bytes": kafka.max_message_bytes,
        "fetch_max_bytes": max(52428800, kafka.max_message_bytes),
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def send(producer: AIOKafkaProducer, record: Outgoing) -> int | None:
    """Produce one record (with its headers), wait for the broker's acknowledgement, and say
    which partition took it (``None`` if the producer did not say)."""
    metadata = await producer.send_and_wait(
        record.topic,
        value=record.value,
        key=record.key,
        partition=record.partition,
        headers=list(record.headers) or None,
    )
    partition = getattr(metadata, "partition", None)
    return int(partition) if partition is not None else None


class TopicMissing(KafkaUnavailable):
    """The topic a follower was asked to read does not exist (within its deadline)."""


async def assign_all(
    consumer: AIOKafkaConsumer,
    topic: str,
    *,
    start: Literal["beginning", "end"],
    timeout: float | None = 30.0,
) -> list[TopicPartition]:
    """Make ``consumer`` (started, no group) follow every partition of ``topic`` from its
    beginning or its end: the one group-less follow every reader of a whole topic uses (model
    feeds, the gateway's replies, ``irisflow dlq``).

    Waits for the topic's metadata (refreshing it: a topic created a moment ago is not in a new
    consumer's metadata yet) up to ``timeout`` seconds (``None``: for ever), then resolves every
    position at once so no record produced after this call can slip past.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            break
        if deadline is not None and loop.time() > deadline:
            raise TopicMissing(
                f"topic {topic} does not exist at {consumer._client._bootstrap_servers}: "
                "create the topics with `irisflow kafka topics`"
            )
        await asyncio.sleep(0.2)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    if start == "beginning":
        await consumer.seek_to_beginning(*tps)
    else:
        await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    return tps


async def behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether ``consumer`` has not yet read up to ``ends`` (end offsets taken earlier)."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


def aiokafka_producer_of(faust_app: Any) -> AIOKafkaProducer:
    """The aiokafka producer under a Faust app's producer: the one Faust flushes before it
    commits source offsets (so records sent through it are covered by Faust's commits)."""
    producer: AIOKafkaProducer = faust_app.producer._ensure_producer()
    return producer


async def answers_metadata(producer: AIOKafkaProducer, *, timeout: float) -> bool:
    """Whether a broker answers ``producer``'s metadata request within ``timeout`` seconds
    (a readiness probe that reuses a connected client instead of opening a new one)."""
    try:
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)
    except (KafkaError, TimeoutError, OSError):
        return False
    return True
