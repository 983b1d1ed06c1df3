""""Days in" for a city in a zone with daylight saving time, against a real InfluxDB.

London (``Europe/London``, GMT in winter, BST = UTC+1 in summer) moves its clock forward on
2026-03-29 (a 23 h local day) and back on 2026-10-25 (a 25 h local day). For six local days around
each change a London bin reads every 30 min and is emptied a few minutes after or before some local
midnights; Lorong's daily means of those days (the daily continuous query's statement run by
:func:`lorong.storage.retention.backfill`, ``tz('Europe/London')``) and the pickups are then shown
by the Bins dashboard built for a registry holding Makassar and London. Expected numbers are worked
out here from the written readings with :mod:`zoneinfo`, not read back from InfluxDB.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import fmean
from zoneinfo import ZoneInfo

import pytest

from dashboards.build import build_all
from dashboards.panels import DaysIn
from lorong.core import schema
from lorong.core.errors import StoreRejected
from lorong.core.model import to_ms, utc_from_ms
from lorong.storage import retention
from lorong.storage.influx import InfluxClient, line
from tests.dashboards.grafana import GrafanaSim, Selection
from tests.dashboards.scenario import KEPT, D, H, M

pytestmark = pytest.mark.integration

LONDON = "Europe/London"
ZONES = retention.DayZones("Asia/Makassar", {"makassar": "Asia/Makassar", "london": LONDON})
"""The registry: Makassar (the deployment's zone, WITA) and London."""
DAYS = DaysIn.of(ZONES.default, ZONES.cities.values())
"""What ``lorong dashboards build`` offers in "Days in" for that registry."""
BINS = "lorong-bins"
MEAN_FILL, PICKUPS = 5, 6
"""Bins panels: mean fill by kecamatan (target C: daily means), pickups per day."""
KEC = "Westminster"
AT_LONDON: dict[str, Selection] = {"city": ["london"], "day_zone": "tz('Europe/London')"}

CHANGES = {"march": date(2026, 3, 29), "october": date(2026, 10, 25)}
"""The days London's clock changes in 2026 (EU rule: last Sunday of March and October, 01:00 UTC)."""


def midnight_ms(day: date, tz: str = LONDON) -> int:
    """Local midnight of ``day`` in ``tz``, epoch ms."""
    return to_ms(retention.local_midnight(day, tz))


def local_day(ms: int, tz: str = LONDON) -> date:
    """The local calendar day holding the instant ``ms`` in ``tz``."""
    return utc_from_ms(ms).astimezone(ZoneInfo(tz)).date()


@dataclass
class London:
    """The seeded database, its "now" (epoch ms), the six local days, and what each day holds."""

    influx: InfluxClient
    now: int
    days: list[date]
    means: dict[date, float]
    pickups: dict[date, int]


@pytest.fixture(params=sorted(CHANGES), ids=sorted(CHANGES))
def london(request: pytest.FixtureRequest, influx: InfluxClient) -> Iterator[London]:
    """Readings every 30 min (at :07 and :37) and pickups at 00:20 and 23:40 local time around one change."""
    change = CHANGES[request.param]
    days = [change + timedelta(days=k) for k in range(-3, 3)]
    now = midnight_ms(days[-1] + timedelta(days=1)) + 6 * H
    retention.apply(influx, KEPT, ZONES, now=utc_from_ms(now))
    tags = {schema.TAG_DEVICE: "L1", schema.TAG_KECAMATAN: KEC, schema.TAG_CITY: "london"}
    readings: dict[date, list[float]] = {}
    lines = []
    t, i = midnight_ms(days[0]) + 7 * M, 0
    while t < midnight_ms(days[-1] + timedelta(days=1)):
        fill = round((i * 37 % 89) / 100, 2)
        readings.setdefault(local_day(t), []).append(fill)
        lines.append(line(schema.MEASUREMENT_BIN, tags, {schema.FIELD_FILL: fill}, t))
        t, i = t + 30 * M, i + 1
    # a pickup 20 min after the local midnight of every day, one 20 min before the midnight that ends
    # the change day and the day before it: each is on the other side of the UTC date line in summer
    events = [midnight_ms(d) + 20 * M for d in days]
    events += [midnight_ms(d + timedelta(days=1)) - 20 * M for d in (change - timedelta(days=1), change)]
    lines += [line(schema.MEASUREMENT_COLLECTION, tags, {schema.FIELD_BEFORE: 0.9, schema.FIELD_AFTER: 0.05}, e)
              for e in events]
    influx.write_lines(lines)
    retention.backfill(influx, ZONES, utc_from_ms(midnight_ms(days[0])),
                       utc_from_ms(midnight_ms(days[-1] + timedelta(days=1))), now=utc_from_ms(now))
    hours = [(midnight_ms(d + timedelta(days=1)) - midnight_ms(d)) // H for d in days]
    assert sorted(Counter(hours).items()) == sorted([(23 if request.param == "march" else 25, 1), (24, 5)])
    assert [len(readings[d]) for d in days] == [h * 2 for h in hours]  # every local day read in full
    yield London(influx, now, days, {d: fmean(v) for d, v in readings.items()},
                 dict(Counter(local_day(e) for e in events)))


def test_days_in_a_dst_zone_start_at_its_local_midnight(london: London) -> None:
    """With "Days in" London, each 1-day bucket starts at London's midnight (00:00 or 23:00 UTC, the
    change day 23 or 25 hours long) and holds exactly that local day's daily mean and pickups."""
    sim = GrafanaSim(build_all(KEPT, DAYS)[BINS], london.influx, london.now, "1d", AT_LONDON)
    run = sim.run(MEAN_FILL, "C")
    assert run.query.endswith("fill(none) tz('Europe/London')"), run.query
    got = run.series[KEC]
    assert [t for t, _ in got] == [midnight_ms(d) for d in london.days], run.query
    assert {utc_from_ms(t).hour for t, _ in got} == {0, 23}  # GMT and BST midnights
    assert [v for _, v in got] == pytest.approx([london.means[d] for d in london.days], rel=1e-12)
    pickups = sim.run(PICKUPS, "A")
    assert pickups.series == {KEC: [(midnight_ms(d), london.pickups[d]) for d in london.days]}, pickups.query
    assert sorted(set(london.pickups.values())) == [1, 2]


def test_the_default_zone_keeps_one_daily_mean_per_bucket(london: London) -> None:
    """Under the deployment's WITA (selected when the dashboard opens) London's days keep their own
    means, one per bucket (WITA midnight, 16:00 UTC, is hours away from London's), each labelled at the
    WITA midnight before London's: the dashboard cannot know the city's zone."""
    dashboard = build_all(KEPT, DAYS)[BINS]
    assert next(v for v in dashboard["templating"]["list"] if v["name"] == "day_zone")["current"] == {
        "selected": True, "text": "WITA (UTC+8)", "value": "tz('Asia/Makassar')"}
    got = GrafanaSim(dashboard, london.influx, london.now, "1d", {"city": ["london"]}).run(MEAN_FILL, "C")
    wita = [midnight_ms(local_day(midnight_ms(d), "Asia/Makassar"), "Asia/Makassar") for d in london.days]
    assert [t for t, _ in got.series[KEC]] == wita, got.query
    assert [v for _, v in got.series[KEC]] == pytest.approx([london.means[d] for d in london.days], rel=1e-12)


def test_another_zone_whose_midnight_london_crosses_merges_or_skips_a_day(london: London) -> None:
    """The limit the README states: under a UTC+0 zone (Africa/Abidjan, midnight at 00:00 UTC, which
    London's midnight crosses at each change) London's summer days (midnight 23:00 UTC) fall in the UTC
    day before: in March the UTC day of the change holds two London daily means (its own, stamped 00:00
    UTC, and the next day's, 23:00 UTC); in October the UTC day of the change holds none."""
    dashboard = build_all(KEPT, DaysIn.of(ZONES.default, [*ZONES.cities.values(), "Africa/Abidjan"]))[BINS]
    got = GrafanaSim(dashboard, london.influx, london.now, "1d",
                     {"city": ["london"], "day_zone": "tz('Africa/Abidjan')"}).run(MEAN_FILL, "C").series[KEC]
    by_utc_day: dict[int, list[float]] = {}
    for d in london.days:
        t = midnight_ms(d)
        by_utc_day.setdefault(t - t % D, []).append(london.means[d])
    assert [t for t, _ in got] == sorted(by_utc_day)
    assert [v for _, v in got] == pytest.approx([fmean(by_utc_day[t]) for t in sorted(by_utc_day)], rel=1e-12)
    change = next(d for d in CHANGES.values() if d in london.days)
    change_utc = midnight_ms(change, "UTC")
    if change.month == 3:
        assert len(by_utc_day[change_utc]) == 2 and len(got) == len(london.days) - 1
    else:
        assert change_utc not in by_utc_day and len(got) == len(london.days)


def test_days_in_offers_the_registry_zones() -> None:
    """Indonesia's three zones first (as before), then the deployment's and the cities' other zones by
    name; the dashboards of ``dashboards/out`` (no registry) offer Indonesia's three."""
    variable = next(v for v in build_all(KEPT, DaysIn.of("Asia/Makassar", ["Europe/London", "America/New_York",
                                                                           "Asia/Jakarta", "Europe/London"]))
                    [BINS]["templating"]["list"] if v["name"] == "day_zone")
    assert [(o["text"], o["value"]) for o in variable["options"]] == [
        ("WITA (UTC+8)", "tz('Asia/Makassar')"), ("WIB (UTC+7)", "tz('Asia/Jakarta')"),
        ("WIT (UTC+9)", "tz('Asia/Jayapura')"), ("America/New_York", "tz('America/New_York')"),
        ("Europe/London", "tz('Europe/London')")]
    berlin = next(v for v in build_all(KEPT, DaysIn("Europe/Berlin"))[BINS]["templating"]["list"]
                  if v["name"] == "day_zone")
    assert berlin["current"]["value"] == "tz('Europe/Berlin')" and berlin["options"][-1]["selected"]
    with pytest.raises(ValueError, match="'Mars/Olympus' is not an IANA time zone"):
        build_all(KEPT, DaysIn.of("Asia/Makassar", ["Mars/Olympus"]))
    with pytest.raises(ValueError, match="is not an IANA time zone"):
        build_all(KEPT, DaysIn.of("Asia/Makassar", ["Europe/London') tz('UTC"]))


def test_a_plain_variable_would_not_reach_influxdb_unchanged(london: London) -> None:
    """Why the queries say ``${day_zone:raw}``: in the regex format Grafana's InfluxDB datasource may
    apply to a plain ``$day_zone``, the clause arrives escaped and InfluxDB refuses the query."""
    dashboard = build_all(KEPT, DAYS)[BINS]
    panel = next(p for p in dashboard["panels"] if p["id"] == PICKUPS)
    target = panel["targets"][0]
    assert target["query"].endswith(" ${day_zone:raw}")
    plain = {**dashboard, "panels": [{**panel, "targets": [{**target, "query": target["query"].replace(
        "${day_zone:raw}", "$day_zone")}]}]}
    sim = GrafanaSim(plain, london.influx, london.now, "1d", AT_LONDON)
    sent = sim.interpolate(plain["panels"][0]["targets"][0]["query"], 0, 1)
    assert sent.endswith(r" tz\('Europe\/London'\)"), sent
    with pytest.raises(StoreRejected, match="error parsing query: tz must be a function call"):
        sim.run(PICKUPS, "A")
