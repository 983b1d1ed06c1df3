"""The built JSON: valid for the SDK's dashboard model, on the provisioned datasource, up to date.

Also the contracts the dashboards rely on: names from ``lorong.core.schema`` (and what the ingester
writes), ISPU numbers equal to ``analytics.aqi``, alert types that ``analytics.jobs`` raises.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import bargauge, geomap, stat, table, timeseries
from grafana_foundation_sdk.models.dashboard import Dashboard

from analytics import aqi
from dashboards import air, bins
from dashboards import build as builder
from dashboards.panels import DATASOURCE_TYPE, DATASOURCE_UID, InfluxAnnotationQuery, InfluxQLQuery, register_runtime
from lorong.core import schema

DASHBOARDS = builder.build_all()
OPTIONS = {"timeseries": timeseries.Options, "stat": stat.Options, "table": table.Options,
           "bargauge": bargauge.Options, "geomap": geomap.Options}


@pytest.fixture(scope="module", autouse=True)
def _runtime() -> None:
    register_runtime()


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_round_trip_through_the_sdk_model(uid: str) -> None:
    """``Dashboard.from_json`` reads every field back and writes the same JSON.

    The one field the SDK cannot hold is an annotation's InfluxQL ``target`` (it types it as the
    built-in Grafana target); those round-trip through :class:`InfluxAnnotationQuery` instead.
    """
    data = DASHBOARDS[uid]
    model = Dashboard.from_json(data)
    back = builder.to_json(model)
    annotations = data.get("annotations", {}).get("list", [])
    assert len(back.get("annotations", {}).get("list", [])) == len(annotations)
    for original, reread in zip(annotations, back.get("annotations", {}).get("list", []), strict=True):
        assert _plain(InfluxAnnotationQuery.from_json(original)) == original
        assert {**reread, "target": None} == {**original, "target": None}
    assert {**back, "annotations": None} == {**data, "annotations": None}
    for panel in model.panels or []:
        assert isinstance(panel.options, OPTIONS[panel.type_val]), panel.title
        for target in panel.targets or []:
            assert isinstance(target, InfluxQLQuery) and not isinstance(target, UnknownDataquery)


def _plain(obj: object) -> Any:
    return json.loads(json.dumps(obj, cls=JSONEncoder))


def _datasources(node: Any, path: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "datasource":
                found.append((f"{path}/{k}", v))
            found += _datasources(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _datasources(v, f"{path}[{i}]")
    return found


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_every_datasource_is_the_provisioned_one(uid: str) -> None:
    refs = _datasources(DASHBOARDS[uid])
    assert refs and all(ref == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID} for _, ref in refs), refs
    dash = DASHBOARDS[uid]
    variables = [v for v in dash["templating"]["list"] if v["type"] != "custom"]  # a custom one queries nothing
    queries = (dash["panels"] + [t for p in dash["panels"] for t in p["targets"]] + variables
               + dash.get("annotations", {}).get("list", []))
    assert all(q["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID} for q in queries)


def test_out_and_provisioning_are_up_to_date(tmp_path: Path) -> None:
    """``dashboards/out`` and ``dashboards/provisioning`` are what ``lorong dashboards build`` writes."""
    builder.write(tmp_path / "out", tmp_path / "provisioning")
    for fresh_dir, committed_dir in ((tmp_path / "out", builder.OUT_DIR),
                                     (tmp_path / "provisioning", builder.PROVISIONING_DIR)):
        fresh = {p.relative_to(fresh_dir): p.read_text() for p in fresh_dir.rglob("*") if p.is_file()}
        committed = {p.relative_to(committed_dir): p.read_text() for p in committed_dir.rglob("*") if p.is_file()}
        assert sorted(committed) == sorted(fresh), "run `lorong dashboards build` and commit the result"
        stale = [str(p) for p in fresh if fresh[p] != committed[p]]
        assert not stale, f"out of date: {stale}; run `lorong dashboards build` and commit the result"


def test_build_output_is_stable(tmp_path: Path) -> None:
    first = builder.write(tmp_path / "a", tmp_path / "pa")
    second = builder.write(tmp_path / "b", tmp_path / "pb")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    text = (tmp_path / "a" / "lorong-bins.json").read_text()
    assert text == builder.render(DASHBOARDS["lorong-bins"]) and text.endswith("}\n")


def test_build_removes_stale_dashboards(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old-uid.json").write_text("{}")
    builder.write(tmp_path / "out", tmp_path / "prov")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{u}.json" for u in DASHBOARDS)


def test_provisioning_files() -> None:
    ds = yaml.safe_load((builder.PROVISIONING_DIR / "datasources" / "lorong.yaml").read_text())
    (source,) = ds["datasources"]
    assert ds["apiVersion"] == 1
    assert (source["uid"], source["type"], source["access"]) == (DATASOURCE_UID, "influxdb", "proxy")
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["url"] == "${LORONG_INFLUX__URL}" and source["jsonData"]["dbName"] == "${LORONG_INFLUX__DATABASE}"
    prov = yaml.safe_load((builder.PROVISIONING_DIR / "dashboards" / "lorong.yaml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "${LORONG_DASHBOARDS_DIR}"


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_layout(uid: str) -> None:
    """Panel ids unique; panels inside the 24-column grid and not overlapping."""
    cells: set[tuple[int, int]] = set()
    panels = DASHBOARDS[uid]["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, f"{p['title']} overlaps"
        cells |= area


_LOCAL_NAMES = {"fill", "bins", "pickups", "messages", "points", "rejects", "n", "last_rx", "devices", "battery"}
"""Column aliases the queries define themselves (``AS "fill"``)."""


def test_names_come_from_core_schema() -> None:
    names = {v for k, v in vars(schema).items() if k.isupper() and isinstance(v, str)}
    texts = [t["query"] for d in DASHBOARDS.values() for p in d["panels"] for t in p["targets"]]
    texts += [v["query"] for d in DASHBOARDS.values() for v in d["templating"]["list"]]
    texts += [a["target"]["query"] for d in DASHBOARDS.values() for a in d.get("annotations", {}).get("list", [])]
    used = {m for q in texts for m in re.findall(r'"([^"]+)"', q)}
    assert used - names - _LOCAL_NAMES == set()
    assert {schema.MEASUREMENT_BIN, schema.MEASUREMENT_AIR, schema.MEASUREMENT_BIN_STATE,
            schema.MEASUREMENT_AIR_INDEX, schema.MEASUREMENT_COLLECTION, schema.MEASUREMENT_ALERT,
            schema.MEASUREMENT_INGEST, schema.MEASUREMENT_REJECTS} <= used


def test_ingester_writes_the_fields_operations_reads() -> None:
    """The ingester's self-metrics (``IngestMetrics.lines``) carry the names the panels query."""
    from ingest.metrics import IngestMetrics

    metrics = IngestMetrics("ingest-9", spool_depth=lambda: 3, influx_up=lambda: True, mqtt_up=lambda: True)
    metrics.stats.received = 5
    metrics.stats.rejected["bad_json"] = 2
    metrics.written(9, 0.004)
    stats, rejects = metrics.lines(1_765_324_800_000)
    assert stats.startswith(f"{schema.MEASUREMENT_INGEST},{schema.TAG_INSTANCE}=ingest-9 ")
    fields = dict(kv.split("=") for kv in stats.split(" ")[1].split(","))
    assert {k: float(fields[k]) for k in (schema.FIELD_RECEIVED, schema.FIELD_STORED, schema.FIELD_SPOOL_DEPTH,
                                          schema.FIELD_WRITE_MS)} == {
        schema.FIELD_RECEIVED: 5.0, schema.FIELD_STORED: 9.0, schema.FIELD_SPOOL_DEPTH: 3.0,
        schema.FIELD_WRITE_MS: pytest.approx(4.0)}
    assert rejects == (f"{schema.MEASUREMENT_REJECTS},{schema.TAG_INSTANCE}=ingest-9,{schema.TAG_REASON}=bad_json "
                       f"{schema.FIELD_REJECT_COUNT}=2.0 1765324800000")


def test_ispu_numbers_equal_analytics() -> None:
    for pollutant, limits in (("pm25", air.PM25_LIMITS_UGM3), ("pm10", air.PM10_LIMITS_UGM3)):
        assert list(limits) == [b.conc_high_ugm3 for b in aqi.ISPU_BANDS[pollutant][:4]]
    assert [(n, lo, hi) for n, lo, hi, _ in air.ISPU_CATEGORIES] == [
        (c.name_id, c.index_low, c.index_high) for c in aqi.ISPU_CATEGORIES]


def _panel(uid: str, title_start: str) -> dict[str, Any]:
    return next(p for p in DASHBOARDS[uid]["panels"] if p["title"].startswith(title_start))


@pytest.mark.parametrize(("title", "limits"), [("PM2.5", (15.5, 55.4, 150.4, 250.4)), ("PM10", (50, 150, 350, 420))])
def test_pm_panels_show_ispu_bands(title: str, limits: tuple[float, ...]) -> None:
    steps = _panel(air.UID, title)["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps == [{"color": "green", "value": None}] + [
        {"color": c, "value": v} for v, c in zip(limits, ("blue", "yellow", "red", "#000000"), strict=True)]


def test_ispu_category_mapping_matches_analytics() -> None:
    """Every index 0..600 maps to the category ``analytics.aqi.ispu_category`` gives it."""
    mappings = _panel(air.UID, "ISPU")["fieldConfig"]["defaults"]["mappings"]

    def shown(index: int) -> str:
        hits = [m["options"]["result"]["text"] for m in mappings
                if m["options"]["from"] <= index and (m["options"]["to"] is None or index <= m["options"]["to"])]
        assert len(hits) == 1, index
        return str(hits[0])

    assert all(shown(i) == aqi.ispu_category(i).name_id for i in range(0, 601))


def test_bin_alert_types_exist_in_analytics() -> None:
    from analytics.rules import RULES

    assert bins.ALERT_TYPES and set(bins.ALERT_TYPES) <= set(RULES)


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_every_device_query_follows_the_city(uid: str) -> None:
    """``$city`` is the first variable, the others are chained to it, and every query on device data
    (all but the ingester's self-metrics, which carry no city tag) filters by it."""
    dash = DASHBOARDS[uid]
    variables = dash["templating"]["list"]
    assert variables[0]["name"] == "city" and variables[0]["allValue"] == ".*" and variables[0]["multi"]
    assert variables[0]["query"].endswith(f'WITH KEY = "{schema.TAG_CITY}"')
    by_city = f'"{schema.TAG_CITY}" =~ /^$city$/'
    for var in variables:
        if var["name"] in ("kecamatan", "device"):
            assert by_city in var["query"], var["name"]
    queries = [t["query"] for p in dash["panels"] for t in p["targets"]]
    queries += [a["target"]["query"] for a in dash.get("annotations", {}).get("list", []) if "target" in a]
    self_metrics = {f'"{schema.MEASUREMENT_INGEST}"', f'"{schema.MEASUREMENT_REJECTS}"'}
    device_queries = [q for q in queries if not any(f"FROM {m}" in q for m in self_metrics)]
    assert device_queries and all(by_city in q for q in device_queries), device_queries
    assert len(queries) - len(device_queries) == (4 if uid == "lorong-ops" else 0)


def _mean_fill_queries(data: dict[str, Any]) -> dict[str, str]:
    return {t["refId"]: t["query"] for p in data["panels"] if p["id"] == 5 for t in p["targets"]}


def test_build_follows_the_retention_settings(tmp_path: Path) -> None:
    """``lorong dashboards build`` builds for LORONG_INFLUX__*_DAYS: the averaging panels' limits move."""
    from typer.testing import CliRunner

    from lorong.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["dashboards", "build", "--out", str(out), "--provisioning", str(tmp_path / "p")],
                                env={"LORONG_INFLUX__RAW_DAYS": "30", "LORONG_INFLUX__HOURLY_DAYS": "400"})
    assert result.exit_code == 0, result.output
    assert "retention: raw 30 d, hourly means 400 d, daily means forever" in result.output
    built = _mean_fill_queries(json.loads((out / "lorong-bins.json").read_text()))
    assert "time > now() - 30d AND" in built["A"]
    assert 'FROM "hourly"."waste_container" WHERE $timeFilter AND time <= now() - 30d - 1h AND time > now() - 400d' \
        in built["A"]
    assert 'FROM "daily"."waste_container" WHERE $timeFilter AND time <= now() - 400d - 1d AND' in built["B"]
    committed = _mean_fill_queries(DASHBOARDS["lorong-bins"])  # the defaults: 90 d raw, 1830 d hourly
    assert "time > now() - 90d AND" in committed["A"] and "time <= now() - 1830d - 1d AND" in committed["B"]
    assert "now()" not in committed["C"]  # daily means are kept forever: nothing coarser to fall back to


def test_build_offers_the_registry_zones_in_days_in(tmp_path: Path, db_url: str) -> None:
    """``lorong dashboards build`` offers every registered city's zone in "Days in" besides Indonesia's
    three, with ``analytics.timezone`` selected; the queries take the choice as ``${day_zone:raw}``."""
    from typer.testing import CliRunner

    from lorong.cli import app

    nowhere = {"LORONG_DATABASE_URL": db_url, "LORONG_INFLUX__URL": "http://127.0.0.1:9"}  # discard port: no InfluxDB
    added = CliRunner().invoke(app, ["cities", "add", "london", "--name", "London", "--timezone", "Europe/London"],
                               env=nowhere)
    assert added.exit_code == 0, added.output
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["dashboards", "build", "--out", str(out), "--provisioning", str(tmp_path / "p")],
                                env={**nowhere, "LORONG_ANALYTICS__TIMEZONE": "Asia/Jakarta"})
    assert result.exit_code == 0, result.output
    assert "days in: WITA (UTC+8), WIB (UTC+7) (selected), WIT (UTC+9), Europe/London\n" in result.output
    for uid in ("lorong-bins", "lorong-air"):
        built = json.loads((out / f"{uid}.json").read_text())
        days_in = next(v for v in built["templating"]["list"] if v["name"] == "day_zone")
        assert days_in["query"] == ("WITA (UTC+8) : tz('Asia/Makassar'),WIB (UTC+7) : tz('Asia/Jakarta'),"
                                    "WIT (UTC+9) : tz('Asia/Jayapura'),Europe/London : tz('Europe/London')")
        assert days_in["current"] == {"selected": True, "text": "WIB (UTC+7)", "value": "tz('Asia/Jakarta')"}
        daily = [t["query"] for p in built["panels"] for t in p.get("targets", []) if "day_zone" in t["query"]]
        assert daily and all(q.endswith(" fill(none) ${day_zone:raw}") for q in daily), daily
    committed = next(v for v in DASHBOARDS["lorong-bins"]["templating"]["list"] if v["name"] == "day_zone")
    assert [o["text"] for o in committed["options"]] == ["WITA (UTC+8)", "WIB (UTC+7)", "WIT (UTC+9)"]
