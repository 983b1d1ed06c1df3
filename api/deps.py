"""FastAPI dependencies: the objects every route needs, built once in :func:`api.main.create_app`.

Access control is declared here once: routes take ``Reader``, ``AlertWriter``, ``DeviceWriter``,
``Collector``, ``Exporter`` or ``Admin`` and get the :class:`api.auth.Principal`; a missing or bad
token is a 401, a token whose role lacks the permission a 403 (see the role table in :mod:`api.auth`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from analytics.alerts import Notifier
from api.auth import NO_TOKEN, NotAuthenticated, Permission, Principal, authenticate
from api.bin_state import BinEntry
from api.pages import PageCache
from api.snapshot import Snapshot
from devices.registry import get_device
from lorong.core.errors import UnknownDevice
from lorong.core.settings import Settings
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import CityRow, DeviceRow

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Device ids as the registry accepts them (:data:`devices.registry.DEVICE_ID`); anything else in a
path is refused with 422 before it can reach SQL or InfluxQL."""


@dataclass
class AppContext:
    """Shared objects of one API process.

    Attributes:
        settings: the process settings.
        sessions: SQL session factory.
        influx: InfluxDB client (readings endpoints only; latest values come from SQL).
        bins: every bin's latest state, fullest first (:mod:`api.bin_state`).
        alerts: the active alerts, newest first (:mod:`api.alert_state`).
        pages: rendered pages of the two snapshots.
        notifiers: called for every alert change made through the API (MQTT, webhook).
    """

    settings: Settings
    sessions: sessionmaker[Session]
    influx: InfluxClient
    bins: Snapshot[BinEntry]
    alerts: Snapshot[dict[str, Any]]
    pages: PageCache
    notifiers: Sequence[Notifier] = field(default_factory=list)


async def get_context(request: Request) -> AppContext:
    """The app's :class:`AppContext` (async: no thread hop for a dictionary lookup)."""
    ctx: AppContext = request.app.state.ctx
    return ctx


async def get_session(ctx: Annotated[AppContext, Depends(get_context)]) -> AsyncIterator[Session]:
    """A database session for one request (one per request, shared by its dependencies).

    Async so that opening and closing it costs no thread hop: a Session connects lazily, on its
    first query, which runs in the (sync) endpoint's worker thread; closing hands the connection
    back to the pool.
    """
    with ctx.sessions() as session:
        yield session


ContextDep = Annotated[AppContext, Depends(get_context)]
SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, scheme_name="token",
                     description="API token from `lorong api token create`, sent as `Authorization: Bearer <token>`")


def _lookup(ctx: AppContext, token: str) -> Principal:
    with ctx.sessions() as session:
        return authenticate(session, token)


async def get_principal(ctx: ContextDep,
                        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The holder of the request's bearer token, looked up in the database on every request (so a
    revocation made anywhere holds from the next request on; see :mod:`api.auth`).

    Raises:
        NotAuthenticated: no token, or an unknown or revoked one.
    """
    token = creds.credentials if creds else None
    if not token:
        raise NotAuthenticated(NO_TOKEN)
    return await run_in_threadpool(_lookup, ctx, token)


async def get_optional_principal(ctx: ContextDep,
                                 creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                                 ) -> Principal | None:
    """The holder of the request's bearer token, or ``None`` when the request carries none.

    Raises:
        NotAuthenticated: a token that is unknown or revoked (sending a bad token is still a 401).
    """
    return None if creds is None else await get_principal(ctx, creds)


def require(permission: Permission) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that returns the principal when its role grants ``permission``.

    Raises (from the dependency):
        NotAuthenticated: no valid token (401).
        Forbidden: the role lacks ``permission`` (403).
    """

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(permission)
        return principal

    check.__name__ = f"require_{permission.value}"
    return check


Reader = Annotated[Principal, Depends(require(Permission.READ))]
AlertWriter = Annotated[Principal, Depends(require(Permission.ALERTS))]
DeviceWriter = Annotated[Principal, Depends(require(Permission.DEVICES))]
Collector = Annotated[Principal, Depends(require(Permission.COLLECT))]
Admin = Annotated[Principal, Depends(require(Permission.TOKENS))]
Exporter = Annotated[Principal, Depends(require(Permission.EXPORT))]
MaybeReader = Annotated[Principal | None, Depends(get_optional_principal)]
"""Any valid token's holder, or ``None`` without a token (every role may read)."""

DeviceId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, max_length=64,
                               description="DevEUI (16 hex digits) or serial number", examples=["MKS-BIN-0001"])]


def scoped_device(session: Session, who: Principal, device_id: str) -> DeviceRow:
    """The registry row of ``device_id`` when ``who``'s token sees its city.

    Raises:
        UnknownDevice: no such device, or one of another city (the same 404: a Makassar token
            cannot even learn that a Jakarta device exists).
    """
    row = get_device(session, device_id)
    if not who.sees(row.city_id):
        raise UnknownDevice(f"no device {device_id!r} in the registry")
    return row


def device_zone(session: Session, row: DeviceRow, default: str) -> str:
    """IANA zone of ``row``'s city (its day buckets), or ``default`` (``analytics.timezone``) when the
    registry has no such city."""
    city = session.get(CityRow, row.city_id) if row.city_id else None
    return city.timezone if city is not None else default
