"""The HTTP metrics middleware: every request counted by route template, method and status."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, HTTPException

from gateway.measure import Measure
from gateway.metrics import GatewayMetrics
from irisflow.tracing import TraceContext


def _app(metrics: GatewayMetrics) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}", status_code=201)
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(404)

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    @app.get("/in-flight")
    async def in_flight() -> dict[str, float]:
        value = metrics.registry.get_sample_value("irisflow_http_requests_in_flight")
        return {"in_flight": value or 0.0}

    app.add_middleware(Measure, metrics=metrics)
    return app


def _count(metrics: GatewayMetrics, route: str, status: str, method: str = "GET") -> float:
    value = metrics.registry.get_sample_value(
        "irisflow_http_request_duration_seconds_count",
        {"route": route, "method": method, "status": status},
    )
    return value or 0.0


async def _get(metrics: GatewayMetrics, *paths: str) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=_app(metrics), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        return [await client.get(path) for path in paths]


async def test_requests_are_counted_by_route_template_never_by_id() -> None:
    metrics = GatewayMetrics.create()
    await _get(metrics, "/items/a", "/items/b")
    assert _count(metrics, "/items/{item_id}", "201") == 2


async def test_the_status_counted_is_the_one_the_client_got() -> None:
    metrics = GatewayMetrics.create()
    responses = await _get(metrics, "/missing", "/broken")
    assert [r.status_code for r in responses] == [404, 500]
    assert _count(metrics, "/missing", "404") == 1
    assert _count(metrics, "/broken", "500") == 1


async def test_unmatched_paths_share_one_label() -> None:
    metrics = GatewayMetrics.create()
    await _get(metrics, "/nothing/here", "/nor/here")
    assert _count(metrics, "unmatched", "404") == 2


async def test_a_request_is_in_flight_while_served_and_not_after() -> None:
    metrics = GatewayMetrics.create()
    (response,) = await _get(metrics, "/in-flight")
    assert response.json() == {"in_flight": 1.0}
    assert metrics.registry.get_sample_value("irisflow_http_requests_in_flight") == 0.0


async def test_every_answer_names_its_span_of_the_clients_trace() -> None:
    client_span = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    transport = httpx.ASGITransport(app=_app(GatewayMetrics.create()))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        traced = await client.get("/items/a", headers={"traceparent": client_span})
        untraced = await client.get("/items/b")
    ours = TraceContext.parse(traced.headers["traceparent"])
    assert ours is not None
    assert ours.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ours.span_id != "00f067aa0ba902b7"
    fresh = TraceContext.parse(untraced.headers["traceparent"])
    assert fresh is not None
    assert fresh.trace_id != ours.trace_id
