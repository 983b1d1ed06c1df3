"""Daily means in each city's own time zone (WIB, WITA, WIT on one platform) against a real influxd:
one daily continuous query per UTC offset, backfill, the migration from the one-zone layout, and
``lorong cities add`` updating the queries."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import fmean
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from lorong.core import schema
from lorong.core.model import to_ms
from lorong.storage import retention, stack
from lorong.storage.influx import InfluxClient, line, quote_ident
from lorong.storage.runtime import day_zones
from tests.storage.test_retention import assert_close, bin_points, cfg, expected_means, stored_means
from tests.support import wait_for

pytestmark = pytest.mark.integration

ZONES = retention.DayZones("Asia/Makassar", {"makassar": "Asia/Makassar", "jakarta": "Asia/Jakarta",
                                             "bandung": "Asia/Jakarta", "jayapura": "Asia/Jayapura"})
"""Three zones: WITA (UTC+8, the default), WIB (UTC+7, two cities), WIT (UTC+9)."""

MIDNIGHT_UTC_H = {"makassar": 16, "jakarta": 17, "bandung": 17, "jayapura": 15, "": 16}
"""Hour (UTC) of each city's local midnight; "" is a point without a city tag (the default zone's)."""

DEVICES = {"MKS-BIN-1": "makassar", "JKT-BIN-1": "jakarta", "BDG-BIN-1": "bandung", "DJJ-BIN-1": "jayapura",
           "OLD-BIN-1": ""}
"""Device -> city tag ("" = written before points carried a city)."""


Points = list[tuple[str, datetime, float, float]]
"""(device, time, fillingLevel, temperature), as :func:`tests.storage.test_retention.bin_points` makes them."""


def write_cities(influx: InfluxClient, start: datetime, hours: int) -> dict[str, Points]:
    """Bin points of every device of :data:`DEVICES` every 10 min for ``hours`` from ``start``, with
    its city tag; returns them per city tag."""
    out: dict[str, Points] = {}
    lines = []
    for i, (dev, city) in enumerate(DEVICES.items()):
        pts = [(d, ts, round(fill + i * 0.013, 4), temp) for d, ts, fill, temp in bin_points(start, hours, (dev,))]
        out[city] = pts
        tags = {schema.TAG_DEVICE: dev, schema.TAG_KECAMATAN: "K", **({schema.TAG_CITY: city} if city else {})}
        lines += [line(schema.MEASUREMENT_BIN, tags, {schema.FIELD_FILL: f, schema.FIELD_TEMPERATURE: t}, to_ms(ts))
                  for _, ts, f, t in pts]
    influx.write_lines(lines)
    return out


def test_levels_one_daily_query_per_utc_offset() -> None:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    [hourly, *daily] = retention.levels(ZONES, now)
    assert hourly.where == "" and hourly.offset_s == 0
    assert [(lv.offset_s // 3600, lv.label, lv.where) for lv in daily] == [
        (16, "utc+0800", "\"city\" != 'bandung' AND \"city\" != 'jakarta' AND \"city\" != 'jayapura'"),
        (15, "utc+0900", "(\"city\" = 'jayapura')"),
        (17, "utc+0700", "(\"city\" = 'bandung' OR \"city\" = 'jakarta')")]
    assert [lv.label for lv in retention.levels(retention.DayZones("Asia/Kolkata", {"sp": "America/Sao_Paulo"}),
                                                now)[1:]] == ["utc+0530", "utc-0300"]
    assert ZONES.zone("jakarta") == "Asia/Jakarta" and ZONES.zone(None) == ZONES.zone("nowhere") == "Asia/Makassar"


def test_levels_one_daily_query_per_zone_with_daylight_saving() -> None:
    """A zone with DST is a level of its own, grouped by the zone (``tz()``); the fixed offsets stay as they were."""
    now = datetime(2026, 12, 6, tzinfo=UTC)
    assert retention.has_dst("Europe/Berlin", now) and retention.has_dst("America/New_York", now)
    assert not any(retention.has_dst(z, now) for z in ("Asia/Makassar", "Asia/Jakarta", "Asia/Jayapura", "UTC"))
    [_, *daily] = retention.levels(DST, now)
    assert [(lv.offset_s // 3600, lv.label, lv.tz, lv.where) for lv in daily] == [
        (16, "utc+0800", "", "\"city\" != 'berlin' AND \"city\" != 'new-york'"),
        (0, "america-new-york", "America/New_York", "(\"city\" = 'new-york')"),
        (0, "europe-berlin", "Europe/Berlin", "(\"city\" = 'berlin')")]
    assert daily[2].tz_clause() == " tz('Europe/Berlin')" and daily[0].tz_clause() == ""
    assert retention.select_into("lorong", "waste_container", daily[2]).endswith(
        "WHERE (\"city\" = 'berlin') GROUP BY time(86400s), * tz('Europe/Berlin')")
    [_, home, jkt] = retention.levels(retention.DayZones("Europe/Berlin", {"jakarta": "Asia/Jakarta"}), now)
    assert (home.tz, home.where, jkt.label, jkt.tz) == ("Europe/Berlin", "\"city\" != 'jakarta'", "utc+0700", "")
    spring = datetime(2026, 3, 28, 23, tzinfo=UTC)  # 00:00 CET, 29 March: a 23-hour day in Berlin
    assert daily[2].floor(spring + timedelta(hours=22, minutes=59)) == spring
    assert daily[2].shift(spring, 86400) == spring + timedelta(hours=23)
    assert daily[2].shift(spring, 28 * 86400) == datetime(2026, 4, 25, 22, tzinfo=UTC)
    assert retention.local_midnight(date(2026, 9, 6), "America/Santiago") == datetime(2026, 9, 6, 4, tzinfo=UTC)


def test_daily_means_start_at_each_city_midnight(db: InfluxClient) -> None:
    """The continuous queries' statements, run by backfill: every city's daily means start at its own local
    midnight and equal the means of its raw readings over that local day; untagged points get the default
    zone's days; the hourly means are UTC hours for all."""
    now = datetime.now(UTC)
    retention.apply(db, cfg(400), ZONES, now)
    start = (now - timedelta(days=5)).replace(hour=12, minute=0, second=0, microsecond=0)
    points = write_cities(db, start, 72)  # three days: covers whole local days of every zone
    written = retention.backfill(db, ZONES, start, start + timedelta(hours=72), now=now)
    assert written == {"hourly": 5 * 72, "daily": 5 * 4}  # 72 h from 12:00 UTC touch 4 local days in any zone
    daily = stored_means(db, "daily")
    for city, pts in points.items():
        want = expected_means(pts, 86400, MIDNIGHT_UTC_H[city] * 3600)
        assert len(want) == 4
        got = {k: v for k, v in daily.items() if k[0] == pts[0][0]}
        assert_close(got, want)
        assert {datetime.fromtimestamp(t / 1000, UTC).hour for _, t in got} == {MIDNIGHT_UTC_H[city]}, city
    hourly = stored_means(db, "hourly")
    assert_close(hourly, {k: v for pts in points.values() for k, v in expected_means(pts, 3600).items()})
    stored = {row[0]: row[1] for s in db.query("SHOW CONTINUOUS QUERIES") if s.name == db.database
              for row in s.values}
    wib = [q for n, q in stored.items() if n.startswith("lorong_daily_waste_container_utc+0700_")]
    assert len(wib) == 1 and "WHERE (city = 'bandung' OR city = 'jakarta') GROUP BY time(1d, 17h), *" in wib[0]
    assert len([n for n in stored if n.startswith("lorong_daily_")]) == 6  # 3 zones x 2 measurements


def test_apply_migrates_the_one_zone_layout(db: InfluxClient) -> None:
    now = datetime.now(UTC)
    retention.apply(db, cfg(90), "Asia/Makassar", now)
    for name in [n for n in retention.existing_cqs(db) if n.startswith("lorong_daily_")]:
        db.command(f"DROP CONTINUOUS QUERY {quote_ident(name)} ON {quote_ident(db.database)}")
    old = []  # the daily queries as Lorong made them before cities had zones: no WHERE, no zone in the name
    level = retention.Level(schema.RP_DAILY, 86400, 57600, "RESAMPLE EVERY 6h FOR 2d", 28 * 86400)
    for meas in schema.DOWNSAMPLED:
        body = retention.select_into(db.database, meas, level)
        old.append(f"lorong_daily_{meas}_{hashlib.sha256(body.encode()).hexdigest()[:8]}")
        db.command(f"CREATE CONTINUOUS QUERY {quote_ident(old[-1])} ON {quote_ident(db.database)} "
                   f"{level.resample} BEGIN {body} END")
    hourly = sorted(n for n in retention.existing_cqs(db) if n.startswith("lorong_hourly_"))

    two = retention.DayZones("Asia/Makassar", {"makassar": "Asia/Makassar", "jakarta": "Asia/Jakarta"})
    done = retention.apply(db, cfg(90), two, now)
    assert sorted(d for d in done if d.startswith("drop")) == [f"drop continuous query {n}" for n in sorted(old)]
    assert sorted(d.rsplit("_", 1)[0] for d in done if d.startswith("create")) == [
        f"create continuous query lorong_daily_{m}_{z}" for m in sorted(schema.DOWNSAMPLED)
        for z in ("utc+0700", "utc+0800")]
    assert len(done) == 6
    assert retention.apply(db, cfg(90), two, now) == []  # idempotent
    assert sorted(n for n in retention.existing_cqs(db) if n.startswith("lorong_hourly_")) == hourly  # untouched

    done = retention.apply(db, cfg(90), ZONES, now)  # bandung joins WIB, jayapura brings WIT
    dropped = {d.split(" ")[-1].rsplit("_", 1)[0] for d in done if d.startswith("drop")}
    created = {d.split(" ")[-1].rsplit("_", 1)[0] for d in done if d.startswith("create")}
    assert dropped == {f"lorong_daily_{m}_{z}" for m in schema.DOWNSAMPLED for z in ("utc+0700", "utc+0800")}
    assert created == dropped | {f"lorong_daily_{m}_utc+0900" for m in schema.DOWNSAMPLED}
    assert retention.apply(db, cfg(90), ZONES, now) == []
    assert len(retention.existing_cqs(db)) == 2 + 6


def test_cli_cities_add_updates_the_daily_queries(db: InfluxClient, db_url: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from devices import cities_cli
    from lorong.core.settings import Settings
    from lorong.storage import retention_cli

    monkeypatch.chdir(tmp_path)  # no stray .env file
    env = {"LORONG_DATABASE_URL": db_url, "LORONG_VAR_DIR": str(tmp_path / "var"), "LORONG_INFLUX__URL": db.url,
           "LORONG_INFLUX__DATABASE": db.database}
    runner = CliRunner()
    applied = runner.invoke(retention_cli.app, ["retention", "apply"], env=env)
    assert applied.exit_code == 0, applied.output
    assert len([ln for ln in applied.stdout.splitlines() if "utc+0800" in ln]) == 2  # the registry's makassar only

    add = runner.invoke(cities_cli.app, ["add", "jakarta", "--name", "Jakarta", "--timezone", "Asia/Jakarta"], env=env)
    assert add.exit_code == 0, add.output
    lines = add.stdout.splitlines()
    assert lines[0] == "registered city jakarta (Jakarta, Asia/Jakarta)"
    assert sorted(ln.split(" ")[0] + " " + ln.split("_")[-2] for ln in lines[1:]) == [
        "create utc+0700", "create utc+0700", "create utc+0800", "create utc+0800", "drop utc+0800", "drop utc+0800"]
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    assert day_zones(Settings()).cities == {"makassar": "Asia/Makassar", "jakarta": "Asia/Jakarta"}
    assert runner.invoke(retention_cli.app, ["retention", "apply"], env=env).stdout.startswith("already in place")

    same = runner.invoke(cities_cli.app, ["add", "gowa", "--name", "Gowa", "--timezone", "Asia/Makassar"], env=env)
    assert same.stdout.splitlines()[1:] == ["daily means: gowa's zone already has its continuous queries"]
    nowhere = f"http://127.0.0.1:{stack.free_port()}"  # nothing listens there
    down = runner.invoke(cities_cli.app, ["add", "jayapura", "--name", "Jayapura", "--timezone", "Asia/Jayapura"],
                         env={**env, "LORONG_INFLUX__URL": nowhere})
    assert down.exit_code == 0, down.output  # the city is registered all the same
    assert down.stdout.splitlines()[1:] == [
        f"InfluxDB at {nowhere} does not answer: when it does, run `lorong storage retention apply` so "
        "that jayapura's daily means are its local days"]


def test_cli_cities_edit_and_remove_update_the_daily_queries(db: InfluxClient, db_url: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A city moved to another zone gets its days there; a city removed no longer has its own query."""
    from devices import cities_cli
    from lorong.storage import retention_cli

    monkeypatch.chdir(tmp_path)  # no stray .env file
    env = {"LORONG_DATABASE_URL": db_url, "LORONG_VAR_DIR": str(tmp_path / "var"), "LORONG_INFLUX__URL": db.url,
           "LORONG_INFLUX__DATABASE": db.database}
    runner = CliRunner()
    assert runner.invoke(retention_cli.app, ["retention", "apply"], env=env).exit_code == 0
    assert runner.invoke(cities_cli.app, ["add", "jakarta", "--name", "Jakarta", "--timezone", "Asia/Jakarta"],
                         env=env).exit_code == 0

    def daily() -> dict[str, str]:
        """Zone label -> the WHERE of its daily query on waste_container, as InfluxDB holds them."""
        out = {}
        for s in db.query("SHOW CONTINUOUS QUERIES"):
            for name, stmt in s.values if s.name == db.database else []:
                if name.startswith(f"lorong_daily_{schema.MEASUREMENT_BIN}_"):
                    where = stmt.partition(" WHERE ")[2]
                    out[name.split("_")[-2]] = where.split(" GROUP BY")[0] if where else ""
        return out

    assert daily() == {"utc+0800": "city != 'jakarta'", "utc+0700": "(city = 'jakarta')"}
    moved = runner.invoke(cities_cli.app, ["edit", "jakarta", "--timezone", "Asia/Jayapura"], env=env)
    assert moved.exit_code == 0, moved.output
    lines = moved.stdout.splitlines()
    assert lines[0] == "changed city jakarta: timezone: Asia/Jakarta -> Asia/Jayapura"
    assert sorted(ln.split(" ")[0] + " " + ln.split("_")[-2] for ln in lines[1:-1]) == [  # WITA's query stays
        "create utc+0900", "create utc+0900", "drop utc+0700", "drop utc+0700"]
    assert lines[-1].startswith("daily means already computed keep Asia/Jakarta's days")
    assert daily() == {"utc+0800": "city != 'jakarta'", "utc+0900": "(city = 'jakarta')"}
    assert runner.invoke(retention_cli.app, ["retention", "apply"], env=env).stdout.startswith("already in place")

    same = runner.invoke(cities_cli.app, ["edit", "jakarta", "--name", "DKI Jakarta"], env=env)
    assert same.stdout.splitlines() == ["changed city jakarta: name: Jakarta -> DKI Jakarta"]  # no zone change
    gone = runner.invoke(cities_cli.app, ["remove", "jakarta"], env=env)
    assert gone.exit_code == 0, gone.output
    assert gone.stdout.splitlines()[0] == "removed city jakarta"
    assert daily() == {"utc+0800": ""}  # every point in WITA's days again
    assert runner.invoke(retention_cli.app, ["retention", "apply"], env=env).stdout.startswith("already in place")


DST = retention.DayZones("Asia/Makassar", {"makassar": "Asia/Makassar", "berlin": "Europe/Berlin",
                                           "new-york": "America/New_York"})
"""Two zones with daylight saving time beside WITA."""


def local_day_means(pts: Points, zone: str) -> dict[tuple[str, int], tuple[float, float]]:
    """(device, ms of the local midnight starting the point's local day in ``zone``) -> (mean fill, mean
    temperature) of the raw points of that local day, worked out here with zoneinfo."""
    tz = ZoneInfo(zone)
    groups: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for dev, ts, fill, temp in pts:
        day = ts.astimezone(tz).date()
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
        groups.setdefault((dev, to_ms(midnight)), []).append((fill, temp))
    return {k: (fmean(f for f, _ in v), fmean(t for _, t in v)) for k, v in groups.items()}


def write_city(influx: InfluxClient, dev: str, city: str, start: datetime, hours: int) -> Points:
    """Bin points of ``dev`` (city tag ``city``) every 10 min for ``hours`` from ``start``."""
    pts = bin_points(start, hours, (dev,))
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: dev, schema.TAG_CITY: city},
                             {schema.FIELD_FILL: f, schema.FIELD_TEMPERATURE: t}, to_ms(ts)) for _, ts, f, t in pts])
    return pts


def last_change(zone: str, hours: int, before: datetime) -> date:
    """The latest local date before ``before`` whose day in ``zone`` is ``hours`` (23 or 25) long: the
    day the clock goes forward or back (within the last year, so in the 400 days of ``raw`` here)."""
    tz = ZoneInfo(zone)
    day = before.astimezone(tz).date()
    for _ in range(400):
        day -= timedelta(days=1)
        midnights = [datetime.combine(d, datetime.min.time(), tz).astimezone(UTC)
                     for d in (day, day + timedelta(days=1))]
        if midnights[1] - midnights[0] == timedelta(hours=hours):
            return day
    raise AssertionError(f"{zone} had no {hours}-hour day in the year before {before}")


@pytest.mark.parametrize(("zone", "city", "dev"), [("Europe/Berlin", "berlin", "BER-BIN-1"),
                                                   ("America/New_York", "new-york", "NYC-BIN-1")])
@pytest.mark.parametrize("hours", [23, 25])  # clocks forward (CET -> CEST, EST -> EDT) and back
def test_daily_means_of_a_dst_city_are_its_local_days(db: InfluxClient, zone: str, city: str, dev: str,
                                                      hours: int) -> None:
    """Around a daylight saving change each local day's mean (23 or 25 hours) equals the mean of the raw
    readings of that local day, and starts at that day's local midnight; a fixed UTC offset (the offset
    of today) would cut half the year's days an hour off. WITA's days beside it are as before."""
    now = datetime.now(UTC)
    retention.apply(db, cfg(400), DST, now)
    changed = last_change(zone, hours, now - timedelta(days=4))
    first = datetime.combine(changed - timedelta(days=2), datetime.min.time(), ZoneInfo(zone))
    start, end = first.astimezone(UTC), (first + timedelta(days=5)).astimezone(UTC)  # five local days
    pts = write_city(db, dev, city, start, round((end - start) / timedelta(hours=1)))  # 119 or 121 hours
    mks = write_city(db, "MKS-BIN-1", "makassar", start, round((end - start) / timedelta(hours=1)))
    retention.backfill(db, DST, start, end, now=now)
    daily = stored_means(db, "daily")
    want = local_day_means(pts, zone)
    assert len(want) == 5
    assert sorted(round((b - a) / 3_600_000) for a, b in itertools.pairwise(sorted(k[1] for k in want))) == sorted(
        [24, 24, 24, hours])
    assert_close({k: v for k, v in daily.items() if k[0] == dev}, want)
    assert_close({k: v for k, v in daily.items() if k[0] == "MKS-BIN-1"}, expected_means(mks, 86400, 16 * 3600))


def test_a_dst_city_has_a_daily_query_in_its_zone_that_runs_on_its_local_days(db: InfluxClient) -> None:
    """The continuous query of a zone with daylight saving groups by the zone (InfluxQL ``tz()``, which
    InfluxDB 1.6.7 also uses to schedule the query's windows): run by influxd itself, it writes the
    mean of yesterday's local day in Berlin, stamped at Berlin's midnight."""
    now = datetime.now(UTC)
    retention.apply(db, cfg(400), "Asia/Makassar", now)
    berlin = ZoneInfo("Europe/Berlin")
    today = now.astimezone(berlin).date()
    yesterday = datetime(today.year, today.month, today.day, tzinfo=berlin) - timedelta(days=1)
    pts = [p for p in write_city(db, "BER-BIN-1", "berlin", yesterday.astimezone(UTC) - timedelta(hours=2), 26)]
    want = {k: v for k, v in local_day_means(pts, "Europe/Berlin").items()
            if k[1] == to_ms(yesterday.astimezone(UTC))}
    done = retention.sync_continuous_queries(db, DST, now)  # created after the points: its first run sees them
    created = [d.split(" ")[-1] for d in done if d.startswith("create")]
    assert sorted(n.rsplit("_", 1)[0] for n in created if "europe" in n) == [
        f"lorong_daily_{m}_europe-berlin" for m in sorted(schema.DOWNSAMPLED)]
    stored = {row[0]: row[1] for s in db.query("SHOW CONTINUOUS QUERIES") if s.name == db.database
              for row in s.values}
    [ber] = [q for n, q in stored.items() if n.startswith("lorong_daily_waste_container_europe-berlin_")]
    assert "WHERE (city = 'berlin') GROUP BY time(1d), * TZ('Europe/Berlin')" in ber

    def written() -> bool:
        got = {k: v for k, v in stored_means(db, "daily").items() if k in want}
        return len(got) == 1

    wait_for(written, timeout_s=15, what="the Berlin daily continuous query's first run")
    assert_close({k: v for k, v in stored_means(db, "daily").items() if k in want}, want)
