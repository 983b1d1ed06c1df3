"""Where a :class:`firmware_sim.live.LiveCity` meets the real store (as :mod:`firmware_sim.load` does for a
scenario): its past loaded through the ingest pipeline (:func:`backfill`), and the bins people emptied read
back from the registry (:class:`CrewWatch`), so that a crew's "done" sticks in the simulated city.

How the city hears of a crew's "done": ``lorong demo`` runs the city in the API's process and polls
the registry (:meth:`CrewWatch.poll`, every few seconds) for

- collections made by a person (``collections.source`` other than ``sensor``: ``POST /bins/{id}/emptied``
  records ``crew``), at the collection's time;
- alerts of a type a person's emptying clears (``bin_full``, ``bin_full_soon``, ``cant_empty``: the
  catalogue's ``cleared_by_emptying``) cleared by a person (not ``system``) with a reason starting
  with "emptied" (the Telegram "Emptied" button, ``POST /alerts/{id}/clear`` with that reason), at the
  clear's time.

Polling the database needs no change to the API and works for every way of recording it (API,
Telegram, another process on the same database).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from analytics import pickups
from analytics.alerts import AlertBook
from devices.registry import DeviceUpdate, normalize_id, update_device
from firmware_sim.live import LiveCity
from firmware_sim.load import LoadReport, load_messages, register_devices
from ingest.validate import Policy
from lorong.core import alerts as catalogue
from lorong.core import schema
from lorong.core.model import Message, to_ms, utc_from_ms
from lorong.core.settings import AnalyticsSettings
from lorong.storage import retention
from lorong.storage.influx import InfluxClient, quote_ident
from lorong.storage.tables import AlertHistoryRow, AlertRow, CollectionRow, DeviceRow

log = logging.getLogger(__name__)

EMPTYING_TYPES = tuple(t.name for t in catalogue.ALERT_TYPES.values() if t.cleared_by_emptying)
"""Alert types whose clear "emptied" by a person means the bin was emptied."""


def backfill(city: LiveCity, until: datetime, sessions: sessionmaker[Session], influx: InfluxClient,
             policy: Policy | None = None, means_tz: retention.DayZones | str | None = None,
             city_id: str | None = None,
             run: set[str] | None = None, pickup_min_drop: float = AnalyticsSettings().pickup_min_drop
             ) -> LoadReport:
    """Register the city's devices (those already registered get the city's place and geometry,
    :func:`refresh_devices`), take an earlier demo's devices this run does not have out of it, in every
    city (:func:`leave_out`), then advance the city to ``until`` and load its uplinks through the ingest
    pipeline, each received at its simulated time, but for the readings the store already has (an
    earlier run's, :func:`stored_until`: a device goes on after its newest stored reading,
    :meth:`firmware_sim.live.LiveCity.resume`), and record the pickups of the loaded span
    (:func:`analytics.pickups.backfill`, as ``lorong analytics collections`` does): the analytics learn
    the bins' usual pickup times and ``dateLastEmptying`` from the past at once.

    With ``means_tz`` the hourly and daily means of the loaded span are computed too
    (:func:`lorong.storage.retention.backfill`): continuous queries only average data written after their
    interval ends, so without it a demo's past has no means (hourly exports, long API windows empty).

    Args:
        city: a live city whose clock is before ``until``.
        until: tz-aware end of the backfill (``lorong demo``: the real now).
        sessions: the Lorong database.
        influx: the InfluxDB client (its database must exist).
        policy: validation limits (the ingester's defaults unless given).
        means_tz: whose local days the daily means follow (:func:`lorong.storage.runtime.day_zones`;
            a bare IANA name: one zone for every city); ``None``: no means. The database must have
            the retention layout (``lorong storage retention apply``).
        city_id: the registry city its new devices join (``None``: the registry's only city).
        pickup_min_drop: ``pickup_min_drop`` of the city (its analytics settings).
        run: normalized ids of every device of this run, all its cities (``lorong demo --cities`` loads
            one city at a time); ``None``: the run is this city alone.

    Returns:
        the :class:`firmware_sim.load.LoadReport` (``devices_new``: devices added; ``pickups``: pickups
        recorded).

    Raises:
        pydantic.ValidationError: a registry row the registry refuses (a bad city file).
        UnknownCity: ``city_id`` is not registered, or none is given and the registry has several.
        StoreError: InfluxDB unavailable or refusing points.
    """
    rows = [{**row, "installed_by": DEMO_INSTALLER, **({"city_id": city_id} if city_id else {})}
            for row in city.registry_rows()]
    report = LoadReport(devices_new=register_devices(rows, sessions))
    refresh_devices(rows, sessions)
    leave_out({normalize_id(str(row["id"])) for row in rows} | {normalize_id(d) for d in run or ()}, sessions, until)
    start = datetime.fromtimestamp(city.clock, UTC)
    if start < until:  # an earlier run's past of the same span stays the past (LiveCity.resume)
        for device, (at, level) in stored_until(influx, start, until).items():
            city.resume(device, at, level)
    msgs = (Message(topic, payload, datetime.fromtimestamp(rx, UTC))
            for rx, topic, payload in city.advance(until.timestamp()))
    report = load_messages(msgs, sessions, influx, policy, report=report)
    if start < until:  # the loaded past's pickups, as `lorong analytics collections --hours <history>` finds them
        with sessions.begin() as s:
            _, new = pickups.backfill(s, influx, start, until, pickup_min_drop, devices=list(city.bins))
        report.pickups = len(new)
    if means_tz is not None and start < until:
        retention.backfill(influx, means_tz, start, until)
    return report


def stored_until(influx: InfluxClient, start: datetime, end: datetime) -> dict[str, tuple[datetime, float | None]]:
    """Each device's newest reading stored within ``[start, end]`` (bins and air stations).

    Returns:
        ``{device id: (time of the reading, UTC; its fillingLevel, fraction 0..1, None for an air
        station)}``.

    Raises:
        StoreError: InfluxDB unavailable or refusing the query.
    """
    out: dict[str, tuple[datetime, float | None]] = {}
    window = f"time >= {to_ms(start)}ms AND time <= {to_ms(end)}ms"
    for measurement in (schema.MEASUREMENT_BIN, schema.MEASUREMENT_AIR):
        q = (f"SELECT * FROM {quote_ident(measurement)} WHERE {window} "
             f"GROUP BY {quote_ident(schema.TAG_DEVICE)} ORDER BY time DESC LIMIT 1")
        for series in influx.query(q):
            for rec in series.records():
                level = rec.get(schema.FIELD_FILL)
                out[str(rec[schema.TAG_DEVICE])] = (utc_from_ms(rec["time"]),
                                                    float(level) if isinstance(level, int | float) else None)
    return out


REFRESHED = ("model", "codec", "lat", "lon", "kecamatan", "street", "depth_mm", "blind_zone_mm", "capacity_l",
             "report_interval_s", "installed_by")
"""Registry fields a city sets on devices registered before (by an earlier demo with another city or size)."""

DEMO_INSTALLER = "lorong demo"
"""``installed_by`` of the devices the demo registers: the ones :func:`leave_out` may take out of a run."""

LEFT_OUT = "not in this demo run (restarted with fewer devices or cities)"
"""Reason recorded on the alerts of a device :func:`leave_out` takes out of the run."""


def leave_out(keep: set[str], sessions: sessionmaker[Session], at: datetime) -> list[str]:
    """Take the active devices an earlier demo registered (``installed_by`` :data:`DEMO_INSTALLER`),
    in any city, that this run does not have out of the run (a plain ``lorong demo`` after a
    ``--cities`` run: the other cities' fleets no longer send): registry status ``in_stock``
    (not installed; the analytics job watches ``active`` devices only, so they do not turn
    ``offline``), and their active
    alerts cleared by the system at ``at`` with the reason :data:`LEFT_OUT`. A later run that has
    them again makes them ``active`` (:func:`refresh_devices`). Devices a person registered are left
    alone.

    Args:
        keep: normalized ids of this run's devices, every city's.
        sessions: the Lorong database.
        at: tz-aware time of the clears.

    Returns:
        the ids taken out, sorted.
    """
    with sessions.begin() as s:
        rows = s.scalars(select(DeviceRow).where(DeviceRow.installed_by == DEMO_INSTALLER,
                                                 DeviceRow.status == "active")).all()
        gone = sorted(r.id for r in rows if r.id not in keep)
        for dev in gone:
            update_device(s, dev, DeviceUpdate(status="in_stock"))
        book = AlertBook(s)
        for alert_id in s.scalars(select(AlertRow.id).where(AlertRow.device_id.in_(gone),
                                                            AlertRow.status == "active")).all():
            book.clear(alert_id, at, reason=LEFT_OUT)
    if gone:
        log.info("%d devices of an earlier demo are not in this run: now in_stock, their alerts cleared", len(gone))
    return gone


def refresh_devices(rows: list[dict[str, Any]], sessions: sessionmaker[Session]) -> int:
    """Give registered devices the :data:`REFRESHED` fields of their ``rows`` (fields of
    ``devices.registry.DeviceIn``), so that their fill levels follow the simulated geometry; retired
    devices and devices of another kind are left alone.

    Returns:
        how many devices changed.

    Raises:
        pydantic.ValidationError, ValueError: a row the registry refuses (a bad city file).
    """
    n = 0
    with sessions.begin() as s:
        for row in rows:
            dev = s.get(DeviceRow, normalize_id(str(row["id"])))
            if dev is None or dev.status == "retired" or dev.kind != row["kind"]:
                continue
            change = {k: row[k] for k in REFRESHED if k in row and getattr(dev, k) != row[k]}
            if dev.status == "in_stock" and row.get("installed_by") == DEMO_INSTALLER:
                change["status"] = "active"  # taken out by an earlier, smaller demo run (leave_out)
            if change:
                update_device(s, dev.id, DeviceUpdate.model_validate(change))
                n += 1
    return n


class CrewWatch:
    """Reads the bins people emptied since the last call (module docstring); the first call sees only
    what was recorded after the watch was made.

    Args:
        sessions: the Lorong database.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._failing = False
        with sessions() as s:
            self._collection_id = s.scalar(select(func.max(CollectionRow.id))) or 0
            self._history_id = s.scalar(select(func.max(AlertHistoryRow.id))) or 0

    def poll(self) -> list[tuple[str, datetime]]:
        """``(device id, when)`` per bin emptied by a person since the last call, oldest first; a bin
        recorded twice (a collection and the alert clear it made) is given once, at the earlier time."""
        seen: dict[str, datetime] = {}
        try:
            return self._poll(seen)
        except SQLAlchemyError as exc:  # the database busy or gone: try again on the next call
            if not self._failing:
                log.warning("cannot read the bins people emptied (will retry): %s", exc)
            self._failing = True
            return []

    def _poll(self, seen: dict[str, datetime]) -> list[tuple[str, datetime]]:
        with self.sessions() as s:  # rows up to the newest ids now; later ones wait for the next call
            top_c = s.scalar(select(func.max(CollectionRow.id))) or 0
            top_h = s.scalar(select(func.max(AlertHistoryRow.id))) or 0
            for device_id, at in s.execute(
                    select(CollectionRow.device_id, CollectionRow.at)
                    .where(CollectionRow.id > self._collection_id, CollectionRow.id <= top_c,
                           CollectionRow.source != "sensor")).tuples():
                seen[device_id] = min(at, seen.get(device_id, at))
            for device_id, at, details in s.execute(
                    select(AlertRow.device_id, AlertHistoryRow.at, AlertHistoryRow.details)
                    .join(AlertRow, AlertRow.id == AlertHistoryRow.alert_id)
                    .where(AlertHistoryRow.id > self._history_id, AlertHistoryRow.id <= top_h,
                           AlertHistoryRow.action == "cleared", AlertHistoryRow.actor != "system",
                           AlertRow.type.in_(EMPTYING_TYPES))).tuples():
                if str((details or {}).get("reason", "")).strip().lower().startswith("emptied"):
                    seen[device_id] = min(at, seen.get(device_id, at))
        self._collection_id, self._history_id = max(self._collection_id, top_c), max(self._history_id, top_h)
        self._failing = False
        return sorted(seen.items(), key=lambda item: item[1])
