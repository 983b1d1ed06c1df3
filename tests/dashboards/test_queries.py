"""Every panel, variable and annotation of every dashboard, run against a real InfluxDB.

The scenario (:mod:`tests.dashboards.scenario`) is written into a fresh database; each case opens
a dashboard as Grafana would (:class:`tests.dashboards.grafana.GrafanaSim`: its default range
ending at ``NOW``, an interval, variable selections), runs one target and compares the series or
rows with numbers worked out by hand from the scenario table. ``test_every_query_is_checked``
fails when a panel target, variable or annotation has no case.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

import pytest

from dashboards.build import build_all
from dashboards.panels import ALL
from lorong.core import schema
from lorong.core.model import utc_from_ms
from lorong.storage import retention, stack
from lorong.storage.influx import InfluxClient, line
from tests.dashboards.grafana import GrafanaSim
from tests.dashboards.scenario import KEPT, NOW, D, H, M, S, seed

pytestmark = pytest.mark.integration

DASHBOARDS = build_all(KEPT)
"""The dashboards for the scenario's retention (its raw readings, dated 2025, are all still kept)."""
BINS, AIR, OPS = "lorong-bins", "lorong-air", "lorong-ops"


def at(age_ms: int) -> int:
    """Epoch ms ``age_ms`` before NOW."""
    return NOW - age_ms


WITA_DAY0 = 1_764_691_200_000
"""2025-12-03 00:00 WITA (2025-12-02T16:00Z): the local day holding the Bins range's start (NOW - 7 d)."""


def wita_days(counts: list[int]) -> list[tuple[int, float]]:
    """Pickups per local day from WITA_DAY0 as the panel shows them: only days with a detected pickup
    (``fill(none)``; a day without data is not a day of zero pickups)."""
    return [(WITA_DAY0 + i * D, n) for i, n in enumerate(counts) if n]


@dataclass(frozen=True)
class Case:
    """One target run: where, how (interval, selection) and what Grafana must show."""

    uid: str
    panel: int
    ref: str
    expected: dict[str, list[tuple[int, Any]]] | list[dict[str, Any]]
    selection: dict[str, Any] = field(default_factory=dict)
    interval: str = "1h"
    note: str = "all"

    @property
    def id(self) -> str:
        return f"{self.uid}/{self.panel}{self.ref}/{self.note}"


MARISO_UP = {"kecamatan": ["Mariso", "Ujung Pandang"]}

CASES = [
    # --- Bins (range NOW-7d .. NOW) ---
    Case(BINS, 1, "A", {"full bins": [(0, 2)]}),
    Case(BINS, 1, "A", {"full bins": [(0, 1)]}, {"kecamatan": ["Mariso"]}, note="one kecamatan"),
    Case(BINS, 1, "A", {"full bins": [(0, 1)]}, {"device": ["B2", "B3"]}, note="two devices"),
    Case(BINS, 1, "A", {}, {"kecamatan": ["Ujung Pandang"]}, note="none full"),
    Case(BINS, 2, "A", {"Mariso": [(0, 0.675)], "Tallo": [(0, 0.63)], "Ujung Pandang": [(0, 0.10)]}),
    Case(BINS, 2, "A", {"Mariso": [(0, 0.675)], "Ujung Pandang": [(0, 0.10)]}, MARISO_UP, note="regex"),
    Case(BINS, 3, "A", [{"time": at(1 * H), "device_id": "B1", "kecamatan": "Mariso", "fill": 0.85},
                        {"time": at(2 * H), "device_id": "B3", "kecamatan": "Tallo", "fill": 0.96}]),
    Case(BINS, 4, "A", [
        {"time": at(30 * M), "device_id": "B1", "kecamatan": "Mariso", "lat": -5.1477, "lon": 119.4327,
         "fillingLevel": 0.85},
        {"time": at(30 * M), "device_id": "B2", "kecamatan": "Mariso", "lat": -5.1611, "lon": 119.4112,
         "fillingLevel": 0.50},
        {"time": at(30 * M), "device_id": "B3", "kecamatan": "Tallo", "lat": -5.1123, "lon": 119.4419,
         "fillingLevel": 0.96},
        {"time": at(30 * M), "device_id": "B4", "kecamatan": "Ujung Pandang", "lat": -5.1352, "lon": 119.4136,
         "fillingLevel": 0.10}]),
    # hourly means from a 1h interval on: Mariso's 22:00 hour is the mean of B1 0.70 and B2's hourly
    # mean 0.40 (0.30, 0.50), 0.55, where the raw readings' mean would be 0.50
    Case(BINS, 5, "B", {"Mariso": [(at(3 * H), 0.30), (at(2 * H), 0.55), (at(1 * H), 0.85)],
                        "Tallo": [(at(5 * H), 0.30), (at(3 * H), 0.90), (at(2 * H), 0.96)],
                        "Ujung Pandang": [(at(3 * H), 0.10)]}),
    Case(BINS, 5, "A", {}, note="raw off from 1h"),
    Case(BINS, 5, "B", {}, interval="1m", note="means off under 1h"),
    # daily means (local day Dec 10 WITA starts at NOW - 8 h): B1 0.65, B2 1/3 -> Mariso 0.491667;
    # B3 0.93, B6 0.30 -> Tallo 0.615
    Case(BINS, 5, "C", {"Mariso": [(at(8 * H), (0.65 + 1 / 3) / 2)], "Tallo": [(at(8 * H), 0.615)],
                        "Ujung Pandang": [(at(8 * H), 0.10)]}, interval="1d"),
    Case(BINS, 5, "C", {}, note="daily off under 1d"),
    Case(BINS, 5, "A", {"Mariso": [(at(3 * H), 0.30), (at(2 * H), 0.50), (at(90 * M), 0.50), (at(1 * H), 0.85)],
                        "Tallo": [(at(5 * H), 0.30), (at(3 * H), 0.90), (at(2 * H), 0.96)],
                        "Ujung Pandang": [(at(150 * M), 0.10)]},
         interval="1m", note="panel minimum 10m"),
    Case(BINS, 5, "B", {"Mariso": [(at(3 * H), 0.40), (at(2 * H), 0.70), (at(1 * H), 0.85)]},
         {"device": ["B1"]}, note="one device"),
    Case(BINS, 6, "A", {"Mariso": wita_days([0, 0, 1, 1, 0, 0, 1, 0]), "Tallo": wita_days([0, 0, 0, 0, 1, 0, 0, 0])}),
    Case(BINS, 7, "A", [
        {"time": at(30 * M), "device_id": "B1", "kecamatan": "Mariso", "hours_to_full": 0.0, "fillingLevel": 0.85},
        {"time": at(30 * M), "device_id": "B2", "kecamatan": "Mariso", "hours_to_full": 12.5, "fillingLevel": 0.50},
        {"time": at(30 * M), "device_id": "B3", "kecamatan": "Tallo", "hours_to_full": 0.0, "fillingLevel": 0.96},
        {"time": at(30 * M), "device_id": "B4", "kecamatan": "Ujung Pandang", "hours_to_full": None,
         "fillingLevel": 0.10}]),
    # --- Air quality (range NOW-24h .. NOW) ---
    Case(AIR, 1, "B", {"A1": [(at(3 * H), 15.0), (at(1 * H), 80.0)], "A2": [(at(3 * H), 5.0)]}),
    # A2's reading @26 h is in local day Dec 9, whose daily mean (at NOW - 32 h) is before the range
    Case(AIR, 1, "C", {"A1": [(at(8 * H), 110 / 3)], "A2": [(at(8 * H), 5.0)]}, interval="1d"),
    Case(AIR, 1, "A", {"A1": [(at(3 * H), 10.0), (at(170 * M), 20.0), (at(1 * H), 80.0)], "A2": [(at(3 * H), 5.0)]},
         interval="1m", note="panel minimum 5m"),
    Case(AIR, 2, "A", {"A1": [(at(3 * H), 40.0), (at(170 * M), 60.0), (at(1 * H), 160.0)], "A2": [(at(3 * H), 20.0)]},
         interval="1m", note="panel minimum 5m"),
    Case(AIR, 2, "B", {"A1": [(at(3 * H), 50.0), (at(1 * H), 160.0)], "A2": [(at(3 * H), 20.0)]}),
    Case(AIR, 2, "B", {"A2": [(at(3 * H), 20.0)]}, {"device": ["A2"]}, note="one station"),
    Case(AIR, 2, "C", {"A1": [(at(8 * H), 260 / 3)], "A2": [(at(8 * H), 20.0)]}, interval="1d"),
    Case(AIR, 3, "A", {"A1": [(at(30 * M), 150.0)], "A2": [(at(30 * M), 20.0)]}),
    Case(AIR, 3, "A", {"A1": [(at(30 * M), 150.0)]}, {"kecamatan": ["Tallo"]}, note="one kecamatan"),
    # --- Operations (range NOW-6h .. NOW; computed interval 20s, panels' minimum 1m wins) ---
    Case(OPS, 1, "A", {"ingest-1 messages": [(at(4 * M), 2.0), (at(3 * M), 2.0), (at(2 * M), 2.0)],
                       "ingest-1 points": [(at(4 * M), 4.0), (at(3 * M), 4.0), (at(2 * M), 4.0)],
                       "ingest-2 messages": [(at(4 * M), 1.0), (at(2 * M), 1.0)],
                       "ingest-2 points": [(at(4 * M), 2.0), (at(2 * M), 2.0)]}, interval="20s"),
    Case(OPS, 1, "A", {"ingest-2 messages": [(at(4 * M), 1.0), (at(2 * M), 1.0)],
                       "ingest-2 points": [(at(4 * M), 2.0), (at(2 * M), 2.0)]},
         {"instance": ["ingest-2"]}, interval="20s", note="one instance"),
    Case(OPS, 2, "A", {"bad_json": [(at(4 * M), 1.0), (at(3 * M), 5.0), (at(2 * M), 4.0)],
                       "out_of_range": [(at(4 * M), 2.0), (at(3 * M), 0.0), (at(2 * M), 0.0)]}, interval="20s"),
    Case(OPS, 2, "A", {"bad_json": [(at(4 * M), 1.0), (at(3 * M), 2.0), (at(2 * M), 4.0)],
                       "out_of_range": [(at(4 * M), 2.0), (at(3 * M), 0.0), (at(2 * M), 0.0)]},
         {"instance": ["ingest-1"]}, interval="20s", note="one instance"),
    Case(OPS, 3, "A", {"ingest-1": [(at(5 * M), 5.0), (at(4 * M), 10.0), (at(3 * M), 40.0), (at(2 * M), 20.0)],
                       "ingest-2": [(at(m * M), 0.0) for m in (5, 4, 3, 2)]}, interval="20s"),
    Case(OPS, 4, "A", {"ingest-1": [(at(5 * M), 4.0), (at(4 * M), 6.0), (at(3 * M), 8.0), (at(2 * M), 10.0)],
                       "ingest-2": [(at(m * M), 2.0) for m in (5, 4, 3, 2)]}, interval="20s"),
    Case(OPS, 5, "A", {"bins": [(0, 1)]}, interval="20s"),
    Case(OPS, 5, "A", {}, {"kecamatan": ["Mariso"]}, interval="20s", note="none offline"),
    Case(OPS, 5, "B", {"air stations": [(0, 1)]}, interval="20s"),
    Case(OPS, 6, "A", [{"time": at(5 * H), "device_id": "B6", "kecamatan": "Tallo", "last_rx": at(5 * H) + 2 * S}],
         interval="20s"),
    Case(OPS, 6, "B", [{"time": at(2 * D), "device_id": "A3", "kecamatan": "Ujung Pandang",
                        "last_rx": at(2 * D) + 2 * S}], interval="20s"),
    Case(OPS, 7, "A", [{"time": at(1 * H), "device_id": "B1", "kecamatan": "Mariso", "battery": 0.90},
                       {"time": at(90 * M), "device_id": "B2", "kecamatan": "Mariso", "battery": 0.80},
                       {"time": at(2 * H), "device_id": "B3", "kecamatan": "Tallo", "battery": 0.12},
                       {"time": at(150 * M), "device_id": "B4", "kecamatan": "Ujung Pandang", "battery": 0.50},
                       {"time": at(5 * H), "device_id": "B6", "kecamatan": "Tallo", "battery": 0.15}],
         interval="20s"),
    Case(OPS, 7, "A", [{"time": at(2 * H), "device_id": "B3", "kecamatan": "Tallo", "battery": 0.12},
                       {"time": at(5 * H), "device_id": "B6", "kecamatan": "Tallo", "battery": 0.15}],
         {"kecamatan": ["Tallo"]}, interval="20s", note="one kecamatan"),
    Case(OPS, 7, "B", [{"time": at(1 * H), "device_id": "A1", "kecamatan": "Tallo", "battery": 0.70},
                       {"time": at(3 * H), "device_id": "A2", "kecamatan": "Mariso", "battery": 0.60}],
         interval="20s"),
]

VARIABLE_CASES = [
    (BINS, "city", {}, ["makassar"]),
    (AIR, "city", {}, ["makassar"]),
    (OPS, "city", {}, ["makassar"]),
    (BINS, "kecamatan", {}, ["Mariso", "Tallo", "Ujung Pandang"]),
    (BINS, "device", {}, ["B1", "B2", "B3", "B4", "B5", "B6"]),
    (BINS, "device", MARISO_UP, ["B1", "B2", "B4"]),
    (AIR, "kecamatan", {}, ["Mariso", "Tallo", "Ujung Pandang"]),
    (AIR, "device", {}, ["A1", "A2", "A3"]),
    (AIR, "device", {"kecamatan": ["Tallo"]}, ["A1"]),
    (OPS, "instance", {}, ["ingest-1", "ingest-2"]),
    (OPS, "kecamatan", {}, ["Mariso", "Tallo", "Ujung Pandang"]),
    (OPS, "device", {}, ["A1", "A2", "A3", "B1", "B2", "B3", "B4", "B5", "B6"]),
    (OPS, "device", {"kecamatan": ["Ujung Pandang"]}, ["A3", "B4"]),
    (BINS, "day_zone", {}, ["tz('Asia/Makassar')", "tz('Asia/Jakarta')", "tz('Asia/Jayapura')"]),  # WITA, WIB, WIT
    (AIR, "day_zone", {}, ["tz('Asia/Makassar')", "tz('Asia/Jakarta')", "tz('Asia/Jayapura')"]),
]

ANNOTATION_CASES = [
    (BINS, "Bin alerts", {}, [{"time": at(2 * H), "text": "opened", "tags": ["bin_full", "critical", "B3"]},
                              {"time": at(1 * H), "text": "opened", "tags": ["bin_full", "major", "B1"]}]),
    (BINS, "Bin alerts", {"kecamatan": ["Mariso"]},
     [{"time": at(1 * H), "text": "opened", "tags": ["bin_full", "major", "B1"]}]),
    (AIR, "Air alerts", {}, [{"time": at(5 * H), "text": "opened", "tags": ["pm25_high", "major", "A1"]},
                             {"time": at(4 * H), "text": "opened", "tags": ["offline", "minor", "A2"]},
                             {"time": at(2 * H), "text": "cleared", "tags": ["pm25_high", "major", "A1"]}]),
    (AIR, "Air alerts", {"device": ["A2"]},
     [{"time": at(4 * H), "text": "opened", "tags": ["offline", "minor", "A2"]}]),
]


def _database(influxd: stack.Service, cities: int) -> Iterator[InfluxClient]:
    client = InfluxClient(f"http://127.0.0.1:{influxd.port}", f"dash{os.getpid()}_{cities}")
    client.create_database()
    seed(client, cities)
    yield client
    client.command(f'DROP DATABASE "{client.database}"')
    client.close()


@pytest.fixture(scope="module")
def seeded(influxd: stack.Service) -> Iterator[InfluxClient]:
    """A database with the scenario (Makassar) in it, shared by the module's tests (they only read)."""
    yield from _database(influxd, 1)


@pytest.fixture(scope="module")
def two_cities(influxd: stack.Service) -> Iterator[InfluxClient]:
    """A database with the scenario and Parepare (:func:`tests.dashboards.scenario.second_city_lines`)."""
    yield from _database(influxd, 2)


def _rows_key(row: dict[str, Any]) -> tuple[str, int]:
    return (str(row.get("device_id")), int(row["time"]))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_panel_query(seeded: InfluxClient, case: Case) -> None:
    sim = GrafanaSim(DASHBOARDS[case.uid], seeded, NOW, case.interval, case.selection)
    run = sim.run(case.panel, case.ref)
    if isinstance(case.expected, dict):
        assert run.rows == [] and sorted(run.series) == sorted(case.expected), run.query
        for name, points in case.expected.items():
            got = run.series[name]
            assert [t for t, _ in got] == [t for t, _ in points], f"{name}: {run.query}"
            assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-12, abs=1e-12), name
    else:
        assert run.series == {}, run.query
        got_rows = sorted(run.rows, key=_rows_key)
        want = sorted(case.expected, key=_rows_key)
        assert [sorted(r) for r in got_rows] == [sorted(r) for r in want], run.query
        for g, w in zip(got_rows, want, strict=True):
            assert g == {k: pytest.approx(v, rel=1e-12, abs=1e-12) if isinstance(v, float) else v
                         for k, v in w.items()}, run.query


@pytest.mark.parametrize(("uid", "name", "selection", "expected"), VARIABLE_CASES,
                         ids=[f"{u}/${n}/{'+'.join(sorted(s)) or 'all'}" for u, n, s, _ in VARIABLE_CASES])
def test_variable_query(seeded: InfluxClient, uid: str, name: str, selection: dict[str, Any],
                        expected: list[str]) -> None:
    assert GrafanaSim(DASHBOARDS[uid], seeded, NOW, "1h", selection).options(name) == expected


@pytest.mark.parametrize(("uid", "name", "selection", "expected"), ANNOTATION_CASES,
                         ids=[f"{u}/{n}/{'+'.join(sorted(s)) or 'all'}" for u, n, s, _ in ANNOTATION_CASES])
def test_annotation_query(seeded: InfluxClient, uid: str, name: str, selection: dict[str, Any],
                          expected: list[dict[str, Any]]) -> None:
    assert GrafanaSim(DASHBOARDS[uid], seeded, NOW, "1h", selection).annotations(name) == expected


def test_queries_as_influxdb_receives_them(seeded: InfluxClient) -> None:
    """Macros and the variable formats Grafana produces: multi-value regex, All, allValue, ranges."""
    bins = GrafanaSim(DASHBOARDS[BINS], seeded, NOW, "2h", {**MARISO_UP, "device": ALL, "city": ["makassar"]})
    assert bins.run(5, "B").query == (
        'SELECT mean("fillingLevel") AS "fill" FROM "hourly"."waste_container" '
        f'WHERE time >= {NOW - 7 * D}ms and time <= {NOW}ms AND "city" =~ /^makassar$/ '
        'AND "kecamatan" =~ /^(Mariso|Ujung Pandang)$/ AND "device_id" =~ /^.*$/ '
        'AND 7200000 >= 3600000 AND 7200000 < 86400000 GROUP BY time(2h), "kecamatan" fill(none)')
    assert " AND 7200000 < 3600000 GROUP BY" in bins.run(5, "A").query  # raw readings off
    assert bins.run(5, "C").query.endswith("AND 7200000 >= 86400000 GROUP BY time(2h), \"kecamatan\" "
                                           "fill(none) tz('Asia/Makassar')")  # "Days in" WITA, the default, raw
    ops = GrafanaSim(DASHBOARDS[OPS], seeded, NOW, "20s")
    assert '"instance" =~ /^(ingest-1|ingest-2)$/' in ops.run(3, "A").query  # All without allValue
    assert "GROUP BY time(1m)" in ops.run(3, "A").query  # the panel's minimum beats 20s
    offline = ops.run(5, "A").query  # timeFrom 7d, ${__to}
    assert f"time >= {NOW - 7 * D}ms and time <= {NOW}ms" in offline
    assert f'"last_rx" < {NOW} - 10800000' in offline
    single = GrafanaSim(DASHBOARDS[AIR], seeded, NOW, "1h", {"device": ["A.1"]})
    assert '"device_id" =~ /^A\\.1$/' in single.run(1, "A").query  # one value, regex-escaped
    stations = GrafanaSim(DASHBOARDS[AIR], seeded, NOW, "1h").run(1, "A").query  # All = every station
    assert '"kecamatan" =~ /^.*$/ AND "device_id" =~ /^(A1|A2|A3)$/' in stations


def _query_keys() -> set[tuple[str, ...]]:
    keys: set[tuple[str, ...]] = set()
    for uid, dash in DASHBOARDS.items():
        for panel in dash["panels"]:
            keys |= {("panel", uid, str(panel["id"]), t["refId"]) for t in panel.get("targets", [])}
            assert panel.get("targets"), f"{uid} panel {panel['id']} has no query"
        keys |= {("variable", uid, v["name"]) for v in dash.get("templating", {}).get("list", [])}
        keys |= {("annotation", uid, a["name"]) for a in dash.get("annotations", {}).get("list", [])}
    return keys


def test_every_query_is_checked() -> None:
    checked = ({("panel", c.uid, str(c.panel), c.ref) for c in CASES}
               | {("variable", u, n) for u, n, _, _ in VARIABLE_CASES}
               | {("annotation", u, n) for u, n, _, _ in ANNOTATION_CASES})
    assert checked == _query_keys()
    assert len({c.id for c in CASES}) == len(CASES)


# --- two cities: the city variable --------------------------------------------------------------

MKS, PARE = {"city": ["makassar"]}, {"city": ["parepare"]}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_one_city_of_two_shows_that_city_alone(two_cities: InfluxClient, case: Case) -> None:
    """With Parepare in the database too, city=makassar shows every panel exactly as Makassar alone."""
    test_panel_query(two_cities, Case(case.uid, case.panel, case.ref, case.expected, {**case.selection, **MKS},
                                      case.interval, case.note))


SECOND_CITY_CASES = [
    Case(BINS, 1, "A", {"full bins": [(0, 1)]}, PARE),
    Case(BINS, 1, "A", {"full bins": [(0, 3)]}, {"city": ["makassar", "parepare"]}, note="both"),
    Case(BINS, 1, "A", {"full bins": [(0, 3)]}, note="All"),
    Case(BINS, 2, "A", {"Soreang": [(0, 0.90)], "Ujung": [(0, 0.20)]}, PARE),
    Case(BINS, 3, "A", [{"time": at(1 * H), "device_id": "P1", "kecamatan": "Soreang", "fill": 0.90}], PARE),
    Case(BINS, 4, "A", [{"time": at(30 * M), "device_id": "P1", "kecamatan": "Soreang", "lat": -4.0135,
                         "lon": 119.6255, "fillingLevel": 0.90}], PARE),
    Case(BINS, 5, "A", {"Soreang": [(at(3 * H), 0.50), (at(1 * H), 0.90)], "Ujung": [(at(4 * H), 0.20)]},
         PARE, interval="1m"),
    Case(BINS, 5, "B", {"Soreang": [(at(3 * H), 0.50), (at(1 * H), 0.90)], "Ujung": [(at(4 * H), 0.20)]}, PARE),
    Case(BINS, 5, "C", {"Soreang": [(at(8 * H), 0.70)], "Ujung": [(at(8 * H), 0.20)]}, PARE, interval="1d"),
    Case(BINS, 6, "A", {"Soreang": wita_days([0, 0, 0, 0, 0, 1, 0, 0])}, PARE),
    Case(BINS, 7, "A", [{"time": at(30 * M), "device_id": "P1", "kecamatan": "Soreang", "hours_to_full": 0.0,
                         "fillingLevel": 0.90}], PARE),
    Case(AIR, 1, "B", {"Q1": [(at(3 * H), 50.0), (at(1 * H), 30.0)]}, PARE),
    Case(AIR, 2, "A", {"Q1": [(at(3 * H), 90.0), (at(150 * M), 110.0), (at(1 * H), 70.0)]}, PARE, interval="1m"),
    Case(AIR, 3, "A", {"Q1": [(at(30 * M), 95.0)]}, PARE),
    Case(OPS, 5, "A", {"bins": [(0, 1)]}, PARE, interval="20s"),
    Case(OPS, 5, "A", {"bins": [(0, 2)]}, interval="20s", note="All"),
    Case(OPS, 5, "B", {}, PARE, interval="20s"),
    Case(OPS, 6, "A", [{"time": at(4 * H), "device_id": "P2", "kecamatan": "Ujung", "last_rx": at(4 * H) + 2 * S}],
         PARE, interval="20s"),
    Case(OPS, 7, "A", [{"time": at(1 * H), "device_id": "P1", "kecamatan": "Soreang", "battery": 0.10},
                       {"time": at(4 * H), "device_id": "P2", "kecamatan": "Ujung", "battery": 0.60}],
         PARE, interval="20s"),
    Case(OPS, 7, "B", [{"time": at(1 * H), "device_id": "Q1", "kecamatan": "Soreang", "battery": 0.40}],
         PARE, interval="20s"),
]
"""Parepare's own numbers (:data:`tests.dashboards.scenario.SECOND_BINS` ...), and "All" holding both cities."""


@pytest.mark.parametrize("case", SECOND_CITY_CASES, ids=lambda c: f"{c.id}/{'+'.join(c.selection.get('city', []))}")
def test_second_city_panel_query(two_cities: InfluxClient, case: Case) -> None:
    test_panel_query(two_cities, case)


@pytest.mark.parametrize(("uid", "name", "selection", "expected"), [
    (BINS, "city", {}, ["makassar", "parepare"]),
    (BINS, "kecamatan", PARE, ["Soreang", "Ujung"]),
    (BINS, "kecamatan", {}, ["Mariso", "Soreang", "Tallo", "Ujung", "Ujung Pandang"]),
    (BINS, "device", PARE, ["P1", "P2"]),
    (BINS, "device", {**PARE, "kecamatan": ["Ujung"]}, ["P2"]),
    (AIR, "device", PARE, ["Q1"]),
    (AIR, "kecamatan", MKS, ["Mariso", "Tallo", "Ujung Pandang"]),
    (OPS, "city", {}, ["makassar", "parepare"]),
    (OPS, "device", PARE, ["P1", "P2", "Q1"]),
], ids=lambda v: str(v) if not isinstance(v, (dict, list)) else "")
def test_second_city_variable_query(two_cities: InfluxClient, uid: str, name: str, selection: dict[str, Any],
                                    expected: list[str]) -> None:
    assert GrafanaSim(DASHBOARDS[uid], two_cities, NOW, "1h", selection).options(name) == expected


def test_second_city_annotations(two_cities: InfluxClient) -> None:
    assert GrafanaSim(DASHBOARDS[BINS], two_cities, NOW, "1h", PARE).annotations("Bin alerts") == [
        {"time": at(1 * H), "text": "opened", "tags": ["bin_full", "critical", "P1"]}]
    assert GrafanaSim(DASHBOARDS[AIR], two_cities, NOW, "1h", PARE).annotations("Air alerts") == [
        {"time": at(2 * H), "text": "opened", "tags": ["pm25_high", "major", "Q1"]}]
    assert [e["tags"][-1] for e in GrafanaSim(DASHBOARDS[BINS], two_cities, NOW, "1h", MKS).annotations(
        "Bin alerts")] == ["B3", "B1"]


def test_daily_means_of_a_wib_city_in_its_own_days(influx: InfluxClient) -> None:
    """A Jakarta bin's daily means (WIB days, :mod:`lorong.storage.retention`) with "Days in" WIB: one bucket
    per WIB day, at 00:00 WIB (17:00 UTC), holding that day's mean; with the default WITA the same means
    come in buckets labelled an hour earlier (the limit: the dashboard cannot read the city's zone).
    A city in a zone with daylight saving time: :mod:`tests.dashboards.test_day_zones`."""
    zones = retention.DayZones("Asia/Makassar", {"makassar": "Asia/Makassar", "jakarta": "Asia/Jakarta"})
    now = utc_from_ms(NOW)
    retention.apply(influx, KEPT, zones, now=now)
    wib_day0 = NOW - NOW % D + 17 * H - 4 * D  # 00:00 WIB four days before NOW
    days: dict[int, list[float]] = {}
    lines = []
    for i in range(4 * 48):  # every 30 min for four WIB days
        t = wib_day0 + i * 30 * M + 7 * M
        fill = round((i * 37 % 89) / 100, 2)
        days.setdefault(t - (t - 17 * H) % D, []).append(fill)
        lines.append(line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "J1", schema.TAG_KECAMATAN: "Gambir",
                                                   schema.TAG_CITY: "jakarta"}, {schema.FIELD_FILL: fill}, t))
    influx.write_lines(lines)
    retention.backfill(influx, zones, utc_from_ms(wib_day0), utc_from_ms(wib_day0 + 4 * D), now=now)
    want = [(t, fmean(v)) for t, v in sorted(days.items())]
    assert len(want) == 4 and all(t % D == 17 * H for t, _ in want)
    jakarta = {"city": ["jakarta"]}
    wib = GrafanaSim(DASHBOARDS[BINS], influx, NOW, "1d", {**jakarta, "day_zone": "tz('Asia/Jakarta')"}).run(5, "C")
    assert wib.query.endswith("GROUP BY time(1d), \"kecamatan\" fill(none) tz('Asia/Jakarta')")
    assert [t for t, _ in wib.series["Gambir"]] == [t for t, _ in want]
    assert [v for _, v in wib.series["Gambir"]] == pytest.approx([v for _, v in want], rel=1e-12)
    wita = GrafanaSim(DASHBOARDS[BINS], influx, NOW, "1d", jakarta).run(5, "C").series["Gambir"]
    assert wita == [(t - H, pytest.approx(v, rel=1e-12)) for t, v in want]
    with pytest.raises(ValueError, match="not an option"):
        GrafanaSim(DASHBOARDS[BINS], influx, NOW, "1d", {"day_zone": "tz('Europe/London')"}).run(5, "C")
