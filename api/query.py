"""Query-string checks shared by every route: a value outside a closed list, or a parameter the
path does not take, is a 422 that names what is allowed instead of being silently ignored.

- :func:`one_of` validates a string parameter against a closed list (for lists that live in code,
  such as the alert types of :data:`lorong.core.alerts.ALERT_TYPES`, where a ``Literal`` cannot be written).
- :func:`resolve_kecamatan` matches a ``kecamatan`` filter to a registered name regardless of case
  (``tamalate`` finds ``Tamalate``); a name no device has is a 422 listing the known ones, not a
  silent ``[]``.
- :func:`resolve_device` matches a ``device_id`` filter the same way; an id no device or alert has
  is a 422, not a silent ``[]``.
- :func:`reject_unknown_query` is an app-wide dependency: any query parameter the matched route
  does not declare (``/bins/X/readings?metric=pm25``, a typo like ``?kecamatn=``) is refused;
  names that start with ``_`` (cache-busters) are let through.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import AfterValidator
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Forbidden
from api.errors import InvalidRequest
from lorong.storage import export
from lorong.storage.kecamatan import UnknownKecamatan, known_kecamatan, match_kecamatan
from lorong.storage.tables import AlertRow, DeviceRow

_KNOWN: dict[int, tuple[str, ...]] = {}
"""Declared query parameters per route (``id(route)``), computed on the route's first request."""


def one_of(allowed: Sequence[str]) -> AfterValidator:
    """A pydantic validator for an optional string parameter that must be one of ``allowed``.

    Use it as ``Annotated[str | None, Query(json_schema_extra={"enum": [...]}), one_of(...)]``;
    the 422 reads ``query parameter 'type': must be one of a, b, c (got 'x')``.
    """
    names = tuple(allowed)

    def check(value: str | None) -> str | None:
        if value is not None and value not in names:
            raise ValueError(f"must be one of {', '.join(names)}")
        return value

    return AfterValidator(check)


def resolve_kecamatan(value: str, known: Iterable[str], city: str | None = None) -> str:
    """The registered spelling of the kecamatan ``value`` names, compared without case
    (:func:`lorong.storage.kecamatan.match_kecamatan`, which ``lorong export`` uses too).

    Args:
        value: the query parameter as sent (``tamalate``).
        known: registered names (:func:`known_kecamatan`), of ``city`` only when the listing is one city's
            (a city's token: another city's kecamatan is as unknown as a made-up one).
        city: the city ``known`` is of, named in the message.

    Returns:
        the registered name (``Tamalate``); ``value`` itself when it is registered as sent.

    Raises:
        InvalidRequest: (422) no registered kecamatan matches; the message lists the known names.
    """
    try:
        return match_kecamatan(value, known, city)
    except UnknownKecamatan as exc:
        raise InvalidRequest(f"query parameter 'kecamatan': {exc}") from None


async def resolve_kecamatan_in(sessions: sessionmaker[Session], value: str, city: str | None = None) -> str:
    """:func:`resolve_kecamatan` against the registry (``city``'s kecamatan when given) read in a worker
    thread (for async routes)."""

    def known() -> list[str]:
        with sessions() as s:
            return known_kecamatan(s, city)

    return resolve_kecamatan(value, await run_in_threadpool(known), city)


def resolve_city(sessions: sessionmaker[Session], token_city: str | None, value: str | None,
                 what: str = "sees") -> str | None:
    """The city a listing is for: a city's token its own (another city asked for: 403), else ``value``
    matched against the registry without case (:func:`lorong.storage.export.match_city`, which ``lorong
    export`` uses too; not registered: 422 naming the known ids), else None (every city).

    Args:
        sessions: the registry.
        token_city: the token's city, None for a token of every city.
        value: the ``city`` query parameter, if given.
        what: the verb of the 403's message (``"sees"``: "a token of makassar sees makassar only").

    Raises:
        Forbidden: a city's token asked for another city.
        InvalidRequest: ``value`` names no registered city.
    """
    if token_city is not None:
        if value is not None and value.strip().casefold() != token_city.casefold():
            raise Forbidden(f"a token of {token_city} {what} {token_city} only")
        return token_city
    if value is None:
        return None
    with sessions() as s:
        known = export.known_cities(s)
    try:
        return export.match_city(value, known)
    except export.UnknownCityFilter as exc:
        raise InvalidRequest(f"query parameter 'city': {exc}") from None


async def resolve_city_in(sessions: sessionmaker[Session], token_city: str | None, value: str | None,
                          what: str = "sees") -> str | None:
    """:func:`resolve_city` with the registry read in a worker thread (for async routes)."""
    return await run_in_threadpool(resolve_city, sessions, token_city, value, what)


def resolve_device(sessions: sessionmaker[Session], value: str, city: str | None = None) -> str:
    """The device id a ``device_id`` filter names: as sent when a device or an alert has it, else the
    one equal to it without case (``mks-bin-0001`` finds ``MKS-BIN-0001``); ids are compared within
    ``city`` when given (a city's token learns nothing of another city's devices).

    Args:
        sessions: the registry.
        value: the query parameter as sent.
        city: the token's city, None for a token of every city.

    Raises:
        InvalidRequest: (422) neither a device nor an alert has that id, in any case.
    """
    folded = value.strip().lower()
    with sessions() as s:
        for exact in (True, False):
            found: set[str] = set()
            for column, city_column in ((DeviceRow.id, DeviceRow.city_id), (AlertRow.device_id, AlertRow.city_id)):
                q = select(column).where(column == value if exact else func.lower(column) == folded).distinct()
                found.update(s.scalars(q.where(city_column == city) if city is not None else q))
            if found:
                return value if value in found else sorted(found)[0]
    raise InvalidRequest(f"query parameter 'device_id': no device {value!r} in the registry")


async def resolve_device_in(sessions: sessionmaker[Session], value: str, city: str | None = None) -> str:
    """:func:`resolve_device` with the registry read in a worker thread (for async routes)."""
    return await run_in_threadpool(resolve_device, sessions, value, city)


def _query_names(dependant: Dependant) -> list[str]:
    """Query parameter names of ``dependant`` and its sub-dependencies, in declaration order."""
    names = [p.alias for p in dependant.query_params]
    for sub in dependant.dependencies:
        names += _query_names(sub)
    return names


def _known(route: APIRoute) -> tuple[str, ...]:
    known = _KNOWN.get(id(route))
    if known is None:
        known = tuple(dict.fromkeys(_query_names(route.dependant)))
        _KNOWN[id(route)] = known
    return known


async def reject_unknown_query(request: Request) -> None:
    """Refuse a query parameter the matched route does not declare.

    Raises:
        InvalidRequest: (422) naming the first unknown parameter and the ones the path takes.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    known = _known(route)
    # a leading underscore is a client's own parameter (a cache-buster such as ``_=1764000000``)
    unknown = [name for name in request.query_params if name not in known and not name.startswith("_")]
    if unknown:
        takes = f"this path takes {', '.join(known)}" if known else "this path takes no query parameters"
        raise InvalidRequest(f"query parameter '{unknown[0]}' is not known here; {takes}")


