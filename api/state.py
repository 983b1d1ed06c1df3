"""Current state of air stations, and helpers shared with :mod:`api.bin_state`; SQL only.

``device_latest.metrics`` holds ``{metric: [value, epoch_ms]}`` (refreshed by the analytics job
from InfluxDB); ``device_latest.derived`` holds the analytics results (bins ``fill_rate_per_h``,
``full_at``, ``last_emptying``; stations ``ispu``, ``ispu_category``, ``critical_pollutant``,
``us_aqi``, ``us_aqi_category``). No InfluxQL here: an API answer must not wait for InfluxDB
(see :mod:`analytics.latest` for the measured cost of ``last()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from analytics.aqi import ISPU_CATEGORIES, US_CATEGORIES, Category, ispu_category, us_aqi_category
from api.schemas import StationOut
from lorong.core.metrics import shown
from lorong.core.model import DeviceKind, utc_from_ms
from lorong.storage.tables import DeviceLatestRow, DeviceRow

STALE_INTERVALS = 3
"""A device is stale when its latest reading is older than this many report intervals."""

Pair = tuple[DeviceRow, DeviceLatestRow | None]


def ispu_expr() -> ColumnElement[float]:
    """SQL expression of a station's ISPU from ``derived``, NULL if none."""
    return cast(ColumnElement[float], DeviceLatestRow.derived["ispu"].as_float())


def station_pairs(session: Session, kecamatan: str | None = None, limit: int = 100,
                  offset: int = 0, city: str | None = None) -> Sequence[Pair]:
    """Air stations (not retired; of ``city`` only when given) with their latest row, highest ISPU
    first (none last), then by id."""
    key = ispu_expr()
    q = (select(DeviceRow, DeviceLatestRow)
         .outerjoin(DeviceLatestRow, DeviceLatestRow.device_id == DeviceRow.id)
         .where(DeviceRow.kind == DeviceKind.AIR.value, DeviceRow.status != "retired"))
    if kecamatan:
        q = q.where(DeviceRow.kecamatan == kecamatan)
    if city is not None:
        q = q.where(DeviceRow.city_id == city)
    q = q.order_by(key.is_(None), key.desc(), DeviceRow.id).limit(limit).offset(offset)
    return [(d, latest) for d, latest in session.execute(q).tuples()]


RATE_DECIMALS = 4
"""Digits of a fill rate shown (fraction per hour): 0.0001/h is 0.1 mm an hour in a 1 m bin, finer
than the 1 mm a sensor resolves over the hours a rate is measured on."""


def rate(value: Any) -> float | None:
    """A fill rate from ``derived`` (fraction per hour) rounded to :data:`RATE_DECIMALS`, else ``None``."""
    num = number(value)
    return None if num is None else round(num, RATE_DECIMALS)


def emptied_since(read_at: datetime | None, emptied_at: datetime | None) -> bool:
    """True when a bin was emptied (a truck's fall or a crew's Emptied at ``emptied_at``) after its
    newest reading (``read_at``; None: none yet): the level that reading gave says nothing about it
    now, so it is shown as unknown until the bin reports again."""
    return emptied_at is not None and (read_at is None or emptied_at > read_at)


def metric_value(metrics: dict[str, Any], name: str) -> tuple[float | None, datetime | None]:
    """``(value, time)`` of ``metrics[name]`` stored as ``[value, epoch_ms]``; ``(None, None)`` if absent/bad."""
    pair = metrics.get(name)
    if not isinstance(pair, list | tuple) or len(pair) != 2 or not isinstance(pair[0], int | float):
        return None, None
    ts = utc_from_ms(pair[1]) if isinstance(pair[1], int | float) else None
    return float(pair[0]), ts


def iso_time(value: Any) -> datetime | None:
    """A tz-aware datetime from an ISO-8601 string with offset, else ``None``."""
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else None


def number(value: Any) -> float | None:
    """``value`` as a float when it is an int or float (not a bool), else ``None``."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def is_stale(report_interval_s: int, observed: datetime | None, now: datetime) -> bool:
    """True when nothing was heard, or the last reading is older than :data:`STALE_INTERVALS` intervals."""
    if observed is None:
        return True
    return now - observed > timedelta(seconds=STALE_INTERVALS * max(report_interval_s, 1))


def category_key(value: Any, index: int | None, categories: Sequence[Category]) -> str | None:
    """A category key (``tidak_sehat``) from whatever analytics stored: a key, a name in either
    language, or nothing (then the category of ``index``, if any)."""
    if isinstance(value, str):
        for cat in categories:
            if value.casefold() in (cat.key, cat.name_id.casefold(), cat.name_en.casefold()):
                return cat.key
    if index is None:
        return None
    return (ispu_category if categories is ISPU_CATEGORIES else us_aqi_category)(index).key


def _index(value: Any) -> int | None:
    num = number(value)
    return round(num) if num is not None and num >= 0 else None


def station_out(device: DeviceRow, latest: DeviceLatestRow | None, now: datetime) -> StationOut:
    """The API view of one air station (see :class:`api.schemas.StationOut`); values rounded to
    their sensor's resolution (:func:`lorong.core.metrics.shown`)."""
    metrics = latest.metrics if latest else {}
    derived = latest.derived if latest and latest.derived else {}
    observed = latest.ts if latest else None
    ispu, us = _index(derived.get("ispu")), _index(derived.get("us_aqi"))
    critical = derived.get("critical_pollutant")

    def value(name: str) -> float | None:
        return shown(name, metric_value(metrics, name)[0])

    if isinstance(critical, list | tuple):
        critical = ",".join(str(c) for c in critical)
    return StationOut(
        id=device.id, kecamatan=device.kecamatan, kelurahan=device.kelurahan, street=device.street,
        landmark=device.landmark, lat=device.lat, lon=device.lon, dateObserved=observed,
        stale=is_stale(device.report_interval_s, observed, now),
        pm1=value("pm1"), pm25=value("pm25"), pm10=value("pm10"), temperature=value("temperature"),
        relativeHumidity=value("relativeHumidity"),
        ispu=ispu, ispuCategory=category_key(derived.get("ispu_category"), ispu, ISPU_CATEGORIES),
        usAqi=us, usAqiCategory=category_key(derived.get("us_aqi_category"), us, US_CATEGORIES),
        criticalPollutant=critical if isinstance(critical, str) and critical else None,
        pm25_1h=shown("pm25", number(derived.get("pm25_1h"))), pm25_24h=shown("pm25", number(derived.get("pm25_24h"))),
        aqiHours=_index(derived.get("aqi_hours")),
        aqiComplete=derived["aqi_complete"] if isinstance(derived.get("aqi_complete"), bool) else None,
    )
