"""Query-string checks shared by every route: a value outside a closed list, or a parameter the
path does not take, is a 422 that names what is allowed instead of being silently ignored.

- :func:`one_of` validates a string parameter against a closed list (for lists that live in code,
  such as the alert types of :data:`core.alerts.ALERT_TYPES`, where a ``Literal`` cannot be written).
- :func:`reject_unknown_query` is an app-wide dependency: any query parameter the matched route
  does not declare (``/bins/X/readings?metric=pm25``, a typo like ``?kecamatn=``) is refused;
  names that start with ``_`` (cache-busters) are let through.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import AfterValidator

from api.errors import InvalidRequest

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


