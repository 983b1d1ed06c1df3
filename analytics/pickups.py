"""Pickup detection: a sharp fall of a bin's fill level is a collection (FIWARE WasteContainer
``dateLastEmptying``), kept in the SQL table ``collections`` and as a point of the InfluxDB
measurement ``collection`` (:mod:`lorong.core.schema`).

A step between two consecutive readings is a pickup when the level falls by at least
``pickup_min_drop`` (0.3: well above ultrasonic jitter of about 1 % and waste settling, below
any real emptying of a bin worth emptying; our choice), less :data:`FALL_TOLERANCE` (the two
readings' own error: a truck that took 0.31 can show as a fall of 0.29), and it is not a glitch:

* the reading after the fall must exist and must not jump back up by half the fall or more
  (one low reading = something in front of the sensor, or a lost echo), so a pickup is recorded
  one reading late;
* the step into the reading before the fall must be known and must not be a rise by half the
  fall or more (one high reading, then back: a bag held over the sensor); the job runs far more
  often than its window is long, so a real pickup was already seen by the runs whose window held
  the reading before it.

Detection runs on the raw recent points the job already holds (:func:`detect`); a pickup is
stored once (unique device and time), so running the job twice adds nothing. Longer outages can
be backfilled with :func:`detect_in_influx`, which has InfluxDB compute the steps.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from analytics.frames import jumps
from lorong.core import schema
from lorong.core.model import to_ms
from lorong.storage.influx import InfluxClient, line
from lorong.storage.tables import CollectionRow, DeviceRow

log = logging.getLogger(__name__)

FALL_TOLERANCE = 0.024
"""How much smaller than the truck's real take a fall between two readings can look: each reading
is off by up to +-10 mm (EM310-UDL datasheet accuracy), +-1.2 % of a bin 850 mm deep from the
sensor's blind zone to its floor, so two of them by up to 2.4 %."""


@dataclass(frozen=True, slots=True)
class Pickup:
    """A detected collection.

    Attributes:
        device_id: the bin.
        at: time of the first reading after the fall (UTC).
        level_before: fillingLevel before, 0..1.
        level_after: fillingLevel after, 0..1.
    """

    device_id: str
    at: datetime
    level_before: float
    level_after: float


def _confirmed(delta: np.ndarray, prev_delta: np.ndarray, next_delta: np.ndarray, min_drop: float,
               need_prev: bool = False) -> np.ndarray:
    """Which falls are pickups (at least ``min_drop`` less :data:`FALL_TOLERANCE`); ``need_prev``: a
    fall whose step before is unknown (NaN) is not one."""
    drop = delta <= -(min_drop - FALL_TOLERANCE)
    half = -delta / 2.0
    no_rebound = ~np.isnan(next_delta) & (next_delta < half)
    no_spike = (prev_delta < half) if need_prev else (np.isnan(prev_delta) | (prev_delta < half))
    return np.asarray(drop & no_rebound & no_spike)


def detect(recent: pd.DataFrame, min_drop: float) -> list[Pickup]:
    """Pickups among raw points.

    Args:
        recent: long frame sorted by device_id and time, with ``fillingLevel`` (see
            :func:`analytics.frames.recent_points`).
        min_drop: smallest fall that counts, fraction 0..1.

    Returns:
        Confirmed pickups (see the module docstring), by device and time.
    """
    if recent.empty or "fillingLevel" not in recent:
        return []
    f = recent.loc[recent["fillingLevel"].notna(), ["device_id", "time", "fillingLevel"]]
    by = f.groupby("device_id", sort=False)["fillingLevel"]
    delta, prev_level = by.diff(), by.shift(1)
    prev_delta = delta.groupby(f["device_id"], sort=False).shift(1)
    next_delta = delta.groupby(f["device_id"], sort=False).shift(-1)
    # the step into the reading before the fall must be seen: at the start of the window a high
    # reading (a bag over the sensor) followed by the bin's real level would look like a pickup
    hit = _confirmed(delta.to_numpy(dtype=float), prev_delta.to_numpy(dtype=float),
                     next_delta.to_numpy(dtype=float), min_drop, need_prev=True)
    rows = f[hit]
    return [Pickup(str(d), t.to_pydatetime(), float(b), float(a))
            for d, t, b, a in zip(rows["device_id"], rows["time"], prev_level[hit], rows["fillingLevel"], strict=True)]


def detect_in_influx(influx: InfluxClient, start: datetime, end: datetime, min_drop: float) -> list[Pickup]:
    """Pickups within ``(start, end]`` computed from InfluxDB's ``difference`` of every bin
    (:func:`analytics.frames.jumps`): for backfilling after an outage of the job.

    The steps InfluxDB returns are those of at least half ``min_drop``: enough to see a
    rebound or a spike next to a fall.
    """
    steps = jumps(influx, schema.MEASUREMENT_BIN, schema.FIELD_FILL, start, end, min_drop / 2.0)
    if steps.empty:
        return []
    g = steps.groupby("device_id", sort=False)
    prev_t, next_prev_t = g["time"].shift(1), g["prev_time"].shift(-1)
    prev_d, next_d = g["delta"].shift(1), g["delta"].shift(-1)
    # neighbours count only when adjacent: the previous step ends where this one starts, etc.
    prev_adj = prev_d.where(prev_t == steps["prev_time"])
    next_adj = next_d.where(next_prev_t == steps["time"])
    # no adjacent big step after a fall: the next reading stayed low, or there is none yet (a
    # backfill cannot tell; the regular job waits for that next reading)
    next_filled = next_adj.fillna(0.0)
    hit = _confirmed(steps["delta"].to_numpy(dtype=float), prev_adj.to_numpy(dtype=float),
                     next_filled.to_numpy(dtype=float), min_drop)
    rows = steps[hit]
    return [Pickup(str(d), t.to_pydatetime(), round(float(b), 6), round(float(a), 6))
            for d, t, b, a in zip(rows["device_id"], rows["time"], rows["before"], rows["after"], strict=True)]


def backfill(session: Session, influx: InfluxClient, start: datetime, end: datetime, min_drop: float,
             devices: Collection[str] | None = None) -> tuple[list[Pickup], list[Pickup]]:
    """Detect the pickups within ``(start, end]`` in InfluxDB (:func:`detect_in_influx`) and store
    those of registered devices not stored yet (:func:`record`, with each device's kecamatan and city from the registry;
    the caller commits): ``lorong analytics collections`` after an outage of the job, ``lorong demo``
    after loading a city's past.

    Args:
        start, end: tz-aware window.
        min_drop: ``pickup_min_drop`` of the devices' city (see the module docstring).
        devices: only these device ids (``None``: every bin).

    Returns:
        ``(found, new)``: the pickups found in InfluxDB and those of them that were new.

    Raises:
        StoreUnavailable, StoreRejected: InfluxDB unavailable or refusing the points.
    """
    found = detect_in_influx(influx, start, end, min_drop)
    if devices is not None:
        keep = set(devices)
        found = [p for p in found if p.device_id in keep]
    places = session.execute(select(DeviceRow.id, DeviceRow.kecamatan, DeviceRow.city_id)).tuples().all()
    registered = {d for d, _, _ in places}  # a purged city's readings stay in InfluxDB: not its pickups again
    new = record(session, influx, [p for p in found if p.device_id in registered],
                 {d: k or "" for d, k, _ in places}, {d: c for d, _, c in places if c})
    return found, new


def stored(session: Session, start: datetime, end: datetime) -> list[CollectionRow]:
    """The pickups stored with ``start <= at <= end`` (both tz-aware), sensor-detected and reported by a
    person alike, oldest first (then by device id)."""
    q = (select(CollectionRow).where(CollectionRow.at >= start, CollectionRow.at <= end)
         .order_by(CollectionRow.at, CollectionRow.device_id))
    return list(session.scalars(q))


SAME_EMPTYING = timedelta(minutes=60)
"""A sensor's fall this close to a person's "Emptied" for the same bin is that emptying: a round
empties a bin once, and the fall shows on the sensor's next uplink, at most one report interval
later (60 min, the longest Lorong's devices use by default) or earlier when the report came late."""
SAME_EMPTYING_MS = int(SAME_EMPTYING.total_seconds() * 1000)


def record(session: Session, influx: InfluxClient, pickups: Sequence[Pickup],
           kecamatan: dict[str, str], city: dict[str, str] | None = None) -> list[Pickup]:
    """Store pickups not stored yet: InfluxDB ``collection`` points first, then SQL rows
    (the caller commits). A failed InfluxDB write raises before anything is added to the session.
    A pickup within :data:`SAME_EMPTYING` of a person's report on the bin that has no level after
    yet completes that report (level after) instead of adding a row; one whose report is complete
    is not new.

    Returns:
        The pickups that were new.

    Raises:
        StoreUnavailable, StoreRejected: the InfluxDB write failed.
    """
    if not pickups:
        return []
    lo, hi = min(p.at for p in pickups), max(p.at for p in pickups)
    seen = {(d, to_ms(a)) for d, a in session.execute(
        select(CollectionRow.device_id, CollectionRow.at).where(CollectionRow.at >= lo, CollectionRow.at <= hi))}
    new = [p for p in pickups if (p.device_id, to_ms(p.at)) not in seen]
    # a person's report of the same emptying: the sensor confirms it (its level after), no second row
    reports: dict[str, list[CollectionRow]] = {}
    for row in session.scalars(select(CollectionRow).where(  # reports are few: no list of devices
            CollectionRow.source == "crew", CollectionRow.at >= lo - SAME_EMPTYING,
            CollectionRow.at <= hi + SAME_EMPTYING)):
        reports.setdefault(row.device_id, []).append(row)
    confirms: list[tuple[Pickup, CollectionRow]] = []
    fresh: list[Pickup] = []
    for p in new:
        near = [r for r in reports.get(p.device_id, []) if abs(to_ms(r.at) - to_ms(p.at)) <= SAME_EMPTYING_MS]
        if not near:
            fresh.append(p)
        elif near[0].level_after is None:
            confirms.append((p, near[0]))
    new = fresh + [p for p, _ in confirms]
    if not new:
        return []
    influx.write_lines([
        line(schema.MEASUREMENT_COLLECTION,
             {schema.TAG_DEVICE: p.device_id, schema.TAG_KECAMATAN: kecamatan.get(p.device_id, ""),
              schema.TAG_CITY: (city or {}).get(p.device_id, "")},
             {"before": round(p.level_before, 6), "after": round(p.level_after, 6)}, to_ms(p.at))
        for p in new
    ])
    # one executemany (ORM bulk INSERT): a morning round brings thousands at once
    if fresh:
        session.execute(insert(CollectionRow), [{"device_id": p.device_id, "at": p.at, "level_before": p.level_before,
                                                 "level_after": p.level_after, "source": "sensor"} for p in fresh])
    for p, row in confirms:
        row.level_after = p.level_after
        if row.level_before is None:
            row.level_before = p.level_before
    log.info("%d new pickups recorded", len(new))
    return new


@dataclass(frozen=True, slots=True)
class History:
    """A bin's recent collections, oldest first: times (UTC), levels before each pickup and, when
    the sensor saw the fall (None for a person's report it has not confirmed), the level after."""

    at: list[datetime]
    level_before: list[float]
    level_after: list[float | None] = field(default_factory=list)

    def after_pickups(self, before: datetime) -> list[tuple[int, float]]:
        """``(epoch ms, level after)`` of the pickups before ``before`` whose level after is known
        (:func:`analytics.fillprofile.pickup_increments`)."""
        return [(to_ms(a), la) for a, la in zip(self.at, self.level_after, strict=False)
                if la is not None and a < before]

    def intervals(self) -> tuple[np.ndarray, np.ndarray]:
        """``(durations_h, levels_before)`` of each interval between two consecutive pickups."""
        if len(self.at) < 2:
            return np.zeros(0), np.zeros(0)
        t = np.array([to_ms(a) for a in self.at], dtype=float)
        return np.diff(t) / 3.6e6, np.array(self.level_before[1:], dtype=float)


def last_at(session: Session, now: datetime, days: int = 60) -> dict[str, datetime]:
    """Each bin's newest pickup within ``days`` before ``now`` (``history(...)[d].at[-1]``, one grouped
    query): what a run knows of the pickups before it reads the raw points (:func:`analytics.bins.prefetch_hourly`)."""
    q = (select(CollectionRow.device_id, func.max(CollectionRow.at))
         .where(CollectionRow.at > now - timedelta(days=days), CollectionRow.at <= now)
         .group_by(CollectionRow.device_id))
    return {d: at for d, at in session.execute(q)}


def history(session: Session, now: datetime, per_device: int = 21, days: int = 60,
            city: str | None = None) -> dict[str, History]:
    """The newest ``per_device`` pickups of every bin within ``days`` before ``now`` (of the bins of
    ``city`` only, when given).

    One SQL query with ``row_number() OVER (PARTITION BY device_id ORDER BY at DESC)`` (SQLite
    3.25+, PostgreSQL).
    """
    rn = func.row_number().over(partition_by=CollectionRow.device_id, order_by=CollectionRow.at.desc()).label("rn")
    where = [CollectionRow.at > now - timedelta(days=days), CollectionRow.at <= now]
    if city is not None:
        where.append(CollectionRow.device_id.in_(select(DeviceRow.id).where(DeviceRow.city_id == city)))
    sub = (select(CollectionRow.device_id, CollectionRow.at, CollectionRow.level_before, CollectionRow.level_after, rn)
           .where(*where).subquery())
    q = select(sub.c.device_id, sub.c.at, sub.c.level_before, sub.c.level_after).where(
        sub.c.rn <= per_device).order_by(sub.c.device_id, sub.c.at)
    out: dict[str, History] = {}
    for device_id, at, before, after in session.execute(q):
        h = out.setdefault(device_id, History([], [], []))
        h.at.append(at)
        h.level_before.append(float(before))
        h.level_after.append(None if after is None else float(after))
    return out
