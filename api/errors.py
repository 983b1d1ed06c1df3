"""One error map: every error the API returns is ``{"detail": message}`` with a message a person can act on.

- :class:`LorongError` subclasses map to a status through :data:`ERROR_STATUS` (the first matching
  class wins; unlisted ones are 400).
- FastAPI's 422 validation errors are reshaped: ``detail`` is one sentence naming each bad
  parameter and what it must be; ``errors`` keeps the per-field list (``loc``, ``msg``).
- Starlette's own errors (unknown path 404, wrong method 405) keep their status and headers; a body
  that is not even UTF-8 (FastAPI's 400) is a 422 like any other malformed JSON.
- A body over :data:`MAX_BODY_BYTES` is a 413, whether it declares its length or is sent chunked
  (:mod:`api.body_limit`).
- The SQL database not answering (PostgreSQL restarting or failing over, SQLite busy) is a 503 with
  a message to try again: :class:`lorong.core.errors.DatabaseUnavailable`, SQLAlchemy's ``OperationalError``
  and DBAPI errors that dropped the connection (:func:`lorong.storage.db.is_unavailable`).
- Anything else is a 500 with a generic message; the traceback goes to the log, not the client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from analytics.alerts import AlertNotFound, AlertStateError
from api.auth import Forbidden, NotAuthenticated, UnknownToken
from api.body_limit import BodyLimitMiddleware
from lorong.core.errors import (
    CityExists,
    DatabaseUnavailable,
    DeviceExists,
    LorongError,
    StoreNotReady,
    StoreRejected,
    StoreUnavailable,
    UnknownCity,
    UnknownDevice,
)
from lorong.storage.db import is_unavailable, unavailable

log = logging.getLogger(__name__)

DATABASE_DOWN = "the database is not answering (restarting or failing over); try again in a minute"
"""``detail`` of a 503 for the SQL database."""


MAX_MESSAGE = 300
"""Characters of one validation message returned to the client."""

MAX_BODY_BYTES = 1_000_000
"""Largest request body the API reads (a device or alert write is well under 10 kB): HTTP 413 above."""


class InvalidRequest(LorongError):
    """Parameters that each look fine but make no sense together (``start`` after ``end``): HTTP 422."""


class NotFound(LorongError):
    """The path names something that does not exist (a bin id that is an air station): HTTP 404."""


class Conflict(LorongError):
    """The item exists but its state forbids the change (editing a retired device): HTTP 409."""


ERROR_STATUS: dict[type[LorongError], int] = {
    NotAuthenticated: 401,
    Forbidden: 403,
    UnknownDevice: 404,
    UnknownCity: 422,  # only ever named in a request body (a device's or a token's city)
    AlertNotFound: 404,
    UnknownToken: 404,
    NotFound: 404,
    DeviceExists: 409,
    CityExists: 409,
    Conflict: 409,
    AlertStateError: 409,
    InvalidRequest: 422,
    StoreNotReady: 409,
    StoreRejected: 502,
    StoreUnavailable: 503,
    DatabaseUnavailable: 503,
}
"""HTTP status of each domain error (RFC 9110 section 15)."""

_HINTS = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
}


def status_of(exc: LorongError) -> int:
    """HTTP status for ``exc`` from :data:`ERROR_STATUS` (400 when no class matches)."""
    return next((code for cls, code in ERROR_STATUS.items() if isinstance(exc, cls)), 400)


def _where(loc: Sequence[Any]) -> str:
    kind = {"query": "query parameter", "path": "path parameter", "body": "body field", "header": "header"}
    if not loc:
        return "request"
    head, rest = str(loc[0]), [str(p) for p in loc[1:]]
    if head in kind:
        return f"{kind[head]} '{'.'.join(rest)}'" if rest else ("request body" if head == "body" else head)
    return f"'{'.'.join(str(p) for p in loc)}'"


def validation_message(errors: Sequence[Any]) -> tuple[str, list[dict[str, Any]]]:
    """One readable sentence and a compact per-field list from pydantic/FastAPI errors.

    Args:
        errors: ``RequestValidationError.errors()``: dicts with ``loc``, ``msg``, ``type``, ``input``.

    Returns:
        ``("query parameter 'limit': Input should be less than or equal to 500 (got 900)", [...])``.
    """
    parts: list[str] = []
    items: list[dict[str, Any]] = []
    for err in errors:
        loc = list(err.get("loc", ()))
        if err.get("type") == "json_invalid":  # FastAPI puts the character offset where a field name goes
            at = f" (at character {loc[1]}: {err.get('ctx', {}).get('error', 'not JSON')})" if len(loc) > 1 else ""
            msg = f"is not valid JSON{at}"
            parts.append(f"request body {msg}")
            items.append({"loc": ["body"], "msg": msg})
            continue
        msg = _HINTS.get(str(err.get("type", "")), str(err.get("msg", "is not valid")))
        msg = msg.removeprefix("Value error, ")
        if len(msg) > MAX_MESSAGE:  # a message may quote the input, which may be megabytes
            msg = msg[:MAX_MESSAGE] + "..."
        where = _where(loc)
        got = err.get("input")
        show = isinstance(got, str | int | float) and err.get("type") != "missing"
        shown = f" (got {got[:60]!r})" if isinstance(got, str) else f" (got {got})"
        shown = shown if show else ""
        parts.append(f"{where}: {msg}{shown}")
        items.append({"loc": [str(p) for p in loc], "msg": msg})
    return "; ".join(parts) or "the request is not valid", items


def install(app: FastAPI) -> None:
    """Register the handlers of this module on ``app``."""

    async def domain(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LorongError)
        status = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if status >= 500:
            log.warning("%s: %s", type(exc).__name__, exc)
            if isinstance(exc, DatabaseUnavailable):
                return JSONResponse(status_code=503, content={"detail": DATABASE_DOWN}, headers={"Retry-After": "60"})
            detail = ("the time-series database is not answering; try again in a minute" if status == 503
                      else "the time-series database refused the query; report this with the request URL")
            return JSONResponse(status_code=status, content={"detail": detail})
        return JSONResponse(status_code=status, content={"detail": str(exc)}, headers=headers)

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail, items = validation_message(exc.errors())
        return JSONResponse(status_code=422, content={"detail": detail, "errors": items})

    async def http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            detail = "request body: not valid JSON; send UTF-8 JSON with Content-Type: application/json"
            body = {"detail": detail, "errors": [{"loc": ["body"], "msg": detail}]}
            return JSONResponse(status_code=422, content=body)
        detail = {404: "no such path: see /docs for the API's paths",
                  405: "this path does not take that HTTP method: see /docs"}.get(exc.status_code, str(exc.detail))
        return JSONResponse(status_code=exc.status_code, content={"detail": detail}, headers=exc.headers)

    async def database(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DBAPIError)
        if not is_unavailable(exc):
            return await crash(request, exc)
        log.warning("%s %s: %s", request.method, request.url.path, unavailable(exc))
        return JSONResponse(status_code=503, content={"detail": DATABASE_DOWN}, headers={"Retry-After": "60"})

    async def crash(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse(status_code=500, content={"detail": "internal error; it was logged, please report it"})

    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)  # declared and chunked bodies alike
    app.add_exception_handler(LorongError, domain)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(DBAPIError, database)
    app.add_exception_handler(Exception, crash)
