"""The dashboard at ``/``: static files only; the page polls the JSON endpoints.

Chart.js is served from ``gateway/static/vendor`` (MIT, from the npm registry, with its license):
nothing is fetched from a CDN, so the page works on a disconnected network.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
