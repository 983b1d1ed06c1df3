"""Current state of every bin, from SQL (``devices`` joined with ``device_latest``), kept as a snapshot.

Why a snapshot: ``GET /bins`` sorts all bins by fill level. With 5,000 bins, sorting in SQL on
the JSON ``metrics`` column cost ~15-30 ms per request on the development machine (no index can
cover a JSON path portably), too slow for a p99 under 50 ms at 200 requests/s. The snapshot is
the whole fleet, parsed and sorted once, and each request filters and slices it.

Freshness (rules in :mod:`api.snapshot`): ``device_latest`` changes when the analytics job runs
(every 30 s by default), so a few seconds more lag cost little: ``ttl_s`` 15 s, ``max_age_s`` 60 s.
Reloads are incremental (:class:`BinLoader`): a full parse of 5,000 bins cost ~0.3 s of CPU on the
(shared) development machine and, even in a background thread, slowed the requests around it.
Device changes made through this API invalidate the snapshot at once.
``stale`` and ``timeToFull_h`` depend on the clock and are computed per request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session, sessionmaker

from api.schemas import BinStatus
from api.snapshot import Snapshot
from api.state import emptied_since, is_stale, iso_time, metric_value, rate
from lorong.core.metrics import shown
from lorong.core.model import DeviceKind
from lorong.storage.tables import DeviceLatestRow, DeviceRow

_COLUMNS = (DeviceRow.id, DeviceRow.kecamatan, DeviceRow.kelurahan, DeviceRow.street, DeviceRow.landmark,
            DeviceRow.lat, DeviceRow.lon, DeviceRow.full_threshold, DeviceRow.report_interval_s, DeviceLatestRow.ts,
            DeviceLatestRow.metrics, DeviceLatestRow.derived, DeviceRow.city_id, DeviceRow.status)


@dataclass(frozen=True, slots=True)
class BinEntry:
    """One bin in a snapshot.

    Attributes:
        id: device id.
        kecamatan: district.
        fill: latest ``fillingLevel`` (0..1) or ``None``.
        observed: time of the latest reading (UTC) or ``None``.
        full_at: expected time to reach the threshold (analytics), or ``None``.
        report_interval_s: expected seconds between uplinks.
        data: the :class:`api.schemas.BinOut` fields, JSON-ready except ``stale`` and ``timeToFull_h``.
        city: the bin's city id (a token scoped to a city sees its own city's bins only).
        device_status: the registry's lifecycle status (:data:`devices.registry.STATUSES`; ``active``:
            installed and reporting).
    """

    id: str
    kecamatan: str
    fill: float | None
    observed: datetime | None
    full_at: datetime | None
    report_interval_s: int
    data: dict[str, Any]
    city: str = ""
    device_status: str = "active"

    def render(self, now: datetime) -> dict[str, Any]:
        """The :class:`api.schemas.BinOut` dict at ``now`` (``stale``, ``timeToFull_h`` filled in)."""
        out = dict(self.data)
        out["stale"] = is_stale(self.report_interval_s, self.observed, now)
        if self.full_at is not None:
            out["timeToFull_h"] = round(max(0.0, (self.full_at - now).total_seconds() / 3600.0), 3)
        elif self.data["status"] == "full":
            out["timeToFull_h"] = 0.0
        return out


def _value_of(metrics: dict[str, Any]) -> Callable[[str], float | None]:
    """``value(name)``: the number in ``metrics[name] = [value, epoch_ms]``, ``None`` if absent or malformed."""

    def value(name: str) -> float | None:
        pair: Any = metrics.get(name)
        try:
            v = pair[0]
        except (TypeError, IndexError, KeyError):
            return None
        return float(v) if type(v) in (int, float) else None

    return value


def bin_entry(row: Any, default_threshold: float) -> BinEntry:
    """A :class:`BinEntry` from one row of ``devices`` outer-joined with ``device_latest``.

    Values are rounded to their sensor's resolution (:func:`lorong.core.metrics.shown`).
    ``status``: ``noData`` never heard from; ``full`` when the level as shown is at or above the
    bin's threshold (its own or ``default_threshold``); ``dropped`` when the sensor reports tilt;
    ``lidOpen`` when it reports an open lid; else ``ok``. A bin emptied (``derived.last_emptying``: a
    truck's fall or a crew's Emptied) after its newest reading shows no level and no expected full time
    until it reports again.
    """
    metrics: dict[str, Any] = row.metrics or {}
    derived: dict[str, Any] = row.derived or {}
    level, observed = metric_value(metrics, "fillingLevel")
    level = shown("fillingLevel", level)  # status and order follow the level as shown
    observed = observed or row.ts
    emptied = iso_time(derived.get("last_emptying"))
    full_at = iso_time(derived.get("full_at"))
    if emptied_since(observed, emptied):
        level = full_at = None
    raw = _value_of(metrics)

    def value(name: str) -> float | None:
        return shown(name, raw(name))

    threshold = row.full_threshold or default_threshold
    status: BinStatus
    if row.ts is None:
        status = "noData"
    elif level is not None and level >= threshold:
        status = "full"
    elif (value("tilt") or 0.0) >= 0.5:
        status = "dropped"
    elif (value("lidOpen") or 0.0) >= 0.5:
        status = "lidOpen"
    else:
        status = "ok"
    data = {
        "id": row.id, "kecamatan": row.kecamatan, "kelurahan": row.kelurahan, "street": row.street,
        "landmark": row.landmark, "lat": row.lat, "lon": row.lon, "fillingLevel": level, "distance": value("distance"),
        "batteryLevel": value("batteryLevel"), "temperature": value("temperature"), "dateObserved": observed,
        "status": status,
        "stale": True, "fullThreshold": threshold, "fillRate_per_h": rate(derived.get("fill_rate_per_h")),
        "expectedFullAt": full_at, "timeToFull_h": None, "dateLastEmptying": iso_time(derived.get("last_emptying")),
        "deviceStatus": row.status,
    }
    return BinEntry(row.id, row.kecamatan, level, observed, full_at, row.report_interval_s, data, row.city_id,
                    row.status)


CHUNK_ROWS = 100
"""Rows between two ``pause()`` calls of a reload (see :mod:`api.snapshot`)."""


def load_bins(session: Session, default_threshold: float, device_id: str | None = None,
              pause: Callable[[], None] = lambda: None) -> list[BinEntry]:
    """Every bin that is not retired (or just ``device_id``), fullest first, never heard from last, then by id.

    ``pause()`` is called after every :data:`CHUNK_ROWS` rows.
    """
    q = (select(*_COLUMNS).outerjoin(DeviceLatestRow, DeviceLatestRow.device_id == DeviceRow.id)
         .where(DeviceRow.kind == DeviceKind.BIN.value))
    q = q.where(DeviceRow.id == device_id) if device_id is not None else q.where(DeviceRow.status != "retired")
    entries: list[BinEntry] = []
    for part in session.execute(q).partitions(CHUNK_ROWS):
        entries.extend(bin_entry(row, default_threshold) for row in part)
        pause()
    entries.sort(key=_order)
    return entries


def _order(e: BinEntry) -> tuple[bool, float, str]:
    return e.fill is None, -(e.fill or 0.0), e.id


_SIGNATURE = (DeviceRow.id, DeviceRow.status, cast(DeviceRow.updated_at, Text), cast(DeviceLatestRow.ts, Text),
              cast(DeviceLatestRow.metrics, Text), cast(DeviceLatestRow.derived, Text))
"""What identifies a bin's state: a row whose texts are unchanged needs no parsing again."""


class BinLoader:
    """:func:`load_bins` for the snapshot, incremental: only changed rows are parsed again.

    Each reload reads every bin's signature (device ``updated_at``, latest ``ts``, and the
    ``metrics``/``derived`` JSON as text: no JSON or time parsing), then loads and parses only the
    rows whose signature changed. The analytics job rewrites ``device_latest`` every run, but only
    bins that reported since have new text (for 5,000 bins every 10 min and a 30 s job, ~250).

    Args:
        sessions: SQL session factory.
        default_threshold: city-wide full threshold (fraction).
    """

    def __init__(self, sessions: sessionmaker[Session], default_threshold: float) -> None:
        self._sessions = sessions
        self._threshold = default_threshold
        self._lock = threading.Lock()
        self._known: dict[str, tuple[tuple[Any, ...], BinEntry]] = {}

    def __call__(self, pause: Callable[[], None]) -> list[BinEntry]:
        """Every bin that is not retired, in :func:`load_bins` order; ``pause()`` between chunks."""
        with self._lock, self._sessions() as s:
            base = (select(*_SIGNATURE).outerjoin(DeviceLatestRow, DeviceLatestRow.device_id == DeviceRow.id)
                    .where(DeviceRow.kind == DeviceKind.BIN.value, DeviceRow.status != "retired"))
            signatures: dict[str, tuple[Any, ...]] = {}
            for part in s.execute(base).partitions(1000):
                signatures.update((row[0], tuple(row[1:])) for row in part)
                pause()
            known = self._known
            changed = [i for i, sig in signatures.items() if i not in known or known[i][0] != sig]
            fresh: dict[str, BinEntry] = {}
            for start in range(0, len(changed), CHUNK_ROWS):
                q = (select(*_COLUMNS).outerjoin(DeviceLatestRow, DeviceLatestRow.device_id == DeviceRow.id)
                     .where(DeviceRow.id.in_(changed[start:start + CHUNK_ROWS])))
                fresh.update((row.id, bin_entry(row, self._threshold)) for row in s.execute(q))
                pause()
            self._known = {i: (sig, fresh[i]) if i in fresh else known[i]
                           for i, sig in signatures.items() if i in fresh or i in known}
            entries = [entry for _, entry in self._known.values()]
        entries.sort(key=_order)
        return entries


def pick(entries: Sequence[BinEntry], kecamatan: str | None, min_level: float | None, limit: int,
         offset: int, area: tuple[str, ...] = (), device_status: str | None = "active") -> list[BinEntry]:
    """Filter a sorted snapshot by kecamatan, area (a token's kecamatan; empty: all), registry status
    (``device_status``; ``None``: any) and minimum fill level, then skip ``offset`` and keep ``limit``."""
    out: list[BinEntry] = []
    skipped = 0
    for e in entries:
        if min_level is not None and (e.fill is None or e.fill < min_level):
            break  # sorted fullest first: no later bin reaches min_level
        if (kecamatan and e.kecamatan != kecamatan) or (area and e.kecamatan not in area):
            continue
        if device_status is not None and e.device_status != device_status:
            continue
        if skipped < offset:
            skipped += 1
            continue
        out.append(e)
        if len(out) >= limit:
            break
    return out


def bin_snapshot(sessions: sessionmaker[Session], default_threshold: float, ttl_s: float = 15.0,
                 max_age_s: float = 60.0) -> Snapshot[BinEntry]:
    """A :class:`api.snapshot.Snapshot` of every bin, loaded by :class:`BinLoader` (times in the module docstring)."""

    return Snapshot("bins", BinLoader(sessions, default_threshold), ttl_s, max_age_s)
