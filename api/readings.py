"""Aggregated readings of one device from InfluxDB: ``mean()`` per ``GROUP BY time(every)``.

The only API module that builds InfluxQL. Nothing from the request is pasted into the query text
unchecked: the device id travels as a bound parameter (``$device``, InfluxDB 1.x ``params``)
after the route has matched it against :data:`api.deps.DEVICE_ID_PATTERN`; ``every`` must match
:data:`EVERY_PATTERN` (digits and one unit letter); times are integers in epoch milliseconds;
metric and measurement names come from :mod:`lorong.core.schema` and are quoted with
:func:`lorong.storage.influx.quote_ident`.

Long windows read the means of :mod:`lorong.storage.retention` instead of the raw readings
(:func:`source`): a window over :data:`LONG_WINDOW` (7 days), or one that starts before the raw
readings' retention (``raw_days``), reads policy ``daily`` when ``every`` is a whole number of
days and policy ``hourly`` when it is a whole number of hours; a window that starts before the
hourly means' retention (``hourly_days``, when not forever) reads ``daily``. A bucket of several
hours (days) is then the plain mean of its hourly (daily) means: an hour with more readings
weighs the same as one with fewer; for ``every=1h`` (``1d``) the values equal the raw means of
each hour (local day). A window that starts before the raw retention with ``every`` under an
hour, or before the hourly retention with ``every`` under a day, is refused (422).

Short windows read the raw readings whatever ``every``: the newest hour has no hourly mean until
its continuous query runs at the end of the hour (the newest day's mean is up to 6 h old), and
seven days of raw readings of one device are a few thousand points.

Buckets of whole days start at local midnight of the device's city (its registry ``timezone``;
``analytics.timezone`` for a device of no known city), InfluxQL ``GROUP BY time(1d, <offset>)``
with the offset the city's daily means use (:func:`day_offset_s`), in every source: a Jakarta bin's
days start at 00:00 WIB (17:00 UTC), a Makassar bin's at 00:00 WITA (16:00 UTC), and ``every=1d``
gives the same buckets from raw readings as from daily means. In a zone with daylight saving time
(``Europe/Berlin``) the query groups by the zone instead (``tz('Europe/Berlin')``, :func:`day_zone`),
as its daily means do: the days the clock changes are 23 or 25 hours long. A readings request is
for one device, so it never spans cities. Other buckets are aligned to the Unix epoch (InfluxQL's rule).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from api.errors import InvalidRequest
from lorong.core import schema
from lorong.core.errors import StoreNotReady, StoreRejected
from lorong.core.metrics import METRICS, shown
from lorong.core.model import to_ms, utc_from_ms, utcnow
from lorong.storage import retention
from lorong.storage.export import MAX_SPAN
from lorong.storage.influx import InfluxClient, quote_ident, quote_literal

EVERY_PATTERN = r"^[1-9][0-9]{0,5}[smhdw]$"
"""InfluxQL duration with one unit: ``30s``, ``15m``, ``1h``, ``1d``, ``1w``."""

UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_BUCKETS = 5000
"""Most buckets one request may ask for (a year of hourly means is 8,784)."""
DEFAULT_SPAN = timedelta(hours=24)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""Time bounds accepted from clients (InfluxDB itself stops at 2262, its int64 nanosecond limit)."""

LONG_WINDOW = timedelta(days=7)
"""Windows longer than this read the hourly or daily means (when ``every`` is whole hours or days)."""

BIN_METRICS = ("fillingLevel", "distance", "batteryLevel", "temperature")
AIR_METRICS = ("pm1", "pm25", "pm10", "no2", "so2", "o3", "co", "co2", "temperature", "relativeHumidity", "pressure")


@dataclass(frozen=True, slots=True)
class Window:
    """A checked query window: ``[start, end)`` in buckets of ``every``."""

    start: datetime
    end: datetime
    every: str


def every_seconds(every: str) -> int:
    """Seconds in an ``every`` string (``"15m"`` -> 900).

    Raises:
        InvalidRequest: it does not match :data:`EVERY_PATTERN`.
    """
    if not re.fullmatch(EVERY_PATTERN, every):
        raise InvalidRequest(f"every={every!r} is not a duration: use a number and one of s, m, h, d, w (like 1h)")
    return int(every[:-1]) * UNIT_S[every[-1]]


def window(start: datetime | None, end: datetime | None, every: str, now: datetime | None = None) -> Window:
    """Fill in defaults (the last 24 h up to now) and check the window.

    Raises:
        InvalidRequest: bad ``every`` (or one longer than 400 days: InfluxDB overflows on a
            huge one), a time outside 2000..2200, ``start`` not before ``end``, a span over 400
            days, or more than :data:`MAX_BUCKETS` buckets.
    """
    step = every_seconds(every)
    end = (end or now or utcnow()).astimezone(UTC)
    start = (start or end - DEFAULT_SPAN).astimezone(UTC)
    for name, ts in (("start", start), ("end", end)):
        if not EARLIEST <= ts <= LATEST:
            raise InvalidRequest(f"{name}={ts.isoformat()} is out of range: use a time between 2000 and 2200")
    if start >= end:
        raise InvalidRequest(f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
    if end - start > MAX_SPAN:
        raise InvalidRequest(f"the window is {(end - start).days} days long: ask for at most {MAX_SPAN.days} days")
    if step > MAX_SPAN.total_seconds():
        raise InvalidRequest(f"every={every} is longer than any window ({MAX_SPAN.days} days at most)")
    buckets = (end - start).total_seconds() / step
    if buckets > MAX_BUCKETS:
        need = (end - start).total_seconds() / MAX_BUCKETS
        least = f"{need / 3600:.2f} h" if need >= 36 else f"{math.ceil(need)} s"
        raise InvalidRequest(f"every={every} gives {buckets:,.0f} buckets (most is {MAX_BUCKETS:,}): "
                             f"use an every of at least {least}, or a shorter window")
    return Window(start, end, every)


Source = Literal["raw", "hourly", "daily"]


def source(win: Window, raw_days: int, now: datetime | None = None, hourly_days: int = 0) -> Source:
    """Which data ``win`` reads: ``"raw"`` readings, ``"hourly"`` or ``"daily"`` means (rule: module docstring).

    Args:
        win: a checked window.
        raw_days: days raw readings are kept (``influx.raw_days``).
        now: the current time (tests); default the clock.
        hourly_days: days hourly means are kept (``influx.hourly_days``; 0 = forever).

    Raises:
        InvalidRequest: ``every`` under an hour for a window that starts before the raw horizon
            (``now - raw_days``), where no raw readings are left, or under a day for one that
            starts before the hourly horizon.
    """
    now = now or utcnow()
    step = every_seconds(win.every)
    whole_hours, whole_days = step % 3600 == 0, step % 86400 == 0
    if hourly_days and win.start < (hourly := now - timedelta(days=hourly_days)):
        if not whole_days:
            raise InvalidRequest(f"hourly means are kept {hourly_days} days: for times before "
                                 f"{hourly:%Y-%m-%d %H:%M} UTC ask for every=1d or longer (daily means)")
        return "daily"
    horizon = now - timedelta(days=raw_days)
    if win.start < horizon and not whole_hours:
        raise InvalidRequest(f"raw readings are kept {raw_days} days: for times before {horizon:%Y-%m-%d %H:%M} UTC "
                             "ask for every=1h or longer (hourly means)")
    if not (win.end - win.start > LONG_WINDOW or win.start < horizon):
        return "raw"
    return "daily" if whole_days else "hourly" if whole_hours else "raw"


def day_offset_s(every: str, tz: str, at: datetime) -> int:
    """Offset of ``every``'s buckets from the epoch-aligned ones, seconds: local midnight of ``tz``
    (the city's zone; the offset of its daily means, :func:`lorong.storage.retention.day_offset_s`)
    when ``every`` is whole days, else 0.

    ``Asia/Makassar`` (UTC+8) gives 57600 (16:00 UTC), ``Asia/Jakarta`` (UTC+7) 61200; Indonesia's
    zones keep one offset all year. A zone with daylight saving time gives 0: its days come from
    :func:`day_zone`.
    """
    if every_seconds(every) % 86400 or retention.has_dst(tz, at):
        return 0
    return retention.day_offset_s(tz, at)


def day_zone(every: str, tz: str, at: datetime) -> str | None:
    """``tz`` when ``every`` is whole days and ``tz`` has daylight saving time
    (:func:`lorong.storage.retention.has_dst`): the buckets are then its local days (InfluxQL ``tz()``),
    as its daily means are; else None (a fixed offset, :func:`day_offset_s`)."""
    if every_seconds(every) % 86400 or not retention.has_dst(tz, at):
        return None
    return tz


def units(metrics: Sequence[str]) -> dict[str, str]:
    """``{metric: canonical unit}`` from :mod:`lorong.core.metrics` (``"1"`` is a 0..1 fraction)."""
    return {m: METRICS[m].unit for m in metrics}


def mean_series(influx: InfluxClient, measurement: str, device_id: str, metrics: Sequence[str],
                win: Window, rp: Source = "raw", offset_s: int = 0, tz: str | None = None) -> list[dict[str, Any]]:
    """Mean of each metric of one device per time bucket.

    Runs ``SELECT mean("m") AS "m", ... FROM "<measurement>" WHERE "device_id" = $device AND
    time >= <start>ms AND time < <end>ms GROUP BY time(<every>[, <offset_s>s]) fill(none) [tz('<tz>')]``.
    Buckets are aligned to the Unix epoch plus ``offset_s`` (in local time of ``tz`` when given), so the
    first one may start before ``win.start``.

    Args:
        influx: client on the Lorong database.
        measurement: a :mod:`lorong.core.schema` measurement name.
        device_id: an id already checked against the registry pattern (sent as a bound parameter).
        metrics: canonical metric names (keys of :data:`lorong.core.metrics.METRICS`).
        win: a checked :class:`Window`.
        rp: ``raw`` (the database's default policy), ``hourly`` or ``daily`` (:func:`source`).
        offset_s: bucket offset, seconds (:func:`day_offset_s`).
        tz: IANA zone whose local days the buckets are (:func:`day_zone`), or None.

    Returns:
        one dict per non-empty bucket, oldest first: ``dateObserved`` (UTC datetime, bucket start)
        and each metric's mean (float in its canonical unit rounded to the sensor's resolution,
        :func:`lorong.core.metrics.shown`; ``None`` when the bucket has none).

    Raises:
        StoreUnavailable: InfluxDB is not reachable.
        StoreRejected: InfluxDB refused the query.
        StoreNotReady: ``rp`` is ``hourly`` or ``daily`` and the database has no such policy.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"not canonical metrics: {unknown}")
    every_seconds(win.every)
    cols = ", ".join(f"mean({quote_ident(m)}) AS {quote_ident(m)}" for m in metrics)
    source_name = quote_ident(measurement) if rp == "raw" else f"{quote_ident(rp)}.{quote_ident(measurement)}"
    q = (f"SELECT {cols} FROM {source_name} WHERE {quote_ident(schema.TAG_DEVICE)} = $device "
         f"AND time >= {to_ms(win.start)}ms AND time < {to_ms(win.end)}ms "
         f"GROUP BY time({win.every}{f', {offset_s}s' if offset_s else ''}) fill(none)"
         + (f" tz({quote_literal(tz)})" if tz else ""))
    out: list[dict[str, Any]] = []
    try:
        found = influx.query(q, {"device": device_id})
    except StoreRejected as exc:
        if "retention policy not found" in str(exc):
            raise StoreNotReady(f"InfluxDB has no {rp} means: run `lorong storage retention apply`") from exc
        raise
    for series in found:
        for row in series.values:
            rec = dict(zip(series.columns, row, strict=True))
            item: dict[str, Any] = {"dateObserved": utc_from_ms(rec.pop("time"))}
            item.update({m: shown(m, float(v) if v is not None else None) for m, v in rec.items()})
            out.append(item)
    return out
