"""Retention policies, hourly and daily means, backfill and the autogen migration against a real
influxd whose retention service checks every second (:func:`influxd_fast_retention`)."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import fmean

import pytest

from lorong.core import schema
from lorong.core.model import to_ms
from lorong.core.settings import InfluxSettings
from lorong.storage import retention
from lorong.storage.influx import InfluxClient, line
from tests.support import wait_for

pytestmark = pytest.mark.integration

TZ = "Asia/Makassar"  # UTC+8, no DST: local midnight is 16:00 UTC

def cfg(raw_days: int, **kw: int) -> InfluxSettings:
    """Settings with these durations."""
    return InfluxSettings(raw_days=raw_days, **kw)


def local_midnight(days_ago: int, now: datetime) -> datetime:
    """16:00 UTC (00:00 WITA) ``days_ago`` days before ``now``."""
    day = (now - timedelta(days=days_ago)).date()
    return datetime(day.year, day.month, day.day, 16, tzinfo=UTC) - timedelta(days=1)


def bin_points(start: datetime, hours: int, devices: tuple[str, ...] = ("MKS-BIN-0001", "MKS-BIN-0002"),
               step_min: int = 10) -> list[tuple[str, datetime, float, float]]:
    """(device, time, fillingLevel, temperature) every ``step_min`` minutes, values that differ per point."""
    out = []
    for d, dev in enumerate(devices):
        for i in range(hours * 60 // step_min):
            ts = start + timedelta(minutes=i * step_min)
            out.append((dev, ts, round((i * 7 % 97) / 100 + d * 0.01, 4), 25.0 + (i % 13) * 0.5 + d))
    return out


def write(influx: InfluxClient, points: list[tuple[str, datetime, float, float]]) -> None:
    """Write bin points (kecamatan Tallo) to the default policy."""
    lines = [line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: dev, schema.TAG_KECAMATAN: "Tallo"},
                  {schema.FIELD_FILL: fill, schema.FIELD_TEMPERATURE: temp, schema.FIELD_RX: to_ms(ts)}, to_ms(ts))
             for dev, ts, fill, temp in points]
    for i in range(0, len(lines), 5000):
        influx.write_lines(lines[i:i + 5000])


def expected_means(points: list[tuple[str, datetime, float, float]], bucket_s: int, offset_s: int = 0
                   ) -> dict[tuple[str, int], tuple[float, float]]:
    """(device, bucket start ms) -> (mean fill, mean temperature), worked out here."""
    groups: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for dev, ts, fill, temp in points:
        ms = to_ms(ts) - offset_s * 1000
        groups[(dev, ms - ms % (bucket_s * 1000) + offset_s * 1000)].append((fill, temp))
    return {k: (fmean(f for f, _ in v), fmean(t for _, t in v)) for k, v in groups.items()}


def stored_means(influx: InfluxClient, rp: str) -> dict[tuple[str, int], tuple[float, float]]:
    """(device, time ms) -> (fillingLevel, temperature) as stored in ``rp``."""
    q = (f'SELECT "fillingLevel", "temperature" FROM "{rp}"."waste_container" GROUP BY "device_id"')
    return {(r["device_id"], r["time"]): (r["fillingLevel"], r["temperature"]) for r in influx.records(q)}


def raw_count(influx: InfluxClient, start: datetime, end: datetime) -> int:
    """Raw fillingLevel points in ``[start, end)``."""
    rows = influx.records(f'SELECT count("fillingLevel") FROM "raw"."waste_container" '
                          f"WHERE time >= {to_ms(start)}ms AND time < {to_ms(end)}ms")
    return int(rows[0]["count"]) if rows else 0


def assert_close(got: dict[tuple[str, int], tuple[float, float]],
                 want: dict[tuple[str, int], tuple[float, float]]) -> None:
    assert sorted(got) == sorted(want)
    for key, (fill, temp) in want.items():
        assert got[key][0] == pytest.approx(fill, abs=1e-9), key
        assert got[key][1] == pytest.approx(temp, abs=1e-9), key


def test_apply_creates_policies_and_continuous_queries_once(db: InfluxClient) -> None:
    now = datetime.now(UTC)
    first = retention.apply(db, cfg(90), TZ, now)
    assert "create retention policy raw: DURATION 90d REPLICATION 1 SHARD DURATION 1d DEFAULT" in first
    assert "drop retention policy autogen" in first  # a new database's empty autogen goes
    pols = retention.existing_policies(db)
    assert pols == {"raw": retention.Policy("raw", 90, 1, True), "hourly": retention.Policy("hourly", 1830, 7),
                    "daily": retention.Policy("daily", 0, 7)}
    cqs = retention.existing_cqs(db)
    assert sorted(c.rsplit("_", 1)[0] for c in cqs) == [
        "lorong_daily_air_quality_utc+0800", "lorong_daily_waste_container_utc+0800",
        "lorong_hourly_air_quality", "lorong_hourly_waste_container"]
    assert retention.apply(db, cfg(90), TZ, now) == []  # idempotent

    changed = retention.apply(db, cfg(30, hourly_days=400), "Asia/Jakarta", now)  # UTC+7: other daily buckets
    assert changed[:2] == ["alter retention policy raw: DURATION 30d REPLICATION 1 SHARD DURATION 1d DEFAULT",
                           "alter retention policy hourly: DURATION 400d REPLICATION 1 SHARD DURATION 7d"]
    assert sorted(c.split(" ")[0] for c in changed[2:]) == ["create", "create", "drop", "drop"]
    assert all("daily" in c for c in changed[2:])
    assert len(retention.existing_cqs(db)) == 4
    assert retention.apply(db, cfg(30, hourly_days=400), "Asia/Jakarta", now) == []


def test_continuous_query_is_the_backfill_statement() -> None:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    [hourly, daily] = retention.levels(TZ, now)
    assert daily.offset_s == 16 * 3600 and daily.where == ""  # local midnight in WITA, every point
    cqs = retention.continuous_queries("lorong", TZ, now)
    body = retention.select_into("lorong", schema.MEASUREMENT_BIN, hourly)
    [stmt] = [s for n, s in cqs.items() if n.startswith("lorong_hourly_waste_container_")]
    assert stmt.endswith(f"RESAMPLE EVERY 1h FOR 3h BEGIN {body} END")
    assert 'mean("fillingLevel") AS "fillingLevel"' in body and "GROUP BY time(3600s), *" in body
    assert 'INTO "lorong"."hourly"."waste_container" FROM "lorong"."raw"."waste_container"' in body


def test_retention_pass_drops_raw_and_keeps_means_equal_to_raw_means(db: InfluxClient) -> None:
    now = datetime.now(UTC)
    retention.apply(db, cfg(400), TZ, now)  # first keep raw readings long enough to write 100-day-old ones
    old_start = local_midnight(100, now)
    old = bin_points(old_start, 24)
    recent = bin_points(now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3), 2, ("MKS-BIN-0001",))
    write(db, old + recent)
    old_end = old_start + timedelta(days=1)
    assert raw_count(db, old_start, old_end) == 2 * 144

    want_hourly = expected_means(old, 3600)
    raw_hourly = {(r["device_id"], r["time"]): (r["f"], r["t"]) for r in db.records(
        'SELECT mean("fillingLevel") AS "f", mean("temperature") AS "t" FROM "raw"."waste_container" '
        f"WHERE time >= {to_ms(old_start)}ms AND time < {to_ms(old_end)}ms "
        'GROUP BY time(1h), "device_id" fill(none)')}
    assert_close(raw_hourly, want_hourly)  # the raw means before the pass, by InfluxDB and by hand agree
    assert len(want_hourly) == 48

    written = retention.backfill(db, TZ, old_start, now, now=now)
    recent_days = {(to_ms(ts) // 1000 + 8 * 3600) // 86400 for _, ts, _, _ in recent}  # WITA days: two when
    assert written == {"hourly": 48 + 2, "daily": 2 + len(recent_days)}  # the test runs 18:00-19:00 UTC
    assert retention.backfill(db, TZ, old_start, now, now=now) == written  # a second run overwrites

    changed = retention.apply(db, cfg(90), TZ, now)  # the retention pass: raw now keeps 90 days
    assert changed == ["alter retention policy raw: DURATION 90d REPLICATION 1 SHARD DURATION 1d DEFAULT"]
    wait_for(lambda: raw_count(db, old_start, old_end) == 0, timeout_s=15, what="old raw points dropped")
    assert raw_count(db, now - timedelta(hours=4), now + timedelta(hours=1)) == 12  # recent raw points stay

    hourly = stored_means(db, "hourly")
    assert_close({k: v for k, v in hourly.items() if k[1] < to_ms(old_end)}, want_hourly)
    daily = stored_means(db, "daily")
    want_daily = expected_means(old, 86400, 16 * 3600)
    assert set(want_daily) == {("MKS-BIN-0001", to_ms(old_start)), ("MKS-BIN-0002", to_ms(old_start))}
    assert_close({k: v for k, v in daily.items() if k[1] < to_ms(old_end)}, want_daily)
    tags = db.records('SELECT "fillingLevel", "kecamatan" FROM "hourly"."waste_container" LIMIT 1')
    assert tags[0]["kecamatan"] == "Tallo"  # GROUP BY * kept every tag


def test_apply_migrates_an_autogen_database(db: InfluxClient) -> None:
    now = datetime.now(UTC)
    db.create_database()  # a database from before retention: everything in autogen, kept forever
    old = bin_points(local_midnight(200, now), 2, ("MKS-BIN-0003",))
    recent = bin_points(local_midnight(2, now), 3, ("MKS-BIN-0003",))
    write(db, old + recent)
    done = retention.apply(db, cfg(90), TZ, now)
    assert done[-2:] == [f"copy autogen into raw: {len(recent)} points", "drop retention policy autogen"]
    assert "autogen" not in retention.existing_policies(db)
    assert raw_count(db, now - timedelta(days=400), now) == len(recent)
    want = expected_means(old + recent, 3600)
    assert_close(stored_means(db, "hourly"), want)
    # new writes without a policy go to raw, the new default
    write(db, bin_points(now - timedelta(minutes=60), 1, ("MKS-BIN-0004",), step_min=30))
    assert db.records('SELECT count("fillingLevel") FROM "waste_container" WHERE "device_id" = \'MKS-BIN-0004\''
                      )[0]["count"] == 2


def test_cli_apply_backfill_show(db: InfluxClient) -> None:
    env = {"LORONG_INFLUX__URL": db.url, "LORONG_INFLUX__DATABASE": db.database, "LORONG_INFLUX__RAW_DAYS": "30",
           "PATH": "/usr/bin:/bin"}

    def lorong(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lorong.cli", "storage", "retention", *args], env=env,
                              capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])

    first = lorong("apply")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "create retention policy raw: DURATION 30d" in first.stdout
    assert first.stdout.strip().endswith("changed: raw readings 30 d, hourly means 1830 d, daily means forever")
    assert lorong("apply").stdout.startswith("already in place")
    day = local_midnight(3, datetime.now(UTC))  # --from a day before it: `now - 4 days` cut its first hour
    write(db, bin_points(day, 2, ("MKS-BIN-0009",)))  # when the test ran between 16:00 and 17:00 UTC
    filled = lorong("backfill", "--from", (day - timedelta(days=1)).isoformat())
    assert filled.stdout.strip() == "means written: 2 hourly, 1 daily"
    shown = lorong("show").stdout.splitlines()
    assert shown[:3] == ["policy raw      30 d, shards 1 d (default)", "policy hourly   1830 d, shards 7 d",
                         "policy daily    forever, shards 7 d"]
    assert len([s for s in shown if s.startswith("continuous query lorong_")]) == 4
    bad = lorong("backfill", "--from", "2026-12-06T00:00:00", "--to", "2026-12-01T00:00:00")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --from/--to: backfill start")
