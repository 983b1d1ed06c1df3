"""The crew page: ``GET /`` serves ``api/web/index.html``; its assets are under ``/web``.

The page itself holds no data: it asks for an API token, keeps it in ``localStorage`` and calls the
JSON API like any other client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    """The crew page (no token needed to load it; its API calls need one)."""
    return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})
