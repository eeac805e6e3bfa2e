"""The Faust app. Read top to bottom, it is the flow: follow models, score, join, sweep, watch.

Agents stay thin: take a micro-batch of raw records, call :class:`streams.pipeline.Pipeline`,
produce what it returns. Raw bytes in and out (``value_serializer="raw"``) so a malformed
record reaches our own decoder, and is dead-lettered with a reason, instead of crashing Faust's.

Requests are read by the scoring lane (:mod:`streams.lane`, the default) or by a Faust agent
(``scoring.consumer: agent``). The lane runs inside this app as a task, reads the request
partitions matching the feedback partitions Faust assigned, and commits its own offsets; it
exists because Faust's per-message delivery capped single-request scoring at a few thousand
messages per second on our machines.

Delivery is at-least-once. Records are handed to the producer without waiting for each one
(a batch of 500 answers costs one round trip, not 500); Faust flushes the producer before it
commits source offsets, and the lane commits an offset only once its answers are acknowledged.
A worker killed before that commit has its partitions re-read by another worker, which
answers those requests again: consumers deduplicate by request id (docs/architecture.md).

Agent concurrency stays at 1: faust-streaming can commit past an in-flight message when it is
higher (faust-streaming#606). Scale with partitions and more ``irisflow worker`` processes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import EventT, StreamT
from prometheus_client import generate_latest

from irisflow.kafka.clients import aiokafka_producer_of, make_consumer
from irisflow.kafka.model_topic import ModelFeed
from irisflow.schemas import ModelUpdate
from irisflow.settings import Settings
from irisflow.topics import Incoming, Outgoing
from streams.lane import Handover, ScoringLane, partition_lags
from streams.metrics import WorkerMetrics
from streams.model_updates import ModelHolder
from streams.pipeline import Pipeline
from streams.rebalance import Rebalances

__all__ = ["Sink", "StreamsApp", "build_app"]

log = logging.getLogger(__name__)

Sink = Callable[[Sequence[Outgoing]], Awaitable[Sequence["asyncio.Future[Any]"]]]
"""Hands records to the producer; returns their delivery futures (the lane commits on them)."""

_PREBUILT_BATCH = 64
"""Records for one topic-partition from which a prebuilt batch beats ``send()`` per record."""

_RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


@dataclass
class StreamsApp:
    """The Faust app together with the plain objects its agents call."""

    app: faust.App
    holder: ModelHolder
    feed: ModelFeed
    metrics: WorkerMetrics
    pipeline: Pipeline
    table: Any
    score_agent: Any
    feedback_agent: Any
    requests: Any
    feedback: Any
    sink: Sink
    lane: ScoringLane | None


def _faust_app(settings: Settings) -> faust.App:
    kafka = settings.kafka
    datadir = settings.home / "worker" / str(settings.worker.port)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    session = settings.streams.session_timeout_seconds
    return faust.App(
        f"{kafka.app_id}-streams",
        broker=f"kafka://{kafka.bootstrap_servers}",
        autodiscover=False,
        store="memory://",
        datadir=str(datadir),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        table_standby_replicas=0,
        broker_session_timeout=session,
        broker_heartbeat_interval=min(3.0, session / 5),
        producer_max_request_size=kafka.max_message_bytes,
        producer_max_batch_size=1024 * 1024,
        consumer_max_fetch_size=kafka.max_message_bytes,
        consumer_auto_offset_reset="earliest",
        producer_linger=0.001,
        # Answers, labeled samples, alarms and dead letters wait for every in-sync replica.
        # Faust's producer is not idempotent outside transactions: a retried send can repeat
        # a record, which every consumer already drops by request id (at-least-once).
        producer_acks=-1,
        web_enabled=True,
        # Faust's own pages would expose join entries (features, labels) and routing: off.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_host=settings.worker.host,
        web_port=settings.worker.port,
        web_in_thread=False,
    )


def _incoming(events: Sequence[EventT[bytes]]) -> list[Incoming]:
    return [Incoming.of(e.message) for e in events]


def _producer_sink(app: faust.App) -> Sink:
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


def build_app(settings: Settings) -> StreamsApp:
    """Build a worker's app; every worker runs every agent (Kafka splits the partitions)."""
    app = _faust_app(settings)
    names = settings.kafka.topics
    partitions = settings.kafka.partitions
    requests = app.topic(names.requests, partitions=partitions, **_RAW)
    feedback = app.topic(names.feedback, partitions=partitions, **_RAW)
    # The join table: request id -> entry. Its changelog has the requests' partition count, and
    # the pipeline writes each entry's changelog record to the partition of its request.
    table = app.Table("join", partitions=partitions, key_type=bytes, value_type=bytes)
    metrics = WorkerMetrics.create()
    holder = ModelHolder(
        on_swap=metrics.on_swap,
        artifacts=settings.artifacts,
        max_reference_std=settings.features.max_reference_std,
    )
    feed = _model_feed(settings, holder, metrics)
    pipeline = Pipeline(
        settings,
        holder=holder,
        metrics=metrics,
        join_data=table.data,
        changelog_topic=table.changelog_topic.get_topic_name(),
    )
    scoring = settings.scoring
    rebalances = Rebalances(
        app, topics={names.requests, names.feedback}, bootstrap=settings.kafka.bootstrap_servers
    )
    app.sensors.add(rebalances)

    def owned() -> set[int]:
        """Partitions whose requests, feedback and join entries this worker owns."""
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == names.feedback}

    @app.task  # type: ignore[untyped-decorator]
    async def follow_model_updates() -> None:
        """Every worker reads every update: no consumer group, all partitions."""
        await feed.run()

    lane: ScoringLane | None = None
    score: Any = None
    if scoring.consumer == "lane":
        lane = _scoring_lane(settings, pipeline, lambda out: streams.sink(out))
        _follow_assignment(app, lane, owned)

        @app.task  # type: ignore[untyped-decorator]
        async def score_requests() -> None:
            assert lane is not None
            try:
                await lane.run(ready=feed.caught_up.wait())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never a silent stop: the worker goes down loudly
                log.exception("scoring lane failed, stopping the worker")
                await app.crash(exc)
                raise

    else:

        @app.agent(requests, concurrency=1)
        async def score(stream: StreamT[bytes]) -> None:
            await feed.caught_up.wait()  # the first batch is scored by the live model, if any
            async for events in stream.take_events(  # type: ignore[attr-defined]
                scoring.batch_size, within=scoring.batch_linger_seconds
            ):
                await streams.sink(pipeline.score(_incoming(events)))

    @app.agent(feedback, concurrency=1)
    async def join_feedback(stream: StreamT[bytes]) -> None:
        async for events in stream.take_events(  # type: ignore[attr-defined]
            scoring.batch_size, within=scoring.batch_linger_seconds
        ):
            await streams.sink(pipeline.feedback(_incoming(events)))

    @app.timer(settings.streams.sweep_interval_seconds)  # type: ignore[untyped-decorator]
    async def sweep() -> None:
        await streams.sink(pipeline.sweep(owned=owned()))

    @app.timer(settings.streams.lag_interval_seconds)  # type: ignore[untyped-decorator]
    async def measure_lag() -> None:
        streams_tps = [
            tp for tp in app.consumer.assignment() if tp.topic in (names.requests, names.feedback)
        ]
        lags = await partition_lags(app.consumer, streams_tps)
        if lane is not None:
            lags.extend(await lane.lags())
        metrics.observe_lag(lags)

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # mode's stub rejects async
    async def rescan_join(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Partitions moved: expire recovered entries, forget the ones another worker owns."""
        pipeline.join.rescan(owned=owned())

    @app.page("/metrics")
    async def prometheus_metrics(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; Prometheus needs only the version.
        return web.bytes(
            generate_latest(metrics.registry), content_type="text/plain; version=0.0.4"
        )

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """200 once this worker has caught up on models, owns partitions and is not rebalancing."""
        live = holder.current
        assigned = sorted(lane.partitions if lane is not None else owned())
        ready = feed.caught_up.is_set() and bool(assigned) and rebalances.settled
        body = {
            "ready": ready,
            "model_version": live.version if live else None,
            "partitions": assigned,
            "refused_versions": [version for version, _ in holder.refused],
        }
        return web.json(body, status=200 if ready else 503)

    streams = StreamsApp(
        app=app,
        holder=holder,
        feed=feed,
        metrics=metrics,
        pipeline=pipeline,
        table=table,
        score_agent=score,
        feedback_agent=join_feedback,
        requests=requests,
        feedback=feedback,
        sink=_producer_sink(app),
        lane=lane,
    )
    return streams


def _model_feed(settings: Settings, holder: ModelHolder, metrics: WorkerMetrics) -> ModelFeed:
    """Every worker reads every update; a live update it refuses is dead-lettered with why."""

    async def accept(update: ModelUpdate) -> bool:
        if await holder.apply(update):
            return True
        if feed.caught_up.is_set():
            await feed.refuse(update, holder.refused[-1][1])
        return False

    feed = ModelFeed(
        settings.kafka,
        settings.model_name,
        accept,
        consumer="streams.model-feed",
        on_letter=metrics.on_letter,
    )
    return feed


def _scoring_lane(settings: Settings, pipeline: Pipeline, sink: Sink) -> ScoringLane:
    kafka = settings.kafka

    def consumer() -> Any:
        return make_consumer(
            kafka,
            group_id=f"{kafka.app_id}-streams-scoring",
            client_id=f"{kafka.app_id}-scoring-lane",
        )

    return ScoringLane(
        consumer,
        topic=kafka.topics.requests,
        score=pipeline.score,
        send=sink,
        batch_size=settings.scoring.batch_size,
        commit_interval_seconds=settings.scoring.commit_interval_seconds,
    )


def _follow_assignment(app: faust.App, lane: ScoringLane, owned: Callable[[], set[int]]) -> None:
    """Give the lane what Faust gives this worker, and take it away before anyone else gets it.

    Kafka waits for the revoke handler, so the lane's last answers and commit for a partition
    happen before its next owner reads it. New partitions are handed over only after table
    recovery, so the join entries the lane writes are never overwritten by recovery.
    """
    handover = Handover(lane, owned)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def release_requests(sender: Any, *args: Any, **kwargs: Any) -> None:
        await handover.revoked()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def note_assignment(sender: Any, *args: Any, **kwargs: Any) -> None:
        handover.assigned()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def take_requests(sender: Any, *args: Any, **kwargs: Any) -> None:
        await handover.completed()

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def reconcile_requests() -> None:
        await handover.reconcile()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def finish_requests(sender: Any, *args: Any, **kwargs: Any) -> None:
        try:
            await lane.release()
        except Exception as exc:  # the crash that stops us was reported; stopping must go on
            log.warning("scoring lane let go without its last commit: %r", exc)
