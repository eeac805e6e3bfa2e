"""aiokafka producers and consumers configured once for irisflow's message sizes and delivery.

This is the only module that reaches into client internals (a metadata refresh, the bootstrap
address, the producer under Faust's), and it holds the only group-less follow of a whole topic.

It is also the one place of the delivery policy (docs/architecture.md, "Delivery policy"):
every producer waits for every in-sync replica (``acks=all``) and is idempotent, so an accepted
request, an answer, feedback, a labeled sample, a model version, an admin command or a dead
letter survives a leader failover and is not duplicated by the producer's own retries; every
consumer commits by hand after the work is done and reads uncommitted data (no transactions
anywhere). An idempotent producer never expires a batch: it retries a retriable error (no
leader, not enough replicas, a broker gone) until the record is on the broker, across any
leader election. Whoever must answer sooner bounds the wait itself (the gateway's publish
timeout) and treats the outcome as unknown: the record may still land.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import ConsumerRecord

from irisflow.errors import KafkaUnavailable
from irisflow.kafka import rebootstrap
from irisflow.settings import KafkaSettings
from irisflow.topics import DeadLetters, Incoming, Outgoing, Reason, Refused

rebootstrap.install()  # every client of the process, Faust's too: see irisflow/kafka/rebootstrap.py

__all__ = [
    "CONSUMER_POLICY",
    "FAUST_PRODUCER_POLICY",
    "PRODUCER_POLICY",
    "LetterBox",
    "TopicMissing",
    "aiokafka_producer_of",
    "answers_metadata",
    "assign_all",
    "behind",
    "connection_options",
    "faust_producer_class",
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


PRODUCER_POLICY: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "acks": "all",
        "enable_idempotence": True,
        "request_timeout_ms": 40_000,
        "retry_backoff_ms": 100,
        "metadata_max_age_ms": 300_000,
        "linger_ms": 0,
    }
)
"""Every producer's delivery settings. ``acks=all`` + idempotence: acknowledged only once every
in-sync replica has the record (``min.insync.replicas`` of them at least), retried with
sequence numbers so a retry cannot write it twice, in order per partition, and never given up
on (aiokafka does not expire an idempotent batch). ``request_timeout_ms`` bounds one request to
one broker (a stalled broker is left for another leader), ``retry_backoff_ms`` paces retries
while metadata names a new leader (a stale leader answers ``NOT_LEADER`` and the client
refreshes at once; ``metadata_max_age_ms`` is only the unprompted refresh). No linger: since
aiokafka 0.14 every new batch waits ``linger_ms``, paid on each request-reply hop."""

FIXED_PRODUCER = ("acks", "enable_idempotence")

CONSUMER_POLICY: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "isolation_level": "read_uncommitted",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "request_timeout_ms": 40_000,
        "retry_backoff_ms": 100,
        "metadata_max_age_ms": 300_000,
    }
)
"""Every consumer's delivery settings. Offsets are committed by hand, after the work they
stand for is on the broker (at-least-once). ``read_uncommitted``: no producer of irisflow uses
transactions, so there is nothing to hide; a transactional producer would need
``read_committed`` here. A fetch from a leader that went away fails and is retried against the
new one after a metadata refresh."""

FIXED_CONSUMER = ("isolation_level", "enable_auto_commit")

FAUST_PRODUCER_POLICY: Final[Mapping[str, Any]] = MappingProxyType(
    {key: PRODUCER_POLICY[key] for key in ("acks", "enable_idempotence", "retry_backoff_ms")}
)
"""What Faust's producer gets on top of its own settings (:func:`faust_producer_class`); its
request timeout and linger are Faust settings (``producer_request_timeout``, ``producer_linger``),
set from :data:`PRODUCER_POLICY` by the worker's app."""


def _refuse_weakening(overrides: Mapping[str, Any], fixed: tuple[str, ...], kind: str) -> None:
    weakened = sorted(key for key in fixed if key in overrides)
    if weakened:
        raise ValueError(
            f"{', '.join(weakened)} of a {kind} are the delivery policy's "
            "(irisflow.kafka.clients); they cannot be overridden per client"
        )


def make_producer(kafka: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that can carry model artifacts, under :data:`PRODUCER_POLICY` (``overrides``
    may change timeouts, linger or compression, never ``acks`` or idempotence)."""
    _refuse_weakening(overrides, FIXED_PRODUCER, "producer")
    options: dict[str, Any] = {
        **connection_options(kafka),
        "max_request_size": kafka.max_message_bytes,
        **PRODUCER_POLICY,
        **overrides,
    }
    return AIOKafkaProducer(**options)


def make_consumer(kafka: KafkaSettings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer whose fetch limits fit the largest message the topics accept, under
    :data:`CONSUMER_POLICY` (``overrides`` may not change isolation or commit by hand)."""
    _refuse_weakening(overrides, FIXED_CONSUMER, "consumer")
    options: dict[str, Any] = {
        **connection_options(kafka),
        "max_partition_fetch_bytes": kafka.max_message_bytes,
        "fetch_max_bytes": max(52428800, kafka.max_message_bytes),
        **CONSUMER_POLICY,
        **overrides,
    }
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


log = logging.getLogger(__name__)


class LetterBox:
    """The dead letters of one group-less follower (the model feed, the rollout follower).

    Its producer starts with the first letter: most followers never refuse a record, and a
    follower must not hold a connection for nothing. A letter that cannot be sent is logged
    and dropped, never raised: a follower that stopped on it would leave its process without
    model or rollout updates, which is worse than one lost letter (the refusal is logged)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        consumer: str,
        *,
        on_letter: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self._kafka = kafka
        self._letters = DeadLetters.to(kafka, consumer, on_letter=on_letter)
        self._producer: AIOKafkaProducer | None = None
        self.consumer_name = consumer

    async def refused(self, record: ConsumerRecord[bytes, bytes], refusal: Refused) -> None:
        """Dead-letter a record that could not be decoded, with the refusal's reason."""
        await self.post(
            Incoming.of(record),
            source_topic=record.topic,
            reason=refusal.reason,
            error=str(refusal),
            what=f"offset {record.offset}",
        )

    async def post(
        self, record: Incoming, *, source_topic: str, reason: Reason | str, error: str, what: str
    ) -> None:
        """Dead-letter ``record`` (``what`` names it in the log if the letter cannot be sent)."""
        letter = self._letters.letter(record, source_topic=source_topic, reason=reason, error=error)
        try:
            if self._producer is None:
                producer = make_producer(self._kafka)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            await send(self._producer, letter)
        except Exception as exc:
            log.error("%s: could not dead-letter %s: %r", self.consumer_name, what, exc)

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()


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


@functools.cache
def faust_producer_class() -> type:
    """Faust's aiokafka producer under the delivery policy.

    Faust makes its producer idempotent only inside transactions (``processing_guarantee=
    "exactly_once"``, which irisflow does not use); outside them it retries without sequence
    numbers, so a send retried across a leader election can write an answer, a labeled sample
    or a join-table change twice. This subclass adds :data:`FAUST_PRODUCER_POLICY` to the
    settings Faust builds (imported here, lazily: only workers run Faust).
    """
    from faust.transport.drivers.aiokafka import Producer

    class PolicyProducer(Producer):
        def _settings_extra(self) -> Mapping[str, Any]:
            return {**super()._settings_extra(), **FAUST_PRODUCER_POLICY}

    return PolicyProducer


async def answers_metadata(producer: AIOKafkaProducer, *, timeout: float) -> bool:
    """Whether a broker answers ``producer``'s metadata request within ``timeout`` seconds
    (a readiness probe that reuses a connected client instead of opening a new one)."""
    try:
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)
    except (KafkaError, TimeoutError, OSError):
        return False
    return True
