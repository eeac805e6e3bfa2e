"""The Faust app. Read top to bottom, it is the flow: follow models, score requests.

Agents stay thin: take a micro-batch of raw records, call :func:`streams.scoring.score_batch`,
send what it returns. Raw bytes in and out (``value_serializer="raw"``) so a malformed record
reaches our own decoder, and is dead-lettered with a reason, instead of crashing Faust's.

Agent concurrency stays at 1: faust-streaming can commit past an in-flight message when it is
higher (faust-streaming#606). Scale with partitions and more ``irisflow worker`` processes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import StreamT
from prometheus_client import generate_latest

from irisflow.kafka.model_topic import ModelFeed
from irisflow.settings import Settings
from streams.metrics import WorkerMetrics
from streams.model_updates import ModelHolder
from streams.scoring import Incoming, score_batch

__all__ = ["StreamsApp", "build_app"]

log = logging.getLogger(__name__)

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
    score_agent: Any
    requests: Any
    predictions: Any
    dead_letters: Any


def _faust_app(settings: Settings) -> faust.App:
    kafka = settings.kafka
    datadir = settings.home / "worker" / str(settings.worker.port)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        f"{kafka.app_id}-streams",
        broker=f"kafka://{kafka.bootstrap_servers}",
        autodiscover=False,
        store="memory://",
        datadir=str(datadir),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        producer_max_request_size=kafka.max_message_bytes,
        consumer_max_fetch_size=kafka.max_message_bytes,
        consumer_auto_offset_reset="earliest",
        producer_linger=0.001,
        web_enabled=True,
        web_host=settings.worker.host,
        web_port=settings.worker.port,
        web_in_thread=False,
    )


def build_app(settings: Settings) -> StreamsApp:
    """Build a worker's app; every worker runs every agent (Kafka splits the partitions)."""
    app = _faust_app(settings)
    names = settings.kafka.topics
    requests = app.topic(names.requests, partitions=settings.kafka.partitions, **_RAW)
    predictions = app.topic(names.predictions, partitions=settings.kafka.partitions, **_RAW)
    dead_letters = app.topic(names.dead_letters, partitions=settings.kafka.partitions, **_RAW)
    metrics = WorkerMetrics.create()
    holder = ModelHolder(on_swap=metrics.on_swap)
    feed = ModelFeed(settings.kafka, settings.model_name, holder.apply)
    scoring = settings.scoring

    @app.task  # type: ignore[untyped-decorator]
    async def follow_model_updates() -> None:
        """Every worker reads every update: no consumer group, all partitions."""
        await feed.run()

    @app.agent(requests, concurrency=1)
    async def score(stream: StreamT[bytes]) -> None:
        await feed.caught_up.wait()  # the first batch is scored by the live model, if any
        async for events in stream.take_events(  # type: ignore[attr-defined]
            scoring.batch_size, within=scoring.batch_linger_seconds
        ):
            records = [
                Incoming(
                    value=e.message.value,
                    key=e.message.key,
                    partition=e.message.partition,
                    offset=e.message.offset,
                )
                for e in events
            ]
            result = score_batch(holder.current, records, source_topic=names.requests)
            for answer in result.answers:
                await predictions.send(key=answer.request_id.encode(), value=answer.to_bytes())
            for key, letter in result.dead_letters:
                log.warning(
                    "dead-lettered %s[%s] offset %s: %s",
                    names.requests,
                    letter.partition,
                    letter.offset,
                    letter.error,
                )
                await dead_letters.send(key=key, value=letter.to_bytes())
            metrics.observe(result, source=names.requests)

    @app.page("/metrics")
    async def prometheus_metrics(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; Prometheus needs only the version.
        return web.bytes(
            generate_latest(metrics.registry), content_type="text/plain; version=0.0.4"
        )

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """200 once this worker has caught up on models and owns partitions to score."""
        live = holder.current
        assigned = sorted(
            tp.partition for tp in app.consumer.assignment() if tp.topic == names.requests
        )
        ready = feed.caught_up.is_set() and bool(assigned)
        body = {
            "ready": ready,
            "model_version": live.version if live else None,
            "partitions": assigned,
            "refused_versions": [version for version, _ in holder.refused],
        }
        return web.json(body, status=200 if ready else 503)

    return StreamsApp(app, holder, feed, metrics, score, requests, predictions, dead_letters)
