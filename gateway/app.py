"""The FastAPI application factory: wiring only; routes live in :mod:`gateway.routes`.

In the background each gateway connects to Kafka (retrying until a broker answers), then runs
five loops, each restarted if it fails: the reply reader (the bridge supervises it, and a bad
answer costs only that answer), the model feed (the workers' follower: a version is live here
once it loads as it does on a worker), the rollout follower (the state ``GET /v1/rollout``
shows and rollout commands wait on; never the candidate's artifact), the audit feed, and a
one-second broker probe behind readiness and the fast 503s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from gateway.answer_book import AnswerBook
from gateway.audit.feed import AuditFeed
from gateway.audit.store import AuditStore, audit_url
from gateway.bridge import KafkaBridge
from gateway.errors import install_error_handlers
from gateway.hedging import Hedger
from gateway.input_checks import InputChecks
from gateway.kafka_health import KafkaHealth
from gateway.limits import BodyLimit
from gateway.measure import Measure
from gateway.metrics import GatewayMetrics
from gateway.model_versions import ModelHistory, model_feed
from gateway.openapi import live_openapi
from gateway.predicting import Scoring, on_late_answer
from gateway.rollouts import CONSUMER as ROLLOUT_CONSUMER
from gateway.routes import (
    dashboard,
    feedback,
    health,
    models,
    oip,
    predict,
    predictions,
    rollout,
    stats,
)
from irisflow.errors import KafkaUnavailable
from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.rollout_topic import RolloutFollower
from irisflow.otel import Spans
from irisflow.schemas import ModelMetadata
from irisflow.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 1.0


class _QuietWhileDown(logging.Filter):
    """While the probe says Kafka is down, aiokafka's per-retry errors (about a hundred a
    second across the gateway's clients) are dropped; the probe logs the outage once."""

    def __init__(self, kafka: KafkaHealth) -> None:
        super().__init__()
        self._kafka = kafka

    def filter(self, record: logging.LogRecord) -> bool:
        return self._kafka.ready or record.levelno >= logging.CRITICAL


@contextlib.contextmanager
def _quiet_aiokafka(kafka: KafkaHealth) -> Iterator[None]:
    names = [n for n in logging.Logger.manager.loggerDict if n.split(".")[0] == "aiokafka"]
    loggers = [logging.getLogger(name) for name in names]
    quiet = _QuietWhileDown(kafka)
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


async def _supervise(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run ``loop`` forever; if it fails, log and start it again (a broker outage ends one)."""
    while True:
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("gateway %s stopped (%r); restarting it", name, exc)
            await asyncio.sleep(1.0)


async def _probe(bridge: KafkaBridge, kafka: KafkaHealth, metrics: GatewayMetrics) -> None:
    while True:
        ok = await bridge.reachable()
        if ok != kafka.ready:
            log.warning("gateway: Kafka %s", "reachable again" if ok else "unreachable")
        kafka.ready = ok
        kafka.error = None if ok else "no broker answered the gateway's probe"
        metrics.kafka_up.set(int(ok))
        await asyncio.sleep(PROBE_INTERVAL_SECONDS)


@dataclass(frozen=True)
class _Parts:
    """What one gateway process is made of, built once by :func:`create_app`; routes get each
    part on its own (:mod:`gateway.deps`), the background loops the ones they drive."""

    settings: Settings
    metrics: GatewayMetrics
    bridge: KafkaBridge
    history: ModelHistory
    answers: AnswerBook
    audit: AuditStore
    kafka: KafkaHealth
    checks: InputChecks
    scoring: Scoring
    rollout: RolloutFollower

    @classmethod
    def build(cls, settings: Settings) -> _Parts:
        gateway, metrics = settings.gateway, GatewayMetrics.create()
        answers = AnswerBook(gateway.answer_cache_size, max_bytes=gateway.answer_cache_bytes)
        history = ModelHistory(settings.model_name, settings.registry_dir)
        bridge = KafkaBridge(
            settings.kafka,
            watch_capacity=max(gateway.answer_cache_size, 100),
            on_late=on_late_answer(answers),
            on_mismatch=metrics.mismatched_answers.inc,
            on_error=metrics.answer_errors.inc,
            hedger=Hedger(
                settings.kafka.partitions,
                delay=gateway.hedge_after_seconds,
                max_ratio=gateway.hedge_max_ratio,
            ),
            on_hedge=metrics.hedged.inc,
        )
        audit = AuditStore(audit_url(gateway.audit_url, settings.home))
        return cls(
            settings=settings,
            metrics=metrics,
            bridge=bridge,
            history=history,
            answers=answers,
            audit=audit,
            kafka=KafkaHealth(settings.kafka.bootstrap_servers),
            checks=InputChecks(
                history,
                default_features=settings.data.feature_columns,
                max_reference_std=settings.features.max_reference_std,
            ),
            scoring=Scoring(
                bridge,
                answers,
                audit,
                metrics,
                gateway.predict_timeout_seconds,
                Spans.create(settings.tracing, service="irisflow-gateway"),
            ),
            rollout=RolloutFollower(
                settings.kafka,
                settings.model_name,
                consumer=ROLLOUT_CONSUMER,
                on_letter=metrics.count_letter,
            ),
        )


async def _connect(parts: _Parts) -> None:
    """Connect to Kafka, retrying until it answers, then run the background loops for good."""
    settings, bridge, kafka, metrics = parts.settings, parts.bridge, parts.kafka, parts.metrics
    while True:
        try:
            await ensure_topics(settings.kafka, timeout=10.0)
            await bridge.start()
            break
        except (KafkaUnavailable, KafkaError, OSError) as exc:
            kafka.error = str(exc)
            log.warning("gateway: %s; retrying", exc)
            with contextlib.suppress(Exception):
                await bridge.stop()
            await asyncio.sleep(1.0)
    kafka.ready, kafka.error = True, None
    metrics.kafka_up.set(1)
    log.info(
        "gateway %s connected to Kafka at %s; audit in %s",
        bridge.instance_id,
        settings.kafka.bootstrap_servers,
        parts.audit.url,
    )

    def on_live(meta: ModelMetadata) -> None:
        metrics.live_model_version.set(meta.version)

    feed = AuditFeed(
        settings.kafka,
        parts.audit,
        on_written=lambda stream, n: metrics.audit_records.labels(stream).inc(n),
        on_skipped=lambda stream: metrics.audit_skipped.labels(stream).inc(),
        on_letter=metrics.count_letter,
        gateway_hops=parts.scoring.hop_log.drain,
    )
    await asyncio.gather(
        _supervise(
            "model feed",
            lambda: model_feed(
                settings.kafka,
                parts.history,
                settings.artifacts,
                on_live=on_live,
                on_letter=metrics.count_letter,
            ).run(),
        ),
        _supervise("rollout follower", parts.rollout.run),
        _supervise("audit feed", feed.run),
        _supervise("Kafka probe", lambda: _probe(bridge, kafka, metrics)),
    )


def create_app(settings: Settings) -> FastAPI:
    parts = _Parts.build(settings)
    metrics = parts.metrics

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_connect(parts), name="gateway-kafka")
        try:
            with _quiet_aiokafka(parts.kafka):
                yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await parts.answers.close()
            await parts.bridge.stop()
            parts.audit.close()
            parts.scoring.spans.close()

    app = FastAPIOffline(
        title="irisflow gateway",
        version="0.1.0",
        summary="Predictions, feedback, model versions and an audit trail over Apache Kafka",
        lifespan=lifespan,
    )
    for name, part in vars(parts).items():
        setattr(app.state, name, part)  # read by the dependencies in gateway.deps
    app.openapi = live_openapi(  # type: ignore[method-assign]
        app, parts.checks, max_batch=settings.gateway.max_batch_instances
    )
    install_error_handlers(app)
    for module in (predict, predictions, feedback, models, rollout, stats, health, oip, dashboard):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")
    # Inside ``Measure`` (added after it), so refused bodies are counted by route and status.
    app.add_middleware(BodyLimit, max_bytes=settings.gateway.max_body_bytes)
    app.add_middleware(Measure, metrics=metrics)

    return app
