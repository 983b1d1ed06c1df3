"""The kecamatan (districts) devices are registered in, and matching a user's kecamatan filter to one.

Shared by the API (a 422 listing the known names) and ``lorong export readings`` (one ``error:`` line),
so both refuse a name no device is in the same way instead of answering with nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from lorong.storage.tables import CityRow, DeviceRow


class UnknownKecamatan(ValueError):
    """A kecamatan filter no registered device is in; the message lists the known names."""


def known_kecamatan(session: Session, city: str | None = None) -> list[str]:
    """Every kecamatan name in the registry (retired devices too: their alerts still carry it), sorted;
    only those of ``city``'s devices when given (``cities.id``)."""
    q = select(DeviceRow.kecamatan).where(DeviceRow.kecamatan != "").distinct()
    if city is not None:
        q = q.where(DeviceRow.city_id == city)
    return sorted(session.scalars(q))


def area_kecamatan(session: Session, city: str | None = None) -> list[str]:
    """The kecamatan a token's area may name: :func:`known_kecamatan` and those registered with the
    city (``cities.kecamatan``; of every city when ``city`` is None), sorted: a new city's districts
    are known before its first device is."""
    q = select(CityRow.kecamatan)
    if city is not None:
        q = q.where(CityRow.id == city)
    names = set(known_kecamatan(session, city))
    for registered in session.scalars(q):
        names.update(registered or {})
    return sorted(names)


def match_kecamatan(value: str, known: Iterable[str], city: str | None = None) -> str:
    """The registered spelling of the kecamatan ``value`` names, compared without case.

    Args:
        value: the filter as the user typed it (``tamalate``).
        known: registered names (:func:`known_kecamatan`).
        city: the city ``known`` is of, named in the message.

    Returns:
        the registered name (``Tamalate``); ``value`` itself when it is registered as sent.

    Raises:
        UnknownKecamatan: no registered kecamatan matches; the message (``no device is in 'x'; known
            kecamatan: A, B``) lists the known names, or says there are none yet.
    """
    names = sorted(set(known))
    found = registered_as(value, names)
    if found is not None:
        return found
    listed = ", ".join(names) if names else "none yet"
    of = f" of {city}" if city else ""
    raise UnknownKecamatan(f"no device{of} is in {value[:64]!r}; known kecamatan: {listed}")


def registered_as(value: str, names: Iterable[str]) -> str | None:
    """The registered name ``value`` stands for: itself when registered as sent, else the one equal to
    it ignoring case and surrounding blanks (the first in sorted order), else None."""
    names = sorted(set(names))
    if value in names:
        return value
    folded = value.strip().casefold()
    return next((n for n in names if n.casefold() == folded), None)
