"""One HTTP call, described once and sent by a sync or an async transport.

The clients build a :class:`Call` (method, path, JSON body, query) and read its answer with
plain functions, so the sync and the async client of a protocol differ only in ``await``.
Bodies are written with orjson (numpy arrays included, without a Python list per row), and a
transport either owns its ``httpx`` client (closed with it) or is given one (a test's ASGI
transport, a client with the caller's own limits or proxies), which it leaves open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from producers.errors import GatewayUnreachable, check

__all__ = ["DEFAULT_URL", "AsyncTransport", "Call", "SyncTransport"]

DEFAULT_URL = "http://127.0.0.1:8000"
"""Where ``irisflow up`` serves the gateway."""
_JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any = None
    params: dict[str, str] = field(default_factory=dict)

    def arguments(self) -> dict[str, Any]:
        """``httpx``'s keyword arguments for this call."""
        arguments: dict[str, Any] = {"params": self.params or None}
        if self.body is not None:
            arguments["content"] = orjson.dumps(self.body, option=orjson.OPT_SERIALIZE_NUMPY)
            arguments["headers"] = _JSON
        return arguments


class SyncTransport:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        self._owned = http is None
        self.http = http if http is not None else httpx.Client(base_url=base_url, timeout=timeout)

    def respond(self, call: Call) -> httpx.Response:
        try:
            return self.http.request(call.method, call.path, **call.arguments())
        except httpx.TransportError as exc:
            raise GatewayUnreachable(str(self.http.base_url), exc) from exc

    def send(self, call: Call) -> Any:
        """The JSON answer of ``call``, or :class:`~producers.errors.GatewayError`."""
        return check(self.respond(call))

    def close(self) -> None:
        if self._owned:
            self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncTransport:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._owned = http is None
        self.http = (
            http if http is not None else httpx.AsyncClient(base_url=base_url, timeout=timeout)
        )

    async def respond(self, call: Call) -> httpx.Response:
        try:
            return await self.http.request(call.method, call.path, **call.arguments())
        except httpx.TransportError as exc:
            raise GatewayUnreachable(str(self.http.base_url), exc) from exc

    async def send(self, call: Call) -> Any:
        return check(await self.respond(call))

    async def close(self) -> None:
        if self._owned:
            await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
