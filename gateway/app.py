"""The FastAPI application factory: wiring only; routes live in :mod:`gateway.routes`.

In the background each gateway connects to Kafka (retrying until a broker answers), then runs
four loops, each restarted if it fails: the reply reader (the bridge supervises it, and a bad
answer costs only that answer), the model feed (the workers' follower: a version is live here
once it loads as it does on a worker), the audit feed, and a one-second broker probe behind
readiness and the fast 503s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from gateway.answer_book import AnswerBook
from gateway.audit.feed import AuditFeed
from gateway.audit.store import AuditStore, audit_url
from gateway.bridge import KafkaBridge
from gateway.errors import install_error_handlers
from gateway.limits import BodyLimit
from gateway.metrics import GatewayMetrics
from gateway.model_versions import ModelHistory, model_feed
from gateway.openapi import live_openapi
from gateway.predicting import on_late_answer
from gateway.routes import dashboard, feedback, health, models, predict, predictions, stats
from gateway.state import GatewayState
from irisflow.errors import KafkaUnavailable
from irisflow.kafka.admin import ensure_topics
from irisflow.schemas import ModelMetadata
from irisflow.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 1.0


class _QuietWhileDown(logging.Filter):
    """While the probe says Kafka is down, aiokafka's per-retry errors (about a hundred a
    second across the gateway's clients) are dropped; the probe logs the outage once."""

    def __init__(self, state: GatewayState) -> None:
        super().__init__()
        self._state = state

    def filter(self, record: logging.LogRecord) -> bool:
        return self._state.kafka_ready or record.levelno >= logging.CRITICAL


@contextlib.contextmanager
def _quiet_aiokafka(state: GatewayState) -> Iterator[None]:
    names = [n for n in logging.Logger.manager.loggerDict if n.split(".")[0] == "aiokafka"]
    loggers = [logging.getLogger(name) for name in names]
    quiet = _QuietWhileDown(state)
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


async def _probe(state: GatewayState, metrics: GatewayMetrics) -> None:
    while True:
        ok = await state.bridge.reachable()
        if ok != state.kafka_ready:
            log.warning("gateway: Kafka %s", "reachable again" if ok else "unreachable")
        state.kafka_ready = ok
        state.kafka_error = None if ok else "no broker answered the gateway's probe"
        metrics.kafka_up.set(int(ok))
        await asyncio.sleep(PROBE_INTERVAL_SECONDS)


async def _connect(state: GatewayState, metrics: GatewayMetrics) -> None:
    """Connect to Kafka, retrying until it answers, then run the background loops for good."""
    settings = state.settings
    while True:
        try:
            await ensure_topics(settings.kafka, timeout=10.0)
            await state.bridge.start()
            break
        except (KafkaUnavailable, KafkaError, OSError) as exc:
            state.kafka_error = str(exc)
            log.warning("gateway: %s; retrying", exc)
            with contextlib.suppress(Exception):
                await state.bridge.stop()
            await asyncio.sleep(1.0)
    state.kafka_ready, state.kafka_error = True, None
    metrics.kafka_up.set(1)
    log.info(
        "gateway %s connected to Kafka at %s; audit in %s",
        state.bridge.instance_id,
        settings.kafka.bootstrap_servers,
        state.audit.url,
    )

    def on_live(meta: ModelMetadata) -> None:
        metrics.live_version.set(meta.version)

    feed = AuditFeed(
        settings.kafka,
        state.audit,
        on_written=lambda stream, n: metrics.audit_records.labels(stream).inc(n),
        on_skipped=lambda stream: metrics.audit_skipped.labels(stream).inc(),
        on_letter=metrics.count_letter,
    )
    await asyncio.gather(
        _supervise(
            "model feed",
            lambda: model_feed(
                settings.kafka,
                state.history,
                settings.artifacts,
                on_live=on_live,
                on_letter=metrics.count_letter,
            ).run(),
        ),
        _supervise("audit feed", feed.run),
        _supervise("Kafka probe", lambda: _probe(state, metrics)),
    )


def _state(settings: Settings, metrics: GatewayMetrics) -> GatewayState:
    gateway = settings.gateway
    state = GatewayState(
        settings=settings,
        bridge=KafkaBridge(
            settings.kafka,
            watch_capacity=max(gateway.answer_cache_size, 100),
            on_mismatch=metrics.mismatched_answers.inc,
            on_error=metrics.answer_errors.inc,
        ),
        history=ModelHistory(settings.model_name, settings.registry_dir),
        answers=AnswerBook(gateway.answer_cache_size, max_bytes=gateway.answer_cache_bytes),
        audit=AuditStore(audit_url(gateway.audit_url, settings.home)),
        started_at=time.time(),
    )
    state.bridge.on_late = on_late_answer(state)
    return state


def create_app(settings: Settings) -> FastAPI:
    metrics = GatewayMetrics.create()
    state = _state(settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_connect(state, metrics), name="gateway-kafka")
        try:
            with _quiet_aiokafka(state):
                yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await state.answers.close()
            await state.bridge.stop()
            state.audit.close()

    app = FastAPIOffline(
        title="irisflow gateway",
        version="0.1.0",
        summary="Predictions, feedback, model versions and an audit trail over Apache Kafka",
        lifespan=lifespan,
    )
    app.state.irisflow = state
    app.state.metrics = metrics
    app.openapi = live_openapi(app, state)  # type: ignore[method-assign]
    install_error_handlers(app)
    for module in (predict, predictions, feedback, models, stats, health, dashboard):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")
    # Inside ``measure`` (added after it), so refused bodies are counted by route and status.
    app.add_middleware(BodyLimit, max_bytes=settings.gateway.max_body_bytes)

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        metrics.in_flight.inc()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            metrics.in_flight.dec()
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics.requests.labels(path, request.method, str(status)).observe(
                time.perf_counter() - started
            )

    return app
