"""One error map: domain errors to HTTP statuses, every error body ``{"detail": message}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from analytics.alerts import AlertNotFound, AlertStateError
from core.errors import DeviceExists, LorongError, StoreUnavailable, UnknownDevice

ERROR_STATUS: dict[type[LorongError], int] = {
    UnknownDevice: 404,
    AlertNotFound: 404,
    DeviceExists: 409,
    AlertStateError: 409,
    StoreUnavailable: 503,
}


def install(app: FastAPI) -> None:
    """Register the handler that maps :class:`LorongError` subclasses to their status."""

    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        status = next((code for cls, code in ERROR_STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    app.add_exception_handler(LorongError, handle)
