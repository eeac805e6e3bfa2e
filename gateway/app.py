"""The FastAPI application factory: wiring only; routes live in :mod:`gateway.routes`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request, Response

from gateway.bridge import KafkaBridge
from gateway.errors import install_error_handlers
from gateway.metrics import GatewayMetrics
from gateway.routes import health, predict
from gateway.state import GatewayState
from irisflow.errors import KafkaUnavailable
from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.model_topic import ModelFeed
from irisflow.schemas import ModelUpdate
from irisflow.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)


async def _connect(state: GatewayState, metrics: GatewayMetrics) -> None:
    """Connect to Kafka, retrying until it answers, then follow model updates for good."""
    settings = state.settings
    while True:
        try:
            await ensure_topics(settings.kafka, timeout=10.0)
            await state.bridge.start()
            break
        except KafkaUnavailable as exc:
            log.warning("gateway: %s; retrying", exc)
            await asyncio.sleep(1.0)
    state.kafka_ready = True
    log.info(
        "gateway %s connected to Kafka at %s",
        state.bridge.instance_id,
        settings.kafka.bootstrap_servers,
    )

    async def on_update(update: ModelUpdate) -> None:
        await state.on_model_update(update)
        metrics.live_version.set(update.version)

    await ModelFeed(settings.kafka, settings.model_name, on_update).run()


def create_app(settings: Settings) -> FastAPI:
    metrics = GatewayMetrics.create()
    state = GatewayState(
        settings=settings, bridge=KafkaBridge(settings.kafka), started_at=time.time()
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_connect(state, metrics), name="gateway-kafka")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await state.bridge.stop()

    app = FastAPI(
        title="irisflow gateway",
        version="0.1.0",
        summary="Predictions, feedback and model versions over Apache Kafka",
        lifespan=lifespan,
    )
    app.state.irisflow = state
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(predict.router)
    app.include_router(health.router)

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
