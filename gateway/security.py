"""The API key of the admin endpoints (retrain, promote): ``X-API-Key`` vs ``IRISFLOW_API_KEY``.

Without a configured key the admin endpoints refuse everyone (403, saying what to set): a
gateway that forgot its key must not be an open door. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader

from gateway.deps import Settings
from gateway.errors import AdminDisabled, Forbidden, Unauthorized

__all__ = ["AdminKey", "check_api_key"]

_HEADER = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="The gateway's IRISFLOW_API_KEY; needed by retrain and promote",
)


def check_api_key(configured: str | None, given: str | None) -> None:
    """Raise unless ``given`` matches ``configured``; no configured key refuses everything."""
    if not configured:
        raise AdminDisabled(
            "admin endpoints are disabled: set IRISFLOW_API_KEY on the gateway to enable them"
        )
    if not given:
        raise Unauthorized("this endpoint needs the API key in the X-API-Key header")
    if not hmac.compare_digest(given.encode(), configured.encode()):
        raise Forbidden("the X-API-Key header does not match the gateway's API key")


async def _require(settings: Settings, key: Annotated[str | None, Security(_HEADER)]) -> None:
    secret = settings.gateway.api_key
    check_api_key(secret.get_secret_value() if secret is not None else None, key)


AdminKey = Annotated[None, Depends(_require)]
