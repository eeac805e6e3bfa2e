"""The Faust app. Read top to bottom, it is the flow: follow models, score, join, sweep, watch.

Agents stay thin: take a micro-batch of raw records, call :class:`streams.pipeline.Pipeline`,
produce what it returns. Raw bytes in and out (``value_serializer="raw"``) so a malformed
record reaches our own decoder, and is dead-lettered with a reason, instead of crashing Faust's.
The Faust app itself and the producer sink are in :mod:`streams.faust_app`.

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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import EventT, StreamT
from prometheus_client import generate_latest

from irisflow.kafka.model_topic import ModelFeed
from irisflow.kafka.rollout_topic import RolloutFollower
from irisflow.otel import Spans
from irisflow.schemas import ModelUpdate
from irisflow.settings import ScoringSettings, Settings
from irisflow.topics import Incoming, Outgoing
from streams.faust_app import RAW, Sink, faust_app, producer_sink
from streams.handover import follow_assignment
from streams.lane import ScoringLane, partition_lags, scoring_lane
from streams.metrics import WorkerMetrics
from streams.model_updates import ModelHolder
from streams.pipeline import Pipeline
from streams.rebalance import Rebalances

__all__ = ["Sink", "StreamsApp", "build_app"]

log = logging.getLogger(__name__)

Owned = Callable[[], set[int]]
"""Partitions whose requests, feedback and join entries this worker owns now."""


@dataclass(frozen=True)
class StreamsApp:
    """The Faust app together with the plain objects its agents call."""

    app: faust.App
    holder: ModelHolder
    feed: ModelFeed
    rollouts: RolloutFollower
    metrics: WorkerMetrics
    pipeline: Pipeline
    table: Any
    score_agent: Any
    feedback_agent: Any
    requests: Any
    feedback: Any
    sink: Sink
    lane: ScoringLane | None


def build_app(settings: Settings, *, sink: Sink | None = None) -> StreamsApp:
    """Build a worker's app; every worker runs every agent (Kafka splits the partitions).

    ``sink`` receives every record the worker produces; by default the app's own producer.
    """
    app = faust_app(settings)
    sink = sink if sink is not None else producer_sink(app)
    names, partitions = settings.kafka.topics, settings.kafka.partitions
    requests = app.topic(names.requests, partitions=partitions, **RAW)
    feedback = app.topic(names.feedback, partitions=partitions, **RAW)
    # The join table: request id -> entry. Its changelog has the requests' partition count, and
    # the pipeline writes each entry's changelog record to the partition of its request.
    table = app.Table("join", partitions=partitions, key_type=bytes, value_type=bytes)
    metrics = WorkerMetrics.create()
    holder = ModelHolder(
        on_swap=metrics.on_swap,
        artifacts=settings.artifacts,
        max_reference_std=settings.features.max_reference_std,
        on_candidate=metrics.on_candidate,
        on_candidate_refused=metrics.on_candidate_refused,
    )
    feed = _model_feed(settings, holder, metrics)
    rollouts = RolloutFollower(
        settings.kafka,
        settings.model_name,
        holder.follow,
        consumer="streams.rollout-follower",
        on_letter=metrics.on_letter,
    )
    pipeline = _pipeline(settings, holder, metrics, table)
    rebalances = _rebalances(app, settings)
    owned = _owned_partitions(app, names.feedback)

    _follow_models(app, feed, rollouts)
    ready = _ready(feed, rollouts)
    lane, score_agent = _score(app, settings, requests, pipeline, ready, sink, owned)
    feedback_agent = _batch_agent(
        app, feedback, "join_feedback", settings.scoring, pipeline.feedback, sink
    )
    _sweep(app, settings, pipeline, sink, owned)
    _watch(app, settings, metrics, pipeline, lane, owned)
    _web_pages(app, metrics, holder, (feed, rollouts), rebalances, lane, owned)
    return StreamsApp(
        app=app,
        holder=holder,
        feed=feed,
        rollouts=rollouts,
        metrics=metrics,
        pipeline=pipeline,
        table=table,
        score_agent=score_agent,
        feedback_agent=feedback_agent,
        requests=requests,
        feedback=feedback,
        sink=sink,
        lane=lane,
    )


def _pipeline(
    settings: Settings, holder: ModelHolder, metrics: WorkerMetrics, table: Any
) -> Pipeline:
    return Pipeline(
        settings,
        holder=holder,
        metrics=metrics,
        join_data=table.data,
        changelog_topic=table.changelog_topic.get_topic_name(),
        spans=Spans.create(settings.tracing, service="irisflow-worker"),
    )


def _rebalances(app: faust.App, settings: Settings) -> Rebalances:
    """Whether a rebalance of the worker's own topics is under way (health reads it)."""
    names = settings.kafka.topics
    topics = {names.requests, names.feedback}
    rebalances = Rebalances(app, topics=topics, kafka=settings.kafka)
    app.sensors.add(rebalances)
    return rebalances


def _owned_partitions(app: faust.App, feedback_topic: str) -> Owned:
    def owned() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == feedback_topic}

    return owned


def _follow_models(app: faust.App, feed: ModelFeed, rollouts: RolloutFollower) -> None:
    @app.task  # type: ignore[untyped-decorator]
    async def follow_model_updates() -> None:
        """Every worker reads every update: no consumer group, all partitions."""
        await feed.run()

    @app.task  # type: ignore[untyped-decorator]
    async def follow_rollouts() -> None:
        """Every worker follows the rollout (its candidate loaded beside the live version);
        a restarted worker resumes it from the newest state on the compacted topic."""
        await rollouts.run()


def _ready(feed: ModelFeed, rollouts: RolloutFollower) -> Callable[[], Awaitable[Any]]:
    """Scoring starts once the live model and the rollout are known (the newest state's
    candidate loaded or refused), so a restarted worker never answers a canary's request with
    the champion while the candidate is on its way."""

    async def ready() -> None:
        await feed.caught_up.wait()
        await rollouts.caught_up.wait()

    return ready


def _score(
    app: faust.App,
    settings: Settings,
    requests: Any,
    pipeline: Pipeline,
    ready: Callable[[], Awaitable[Any]],
    sink: Sink,
    owned: Owned,
) -> tuple[ScoringLane | None, Any]:
    """Requests in, answers out: by the scoring lane (the default) or by a Faust agent."""
    if settings.scoring.consumer == "lane":
        lane = scoring_lane(settings, score=pipeline.score, send=sink)
        follow_assignment(app, lane, owned)
        _run_lane(app, lane, ready)
        return lane, None
    # the first batch is scored by the live model, if any
    agent = _batch_agent(app, requests, "score", settings.scoring, pipeline.score, sink, ready)
    return None, agent


def _run_lane(app: faust.App, lane: ScoringLane, ready: Callable[[], Awaitable[Any]]) -> None:
    @app.task  # type: ignore[untyped-decorator]
    async def score_requests() -> None:
        try:
            await lane.run(ready=ready())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never a silent stop: the worker goes down loudly
            log.exception("scoring lane failed, stopping the worker")
            await app.crash(exc)
            raise


def _batch_agent(
    app: faust.App,
    topic: Any,
    name: str,
    scoring: ScoringSettings,
    handle: Callable[[list[Incoming]], list[Outgoing]],
    sink: Sink,
    ready: Callable[[], Awaitable[Any]] | None = None,
) -> Any:
    """An agent that hands each micro-batch of ``topic`` to ``handle`` and sinks what it returns
    (after ``ready``, if given)."""

    async def agent(stream: StreamT[bytes]) -> None:
        if ready is not None:
            await ready()
        async for events in stream.take_events(  # type: ignore[attr-defined]
            scoring.batch_size, within=scoring.batch_linger_seconds
        ):
            await sink(handle(_incoming(events)))

    return app.agent(topic, name=f"{__name__}.{name}", concurrency=1)(agent)


def _sweep(
    app: faust.App, settings: Settings, pipeline: Pipeline, sink: Sink, owned: Owned
) -> None:
    @app.timer(settings.streams.sweep_interval_seconds)  # type: ignore[untyped-decorator]
    async def sweep() -> None:
        await sink(pipeline.sweep(owned=owned()))


def _watch(
    app: faust.App,
    settings: Settings,
    metrics: WorkerMetrics,
    pipeline: Pipeline,
    lane: ScoringLane | None,
    owned: Owned,
) -> None:
    """Lag of every partition this worker reads; the join follows partitions that moved."""
    names = settings.kafka.topics

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


def _web_pages(
    app: faust.App,
    metrics: WorkerMetrics,
    holder: ModelHolder,
    followers: tuple[ModelFeed, RolloutFollower],
    rebalances: Rebalances,
    lane: ScoringLane | None,
    owned: Owned,
) -> None:
    """Prometheus metrics, and health: what the worker scores once it is ready."""
    feed, rollouts = followers

    @app.page("/metrics")
    async def prometheus_metrics(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; Prometheus needs only the version.
        return web.bytes(
            generate_latest(metrics.registry), content_type="text/plain; version=0.0.4"
        )

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """200 once this worker has caught up on models and the rollout, owns partitions and
        is not rebalancing."""
        live = holder.current
        assigned = sorted(lane.partitions if lane is not None else owned())
        caught_up = feed.caught_up.is_set() and rollouts.caught_up.is_set()
        ready = caught_up and bool(assigned) and rebalances.settled
        body = {
            "ready": ready,
            "model_version": live.version if live else None,
            "partitions": assigned,
            "refused_versions": [version for version, _ in holder.refused],
            "rollout": _rollout_health(holder),
        }
        return web.json(body, status=200 if ready else 503)


def _rollout_health(holder: ModelHolder) -> dict[str, Any] | None:
    """The rollout as this worker follows it: stage, share, and the candidate it scores with
    (``candidate_loaded``) or refused (``candidate_refused`` with why)."""
    state = holder.rollout_state
    if state is None:
        return None
    loaded = holder.rollout
    refused = holder.candidate_refused
    if loaded is not None or not state.active or refused is None:
        refused = None  # a refusal shown is the current candidate's
    elif refused[0] != state.candidate_version:
        refused = None
    return {
        "rollout_id": state.rollout_id,
        "stage": state.stage,
        "share": state.share,
        "candidate_version": state.candidate_version,
        "candidate_loaded": loaded.candidate.version if loaded is not None else None,
        "candidate_refused": (
            {"version": refused[0], "error": refused[1]} if refused is not None else None
        ),
    }


def _incoming(events: Sequence[EventT[bytes]]) -> list[Incoming]:
    return [Incoming.of(e.message) for e in events]


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
