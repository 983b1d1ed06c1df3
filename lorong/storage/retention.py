"""Data that lasts years: retention policies, hourly and daily means, backfill.

Layout of the Lorong database (InfluxDB 1.x retention policies and continuous queries,
https://docs.influxdata.com/influxdb/v1/guides/downsample_and_retain/):

==========  =====================  ==============  ===========================================
policy      keeps                  duration        shard group (InfluxDB's recommendation)
==========  =====================  ==============  ===========================================
``raw``     every point written    ``raw_days``    1 d (so expiry happens day by day)
            (the database default)
``hourly``  hourly means           ``hourly_days`` 7 d
``daily``   daily means            ``daily_days``  7 d
==========  =====================  ==============  ===========================================

InfluxDB drops a whole shard group once its end is older than the policy's duration, so raw
readings live between ``raw_days`` and ``raw_days + 1`` days; its retention service checks every
``[retention] check-interval`` (30 min by default).

The means cover the readings measurements (:data:`lorong.core.schema.DOWNSAMPLED`): each continuous
query writes ``mean(<metric>) AS <metric>`` for every canonical metric (:mod:`lorong.core.metrics`) into
the same measurement name in ``hourly`` / ``daily``, grouped by every tag (``GROUP BY *``), so a
reader swaps the policy and keeps its query. Hourly buckets are UTC hours. Daily buckets are the
local days of each point's city (:class:`DayZones`): one daily continuous query per measurement and
UTC offset among the registered cities' zones that keep one offset all year (``GROUP BY time(1d,
<offset>)``; Indonesia's zones have no daylight saving time), and one per zone with daylight saving
time (:func:`has_dst`), grouped by the zone (``GROUP BY time(1d), * tz('Europe/Berlin')``: its days
are 23 or 25 hours long when the clock changes; InfluxDB 1.6.7 groups by the zone and also starts
the continuous query's windows at its local midnights, influxdata/influxdb#8606; measured on 1.6.7
around the changes of Europe/Berlin, America/New_York, Australia/Lord_Howe and America/Santiago),
each restricted to its cities by a ``WHERE`` on the ``city`` tag. The
query of the default zone (``analytics.timezone``) takes every point that is not of a city in
another zone (``"city" != 'jakarta' AND ...``): points without a city tag (older data; InfluxQL
compares a missing tag as the empty string, so ``!=`` matches it: measured on InfluxDB 1.6.7) and
points of a city missing from the registry get the default zone's days. Daily means are means of the
raw readings of the day, not of the hourly means.

A city registered in a new zone needs :func:`apply` again (``lorong cities add`` runs it when InfluxDB
answers). Days averaged before a city's zone got its own query keep the old zone's day boundaries:
InfluxDB 1.x deletes only from every retention policy at once (``DELETE FROM "daily".…`` is refused),
so :func:`apply` leaves them.

Continuous queries only aggregate new data, at the end of each interval: ``RESAMPLE EVERY 1h FOR
3h`` recomputes the last three hours every hour (an uplink that arrives up to ~2 h late, from a
gateway's or the ingester's spool, is still counted), ``RESAMPLE EVERY 6h FOR 2d`` the last two
local days. Means of data already stored are filled by :func:`backfill`, which runs the very
``SELECT ... INTO`` of the continuous query over past time windows (``lorong storage retention
backfill``). :func:`apply` does both on an existing database: it creates or changes the policies,
replaces the continuous queries whose definition changed (their name carries a digest of it), and
moves the data of a pre-retention database (everything in ``autogen``) into ``raw``, backfilling
its means first, then drops ``autogen``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from lorong.core import schema
from lorong.core.errors import StoreNotReady
from lorong.core.metrics import METRICS
from lorong.core.model import to_ms
from lorong.core.settings import InfluxSettings
from lorong.storage.influx import InfluxClient, quote_ident, quote_literal

log = logging.getLogger(__name__)

CQ_PREFIX = "lorong_"
"""Continuous queries whose name starts with this belong to Lorong (others are left alone)."""
AUTOGEN = "autogen"
DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class Policy:
    """One retention policy Lorong wants.

    Attributes:
        name: policy name (:data:`lorong.core.schema.RP_RAW` ...).
        days: duration in days, 0 = forever (``INF``).
        shard_days: shard group duration in days.
        default: the database's default policy (where writes without ``rp`` go).
    """

    name: str
    days: int
    shard_days: int
    default: bool = False

    def clause(self) -> str:
        """``DURATION 90d REPLICATION 1 SHARD DURATION 1d [DEFAULT]``."""
        duration = f"{self.days}d" if self.days else "INF"
        return (f"DURATION {duration} REPLICATION 1 SHARD DURATION {self.shard_days}d"
                + (" DEFAULT" if self.default else ""))


@dataclass(frozen=True, slots=True)
class DayZones:
    """Whose local days the daily means follow.

    Attributes:
        default: IANA zone of points without a city tag and of cities not in ``cities``
            (``analytics.timezone``).
        cities: ``{city id: IANA zone}`` of the registered cities (``cities.timezone``).
    """

    default: str
    cities: Mapping[str, str] = field(default_factory=dict)

    def zone(self, city: str | None) -> str:
        """The IANA zone of ``city``'s days (the default zone for ``None`` or an unknown city)."""
        return self.cities.get(city or "", self.default)


def as_zones(zones: DayZones | str) -> DayZones:
    """``zones``, or one zone for every point when given a bare IANA name."""
    return zones if isinstance(zones, DayZones) else DayZones(zones)


def has_dst(tz: str, at: datetime) -> bool:
    """True when ``tz`` changes its UTC offset within a year either side of ``at`` (daylight saving
    time; ``Europe/Berlin``, ``America/New_York``), False for a zone that keeps one offset
    (``Asia/Jakarta``, ``Asia/Makassar``, ``Asia/Jayapura``: Indonesia has no DST). Checked day by
    day in the IANA database (:mod:`zoneinfo`), so a short DST period is not missed."""
    return _has_dst(tz, at.astimezone(UTC).date())


@functools.lru_cache(maxsize=256)
def _has_dst(tz: str, day: date) -> bool:
    zone = ZoneInfo(tz)
    noon = datetime(day.year, day.month, day.day, 12)
    return len({zone.utcoffset(noon + timedelta(days=d)) for d in range(-366, 367)}) > 1


def local_midnight(day: date, tz: str) -> datetime:
    """Start of the local calendar day ``day`` in ``tz``, tz-aware UTC. Where the clock jumps over
    midnight (``America/Santiago`` in September) the day starts at the jump, 01:00 local, as
    InfluxQL's ``tz()`` starts it (measured on InfluxDB 1.6.7)."""
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def day_offset_s(tz: str, at: datetime) -> int:
    """Start of ``tz``'s local day after the UTC day's start, seconds in ``[0, 86400)`` at ``at``
    (``Asia/Makassar``, UTC+8: 57600, local midnight is 16:00 UTC; ``Asia/Jakarta``: 61200)."""
    offset = ZoneInfo(tz).utcoffset(at.astimezone(UTC).replace(tzinfo=None))
    return int(-(offset or timedelta()).total_seconds()) % DAY_S


@dataclass(frozen=True, slots=True)
class Level:
    """One level of means (for daily means: of the cities of one UTC offset).

    Attributes:
        name: ``hourly`` or ``daily`` (also the policy holding them).
        bucket_s: bucket length, seconds.
        offset_s: bucket start after the epoch-aligned boundary, seconds (local midnight for days).
        resample: the continuous query's ``RESAMPLE`` clause.
        chunk_s: length of one backfill statement's window, seconds (bounds influxd's memory).
        where: InfluxQL condition on the ``city`` tag selecting the points of this level ("" = all).
        label: part of the continuous query's name telling the zone (``utc+0700``, ``europe-berlin``;
            "" for hourly).
        tz: IANA zone of a zone with daylight saving time: the buckets are its local days, 23 or 25
            hours long on the days the clock changes (InfluxQL ``tz()``, ``offset_s`` 0); "" for
            buckets of fixed length (every zone of Indonesia).
    """

    name: str
    bucket_s: int
    offset_s: int
    resample: str
    chunk_s: int
    where: str = ""
    label: str = ""
    tz: str = ""

    def group_by(self) -> str:
        """``time(3600s)`` or ``time(86400s, 57600s)`` (the ``tz()`` clause is :meth:`tz_clause`)."""
        off = f", {self.offset_s}s" if self.offset_s else ""
        return f"time({self.bucket_s}s{off})"

    def tz_clause(self) -> str:
        """`` tz('Europe/Berlin')`` for a level in a zone with daylight saving time, else ""."""
        return f" tz({quote_literal(self.tz)})" if self.tz else ""

    def floor(self, ts: datetime) -> datetime:
        """Start of the bucket holding ``ts`` (tz-aware)."""
        if self.tz:
            return local_midnight(ts.astimezone(ZoneInfo(self.tz)).date(), self.tz)
        ms = to_ms(ts) - self.offset_s * 1000
        start_ms = ms - ms % (self.bucket_s * 1000) + self.offset_s * 1000
        return datetime.fromtimestamp(start_ms / 1000, UTC)

    def shift(self, start: datetime, seconds: int) -> datetime:
        """The bucket start ``seconds`` (whole buckets) after the bucket start ``start``: in a zone
        with daylight saving time the local midnight ``seconds / 86400`` calendar days later."""
        if self.tz:
            day = start.astimezone(ZoneInfo(self.tz)).date() + timedelta(days=seconds // DAY_S)
            return local_midnight(day, self.tz)
        return start + timedelta(seconds=seconds)


def policies(cfg: InfluxSettings) -> list[Policy]:
    """The three policies for ``cfg`` (raw is the default)."""
    return [Policy(schema.RP_RAW, cfg.raw_days, 1, default=True),
            Policy(schema.RP_HOURLY, cfg.hourly_days, 7),
            Policy(schema.RP_DAILY, cfg.daily_days, 7)]


def _label(offset_s: int) -> str:
    """``utc+0800`` for the UTC offset whose local midnight is ``offset_s`` after 00:00 UTC."""
    east = (-offset_s) % DAY_S
    east = east - DAY_S if east > 12 * 3600 else east
    sign, east = ("+" if east >= 0 else "-"), abs(east)
    return f"utc{sign}{east // 3600:02d}{east % 3600 // 60:02d}"


def _day_key(tz: str, now: datetime) -> tuple[int, str]:
    """Which daily level a zone's days belong to: ``(offset_s, "")`` for a zone that keeps one UTC
    offset, ``(0, tz)`` for a zone with daylight saving time (its own level)."""
    return (0, tz) if has_dst(tz, now) else (day_offset_s(tz, now), "")


def _zone_label(tz: str) -> str:
    """``europe-berlin`` for ``Europe/Berlin``, ``america-new-york`` for ``America/New_York``."""
    return re.sub(r"[^a-z0-9]+", "-", tz.lower()).strip("-")


def levels(zones: DayZones | str, now: datetime) -> list[Level]:
    """Hourly (UTC hours) and daily levels: one daily level per UTC offset (at ``now``) of the zones
    that keep one offset all year, and one per zone with daylight saving time (``tz()``, :func:`has_dst`).

    The default zone's level holds every point not of a city in another level; each other level
    holds its cities' points (module docstring). Daily levels come default first, then by offset,
    then the zones with daylight saving time by name.
    """
    zones = as_zones(zones)
    default = _day_key(zones.default, now)
    by_key: dict[tuple[int, str], list[str]] = {default: []}
    for city, tz in sorted(zones.cities.items()):
        by_key.setdefault(_day_key(tz, now), []).append(city)
    tag = quote_ident(schema.TAG_CITY)
    others = [c for key, cities in by_key.items() if key != default for c in cities]
    out = [Level(schema.RP_HOURLY, 3600, 0, "RESAMPLE EVERY 1h FOR 3h", 7 * DAY_S)]
    for key in [default, *sorted((k for k in by_key if k != default), key=lambda k: (k[1], k[0]))]:
        if key == default:
            where = " AND ".join(f"{tag} != {quote_literal(c)}" for c in others)
        else:
            where = "(" + " OR ".join(f"{tag} = {quote_literal(c)}" for c in by_key[key]) + ")"
        off, tz = key
        out.append(Level(schema.RP_DAILY, DAY_S, off, "RESAMPLE EVERY 6h FOR 2d", 28 * DAY_S, where,
                         _zone_label(tz) if tz else _label(off), tz))
    return out


def select_into(database: str, measurement: str, level: Level, source_rp: str = schema.RP_RAW,
                where: str = "") -> str:
    """The ``SELECT mean(...) INTO`` of a level: the body of its continuous query, and with a
    ``where`` (``time >= ...``) one backfill statement; the level's city condition comes first."""
    db = quote_ident(database)
    cols = ", ".join(f"mean({quote_ident(m)}) AS {quote_ident(m)}" for m in METRICS)
    cond = " AND ".join(c for c in (level.where, where) if c)
    return (f"SELECT {cols} INTO {db}.{quote_ident(level.name)}.{quote_ident(measurement)} "
            f"FROM {db}.{quote_ident(source_rp)}.{quote_ident(measurement)}"
            + (f" WHERE {cond}" if cond else "") + f" GROUP BY {level.group_by()}, *{level.tz_clause()}")


def continuous_queries(database: str, zones: DayZones | str, now: datetime) -> dict[str, str]:
    """``{name: CREATE CONTINUOUS QUERY statement}`` Lorong wants on ``database``.

    A name is ``lorong_hourly_<measurement>_<hash>`` or ``lorong_daily_<measurement>_utc+0700_<hash>``,
    ``<hash>`` 8 hex of the SHA-256 of its SELECT, so a changed definition (new metric, other time
    zone, a city added to a zone) is a new name and :func:`apply` replaces the old one.
    """
    out: dict[str, str] = {}
    for level in levels(zones, now):
        for meas in schema.DOWNSAMPLED:
            body = select_into(database, meas, level)
            label = f"{level.label}_" if level.label else ""
            name = f"{CQ_PREFIX}{level.name}_{meas}_{label}{hashlib.sha256(body.encode()).hexdigest()[:8]}"
            out[name] = (f"CREATE CONTINUOUS QUERY {quote_ident(name)} ON {quote_ident(database)} "
                         f"{level.resample} BEGIN {body} END")
    return out


_GO_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def _days(go: str) -> float:
    """Days in a Go duration as InfluxDB prints it (``2160h0m0s`` -> 90; ``0s`` = forever -> 0)."""
    m = _GO_DURATION.match(go)
    if not m:
        raise ValueError(f"unexpected duration {go!r} from InfluxDB")
    h, mi, s = (int(x or 0) for x in m.groups())
    return (h * 3600 + mi * 60 + s) / DAY_S


def existing_policies(influx: InfluxClient) -> dict[str, Policy]:
    """The database's retention policies as :class:`Policy` (durations rounded to days)."""
    out = {}
    for rec in influx.records(f"SHOW RETENTION POLICIES ON {quote_ident(influx.database)}"):
        out[rec["name"]] = Policy(rec["name"], round(_days(rec["duration"])),
                                  round(_days(rec["shardGroupDuration"])), bool(rec["default"]))
    return out


def require_policy(influx: InfluxClient, name: str) -> None:
    """Check that the database has retention policy ``name``.

    Raises:
        StoreNotReady: it has not (the layout was never applied).
        StoreUnavailable: InfluxDB is not reachable.
    """
    if name not in existing_policies(influx):
        raise StoreNotReady(f"InfluxDB database {influx.database} has no retention policy {name!r}: "
                            "run `lorong storage retention apply` (then `lorong storage retention backfill`)")


def existing_cqs(influx: InfluxClient) -> list[str]:
    """Names of the continuous queries on the database."""
    return [row[0] for s in influx.query("SHOW CONTINUOUS QUERIES") if s.name == influx.database
            for row in s.values]


def apply(influx: InfluxClient, cfg: InfluxSettings, zones: DayZones | str, now: datetime | None = None) -> list[str]:
    """Create or migrate the retention layout of the database; idempotent.

    Creates the database if missing, creates or alters the three policies, drops the ``lorong_``
    continuous queries that are no longer wanted and creates the missing ones, then migrates a
    pre-retention ``autogen`` policy (:func:`migrate_autogen`).

    Args:
        influx: client on the Lorong database.
        cfg: ``raw_days``, ``hourly_days``, ``daily_days``.
        zones: whose local days the daily means follow (:func:`lorong.storage.runtime.day_zones`
            reads them from the registry); a bare IANA name is one zone for every point.
        now: the current time (tests); default the clock.

    Returns:
        One line per change made (empty when everything was already in place).

    Raises:
        StoreUnavailable: InfluxDB is not reachable.
        StoreRejected: InfluxDB refused a statement (its text is in the message).
    """
    now = now or datetime.now(UTC)
    db = quote_ident(influx.database)
    influx.command(f"CREATE DATABASE {db}")
    done: list[str] = []
    have = existing_policies(influx)
    for want in policies(cfg):
        got = have.get(want.name)
        if got == want:
            continue
        verb = "CREATE" if got is None else "ALTER"
        influx.command(f"{verb} RETENTION POLICY {quote_ident(want.name)} ON {db} {want.clause()}")
        done.append(f"{verb.lower()} retention policy {want.name}: {want.clause()}")
    done += sync_continuous_queries(influx, zones, now)
    if AUTOGEN in have:
        done += migrate_autogen(influx, cfg, zones, now)
    for line in done:
        log.info("%s: %s", influx.database, line)
    return done


def sync_continuous_queries(influx: InfluxClient, zones: DayZones | str, now: datetime | None = None) -> list[str]:
    """Drop the ``lorong_`` continuous queries no longer wanted and create the missing ones (:func:`apply`
    does this; ``lorong cities add`` alone, after a city in a new zone).

    Returns:
        One line per query dropped or created.

    Raises:
        StoreUnavailable, StoreRejected: from the client (a database without the ``daily`` policy
            refuses the new queries: run :func:`apply`).
    """
    db = quote_ident(influx.database)
    wanted = continuous_queries(influx.database, zones, now or datetime.now(UTC))
    present = existing_cqs(influx)
    done = []
    for name in present:
        if name.startswith(CQ_PREFIX) and name not in wanted:
            influx.command(f"DROP CONTINUOUS QUERY {quote_ident(name)} ON {db}")
            done.append(f"drop continuous query {name}")
    for name, stmt in wanted.items():
        if name not in present:
            influx.command(stmt)
            done.append(f"create continuous query {name}")
    return done


def backfill(influx: InfluxClient, zones: DayZones | str, start: datetime, end: datetime,
             source_rp: str = schema.RP_RAW, measurements: Sequence[str] = schema.DOWNSAMPLED,
             now: datetime | None = None) -> dict[str, int]:
    """Compute the hourly and daily means of ``[start, end)`` from stored points.

    Runs the continuous queries' ``SELECT ... INTO`` over whole buckets (``start`` rounded down,
    ``end`` up), one statement per measurement, level and window of :attr:`Level.chunk_s`: each
    city's days are its own zone's (:func:`levels` of ``zones``). Buckets that already hold means are
    overwritten with the same values (same series and time), so running it twice changes nothing.

    Returns:
        points written per level, ``{"hourly": n, "daily": n}``.

    Raises:
        ValueError: ``start`` is not before ``end``.
        StoreUnavailable, StoreRejected: from the client.
    """
    if start >= end:
        raise ValueError(f"backfill start {start.isoformat()} is not before end {end.isoformat()}")
    written = {schema.RP_HOURLY: 0, schema.RP_DAILY: 0}
    for level in levels(zones, now or datetime.now(UTC)):
        total = 0
        t = level.floor(start)
        stop = level.floor(end)
        if stop < end:
            stop = level.shift(stop, level.bucket_s)
        while t < stop:
            t2 = min(level.shift(t, level.chunk_s), stop)  # whole (local) days: no bucket split in two
            where = f"time >= {to_ms(t)}ms AND time < {to_ms(t2)}ms"
            for meas in measurements:
                for s in influx.query(select_into(influx.database, meas, level, source_rp, where)):
                    total += sum(int(row[s.columns.index("written")]) for row in s.values)
            t = t2
        written[level.name] += total
    return written


def _shard_span(influx: InfluxClient, rp: str) -> tuple[datetime, datetime] | None:
    """Earliest start and latest end of ``rp``'s shards (``SHOW SHARDS``), None when it has none."""
    spans = [(datetime.fromisoformat(r["start_time"]), datetime.fromisoformat(r["end_time"]))
             for s in influx.query("SHOW SHARDS") if s.name == influx.database
             for r in s.records() if r["retention_policy"] == rp]
    if not spans:
        return None
    return min(a for a, _ in spans), max(b for _, b in spans)


def migrate_autogen(influx: InfluxClient, cfg: InfluxSettings, zones: DayZones | str, now: datetime) -> list[str]:
    """Move a pre-retention database's ``autogen`` data into the new layout, then drop ``autogen``.

    The means of everything in ``autogen`` are backfilled from it, its last ``raw_days`` (less
    one hour, so no point falls out of ``raw`` while copied) are copied into ``raw`` one day at a
    time (``SELECT * INTO ... GROUP BY *`` keeps tags as tags), and the policy is dropped.

    Returns:
        One line per step done.
    """
    db = quote_ident(influx.database)
    span = _shard_span(influx, AUTOGEN)
    done = []
    if span is not None:
        first, last = span[0], min(span[1], now + timedelta(hours=1))
        means = backfill(influx, zones, first, last, source_rp=AUTOGEN, now=now)
        done.append(f"backfill from autogen {first.isoformat()}..{last.isoformat()}: {means}")
        t = max(first, now - timedelta(days=cfg.raw_days) + timedelta(hours=1))
        copied = 0
        while t < last:
            t2 = min(t + timedelta(days=1), last)
            q = (f"SELECT * INTO {db}.{quote_ident(schema.RP_RAW)}.:MEASUREMENT FROM {db}.{quote_ident(AUTOGEN)}./.*/ "
                 f"WHERE time >= {to_ms(t)}ms AND time < {to_ms(t2)}ms GROUP BY *")
            for s in influx.query(q):
                copied += sum(int(row[s.columns.index("written")]) for row in s.values)
            t = t2
        done.append(f"copy autogen into raw: {copied} points")
    influx.command(f"DROP RETENTION POLICY {quote_ident(AUTOGEN)} ON {db}")
    done.append("drop retention policy autogen")
    return done
