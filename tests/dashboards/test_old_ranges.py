"""Averaging panels on ranges where raw readings are gone (issue "Data that lasts years").

The dashboards are built for a short retention (:data:`KEEP`: raw readings 30 days, hourly means 60
days, daily means forever) and run against a real InfluxDB at its real ``now()``, since the
queries compare ``time`` with ``now()``. The database holds, per bin (B1 and B2, both in Mariso):

- raw readings every 10 min for the last 33 days (B1 0.50, B2 0.70: Mariso 0.60): InfluxDB drops
  expired raw readings only when its retention service runs, so readings 30 to 33 days old may
  still be there, and the panels must not read them;
- hourly means for every hour of the last 65 days and of the two days 179 to 181 days back (B1 0.20,
  B2 0.40: Mariso 0.30), written straight into ``hourly`` so that a point tells which policy it came
  from;
- daily means at each WITA midnight (16:00 UTC) of the last 100 days (B1 0.80, B2 1.00: Mariso 0.90).

The policies here keep everything (none is shortened), so each case shows what the panel reads, not
what InfluxDB happens to have dropped yet.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from dashboards.build import build_all
from dashboards.panels import level_sources
from lorong.core import schema
from lorong.core.settings import InfluxSettings
from lorong.storage import retention, stack
from lorong.storage.influx import InfluxClient, line, quote_ident
from tests.dashboards.grafana import GrafanaSim
from tests.dashboards.scenario import KEPT, D, H, M

pytestmark = pytest.mark.integration

KEEP = InfluxSettings(raw_days=30, hourly_days=60, daily_days=0)
RAW_S, HOURLY_S = KEEP.raw_days * D, KEEP.hourly_days * D
BINS = "lorong-bins"
PANEL = 5
"""Bins' "Mean fill by kecamatan" (targets A raw, B hourly, C daily; minimum interval 10m)."""

FILLS = {"B1": (0.50, 0.20, 0.80), "B2": (0.70, 0.40, 1.00)}
"""bin -> (raw reading, hourly mean, daily mean)."""
RAW, HOURLY, DAILY = 0.60, 0.30, 0.90
"""Mariso's mean of the two bins, per policy."""
WITA_MIDNIGHT = 16 * H


def _write(influx: InfluxClient, port: int, rp: str, lines: list[str]) -> None:
    """Write ``lines`` into policy ``rp`` (``InfluxClient.write_lines`` writes to the default one)."""
    for i in range(0, len(lines), 5000):
        resp = httpx.post(f"http://127.0.0.1:{port}/write", content="\n".join(lines[i:i + 5000]).encode(),
                          params={"db": influx.database, "rp": rp, "precision": "ms"}, timeout=30)
        assert resp.status_code == 204, resp.text


def _points(times: list[int], which: int) -> list[str]:
    return [line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: dev, schema.TAG_KECAMATAN: "Mariso",
                                          schema.TAG_CITY: "makassar"}, {schema.FIELD_FILL: fills[which]}, t)
            for dev, fills in FILLS.items() for t in times]


class Seeded:
    """The database, "now" when it was seeded, and the times of each kind of point."""

    def __init__(self, influx: InfluxClient, now: int) -> None:
        self.influx = influx
        self.now = now
        self.raw = [now - 5 * M - k * 10 * M for k in range(33 * 144)]
        last_hour = now - now % H - H
        self.hourly = [last_hour - k * H for k in (*range(65 * 24), *range(179 * 24, 181 * 24))]
        last_day = now - (now - WITA_MIDNIGHT) % D - D
        self.daily = [last_day - k * D for k in range(100)]


@pytest.fixture(scope="module")
def seeded(influxd: stack.Service) -> Iterator[Seeded]:
    influx = InfluxClient(f"http://127.0.0.1:{influxd.port}", f"dash_old{os.getpid()}")
    influx.create_database()
    for p in retention.policies(KEPT):  # policies that keep everything; no continuous query runs
        influx.command(f"CREATE RETENTION POLICY {quote_ident(p.name)} ON {quote_ident(influx.database)} "
                       f"{p.clause()}")
    data = Seeded(influx, int(time.time() * 1000))
    _write(influx, influxd.port, schema.RP_RAW, _points(data.raw, 0))
    _write(influx, influxd.port, schema.RP_HOURLY, _points(data.hourly, 1))
    _write(influx, influxd.port, schema.RP_DAILY, _points(data.daily, 2))
    yield data
    influx.command(f'DROP DATABASE "{influx.database}"')
    influx.close()


def run(seeded: Seeded, end: int, span: str, interval: str, ref: str,
        keep: InfluxSettings = KEEP) -> tuple[list[tuple[int, Any]], int, int]:
    """The Mariso series of panel 5 (dashboards built for ``keep``), target ``ref``, for the range
    ``span`` up to ``end`` (epoch ms), with the epoch ms just before and after the query (InfluxDB's
    ``now()`` is between the two)."""
    board = dict(build_all(keep)[BINS], time={"from": f"now-{span}", "to": "now"})
    sim = GrafanaSim(board, seeded.influx, end, interval)
    before = int(time.time() * 1000)
    result = sim.run(PANEL, ref)
    after = int(time.time() * 1000) + 1
    assert set(result.series) <= {"Mariso"}, result.query
    return result.series.get("Mariso", []), before, after


def floor(t: int, step: int) -> int:
    return t - t % step


def either(now_before: int, now_after: int, expect: Callable[[int], list[tuple[int, float]]]) -> list[Any]:
    """What the panel may show when InfluxDB's ``now()`` was anywhere between the two instants: the
    expectations at both ends (a point near a limit may fall on either side)."""
    return [[(t, pytest.approx(v, rel=1e-12)) for t, v in expect(n)] for n in (now_before, now_after)]


def test_recent_day_shows_raw_readings(seeded: Seeded) -> None:
    end = seeded.now
    got, _, _ = run(seeded, end, "24h", "1m", "A")
    want = sorted({floor(t, 10 * M) for t in seeded.raw if end - D <= t <= end})
    assert len(want) == 144
    assert got == [(t, pytest.approx(RAW, rel=1e-12)) for t in want]


def test_day_six_weeks_ago_shows_hourly_means(seeded: Seeded) -> None:
    """Raw readings are kept 30 days: a one-day range 45 days back shows one hourly mean per hour."""
    end = seeded.now - 45 * D
    got, _, _ = run(seeded, end, "24h", "1m", "A")
    want = [t for t in sorted(seeded.hourly) if end - D <= t <= end]
    assert len(want) == 24
    assert got == [(t, pytest.approx(HOURLY, rel=1e-12)) for t in want]


def test_day_six_months_ago_with_the_default_retention(seeded: Seeded) -> None:
    """The committed dashboards (raw readings kept 90 days): a day six months back shows hourly means."""
    end = seeded.now - 180 * D
    got, _, _ = run(seeded, end, "24h", "1m", "A", InfluxSettings())
    want = [t for t in sorted(seeded.hourly) if end - D <= t <= end]
    assert len(want) == 24
    assert got == [(t, pytest.approx(HOURLY, rel=1e-12)) for t in want]


def test_range_across_the_raw_limit_shows_both_once(seeded: Seeded) -> None:
    """12 h around ``now() - 30d``: hourly means of the hours that end before the limit, then raw
    readings after it; no bucket holds both, and from the start of the hour holding the limit up to
    the limit nothing shows."""
    end = seeded.now - RAW_S + 6 * H
    got, before, after = run(seeded, end, "12h", "1m", "A")

    def expect(now: int) -> list[tuple[int, float]]:
        limit = now - RAW_S
        hours = [(t, HOURLY) for t in seeded.hourly if end - 12 * H <= t <= limit - H]
        raws = {floor(t, 10 * M) for t in seeded.raw if limit < t <= end}
        return sorted(hours) + [(t, RAW) for t in sorted(raws)]

    assert got in either(before, after, expect)
    hourly = [t for t, v in got if v == pytest.approx(HOURLY)]
    raw = [t for t, v in got if v == pytest.approx(RAW)]
    assert len(hourly) in (5, 6) and len(raw) == 36 and len(hourly) + len(raw) == len(got)
    assert hourly[-1] + H <= raw[0] <= hourly[-1] + 2 * H  # no overlap; a gap under one hour


def test_beyond_the_hourly_means_shows_daily_means(seeded: Seeded) -> None:
    """Hourly means are kept 60 days: a one-day range 80 days back shows that day's daily mean."""
    end = seeded.now - 80 * D
    got, _, _ = run(seeded, end, "24h", "1m", "A")
    want = [t for t in seeded.daily if end - D <= t <= end]
    assert len(want) == 1
    assert got == [(want[0], pytest.approx(DAILY, rel=1e-12))]


def test_hourly_interval_across_the_hourly_limit(seeded: Seeded) -> None:
    """With a 1 h interval (target B) four days around ``now() - 60d``: daily means of the days that
    end before the limit, then hourly means."""
    end = seeded.now - HOURLY_S + 2 * D
    got, before, after = run(seeded, end, "4d", "1h", "B")

    def expect(now: int) -> list[tuple[int, float]]:
        limit = now - HOURLY_S
        days = [(t, DAILY) for t in seeded.daily if end - 4 * D <= t <= limit - D]
        return sorted(days) + [(t, HOURLY) for t in sorted(seeded.hourly) if limit < t <= end]

    assert got in either(before, after, expect)
    assert [v for _, v in got].count(pytest.approx(DAILY)) == 1


def test_targets_switch_by_interval_on_old_ranges(seeded: Seeded) -> None:
    """45 days back, each target still runs only in its own interval band."""
    end = seeded.now - 45 * D
    assert run(seeded, end, "24h", "1h", "A")[0] == []
    assert run(seeded, end, "24h", "1m", "B")[0] == []
    hourly, _, _ = run(seeded, end, "24h", "1h", "B")
    assert [v for _, v in hourly] == [pytest.approx(HOURLY)] * 24


def test_level_sources() -> None:
    keep = InfluxSettings()  # raw 90 d, hourly 1830 d, daily forever
    assert level_sources(keep, 0) == [
        (None, ["time > now() - 90d"]),
        (schema.RP_HOURLY, ["time <= now() - 90d - 1h", "time > now() - 1830d"]),
        (schema.RP_DAILY, ["time <= now() - 1830d - 1d"])]
    assert level_sources(keep, 1) == [(schema.RP_HOURLY, ["time > now() - 1830d"]),
                                      (schema.RP_DAILY, ["time <= now() - 1830d - 1d"])]
    assert level_sources(keep, 2) == [(schema.RP_DAILY, [])]
    forever = InfluxSettings(raw_days=7, hourly_days=0)
    assert level_sources(forever, 0) == [(None, ["time > now() - 7d"]), (schema.RP_HOURLY, ["time <= now() - 7d - 1h"])]
    assert level_sources(forever, 1) == [(schema.RP_HOURLY, [])]
