"""The crew page: ``GET /`` serves ``api/web/index.html``; its assets are under ``/web``; its
service worker is ``GET /sw.js`` (served from the root so that its scope is the whole page).

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


@router.get("/sw.js")
def service_worker() -> FileResponse:
    """The page's service worker (keeps the page's files for offline use); never cached by the
    browser's HTTP cache, so a new version is picked up on the next visit."""
    return FileResponse(WEB_DIR / "sw.js", media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})
