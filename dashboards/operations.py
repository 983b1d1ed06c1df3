"""The Operations dashboard: is the ingester keeping up, and which devices need a visit.

The ingester writes cumulative counters since its start every ``stats_interval_s`` (10 s):
``ingest_stats`` (``received`` messages, ``stored`` points, ``spool_depth``, ``write_ms`` = latency
of the last batch) and ``ingest_rejects`` (``count`` per ``reason``), tagged by ``instance``
(:meth:`ingest.service.Ingester.stats_lines`). Rates come from ``non_negative_derivative`` /
``non_negative_difference`` of the per-interval maximum, so an ingester restart (counter back to
0) drops one interval instead of showing a negative rate; the first interval of the range has no
predecessor and shows no rate.

Panels (ids are stable; tests key their checks on them):

1. Ingest rate: messages and points per second, per instance.
2. Rejects by reason: rejected messages per interval, summed over instances.
3. Spool depth: largest spool backlog per interval (points not yet in InfluxDB).
4. Write latency: slowest batch write per interval, ms.
5. Offline devices: bins and air stations whose last uplink is older than
   :data:`OFFLINE_AFTER_H` hours before the end of the range (range widened to 7 days).
6. Offline devices, list: the same devices with their last receive time.
7. Lowest battery: the 10 bins and 10 stations with the lowest latest ``batteryLevel``.

Variables: city, kecamatan, device (panels 5-7); ingester instance (panels 1-4). The ingester
panels do not follow the city: ingesters serve every city of the platform and their self-metrics
carry no ``city`` tag.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as model

from dashboards.panels import (
    BY_CITY,
    DaysIn,
    InfluxQL,
    city_variable,
    datasource,
    ident,
    matches,
    new_table,
    new_timeseries,
    tag_values,
    thresholds,
    where,
)
from lorong.core import schema
from lorong.core.settings import InfluxSettings

UID = "lorong-ops"
TITLE = "Lorong - Operations"

OFFLINE_AFTER_H = 3
"""Hours without an uplink after which a device counts as offline: 18 missed reports at the
registry's default 10-minute interval, 3 at the hourly interval common for LoRaWAN bins."""

OFFLINE_WINDOW = "7d"
"""The offline panels look back this far (panel time override), so long-silent devices show."""

LOW_BATTERY = 0.2
"""Battery fraction below which a device is drawn red (a swap is due)."""

LOWEST_N = 10

INGEST, REJECTS = schema.MEASUREMENT_INGEST, schema.MEASUREMENT_REJECTS
BIN, AIR = schema.MEASUREMENT_BIN, schema.MEASUREMENT_AIR
DEV, KEC, INST = schema.TAG_DEVICE, schema.TAG_KECAMATAN, schema.TAG_INSTANCE
BY_INSTANCE = matches(INST, "instance")
DEVICE_FILTERS = (BY_CITY, matches(KEC, "kecamatan"), matches(DEV, "device"))

RATE = (f'SELECT non_negative_derivative(max({ident(schema.FIELD_RECEIVED)}), 1s) AS "messages", '
        f'non_negative_derivative(max({ident(schema.FIELD_STORED)}), 1s) AS "points" FROM {ident(INGEST)} '
        f"{where(BY_INSTANCE)} GROUP BY time($__interval), {ident(INST)} fill(none)")
REJECTED = (f'SELECT sum("n") AS "rejects" FROM (SELECT non_negative_difference(max('
            f'{ident(schema.FIELD_REJECT_COUNT)})) AS "n" FROM {ident(REJECTS)} {where(BY_INSTANCE)} '
            f"GROUP BY time($__interval), {ident(schema.TAG_REASON)}, {ident(INST)}) "
            f"{where()} GROUP BY time($__interval), {ident(schema.TAG_REASON)} fill(none)")
SPOOL = (f"SELECT max({ident(schema.FIELD_SPOOL_DEPTH)}) AS {ident(schema.FIELD_SPOOL_DEPTH)} "
         f"FROM {ident(INGEST)} {where(BY_INSTANCE)} GROUP BY time($__interval), {ident(INST)} fill(none)")
WRITE = (f"SELECT max({ident(schema.FIELD_WRITE_MS)}) AS {ident(schema.FIELD_WRITE_MS)} "
         f"FROM {ident(INGEST)} {where(BY_INSTANCE)} GROUP BY time($__interval), {ident(INST)} fill(none)")


def _last_rx(measurement: str, *group: str) -> str:
    return (f'SELECT last({ident(schema.FIELD_RX)}) AS "last_rx" FROM {ident(measurement)} '
            f"{where(*DEVICE_FILTERS)} GROUP BY {', '.join(ident(g) for g in group)}")


_SILENT = f'"last_rx" < ${{__to}} - {OFFLINE_AFTER_H * 3_600_000}'


def offline_count(measurement: str) -> str:
    """How many devices of ``measurement`` were seen in the range but not in its last hours."""
    return f'SELECT count("last_rx") AS "devices" FROM ({_last_rx(measurement, DEV)}) WHERE {_SILENT}'


def offline_list(measurement: str) -> str:
    """Those devices, one row each, with ``last_rx`` (epoch ms of their last uplink)."""
    return (f'SELECT "last_rx" FROM ({_last_rx(measurement, DEV, KEC)}) WHERE {_SILENT} '
            f"GROUP BY {ident(DEV)}, {ident(KEC)}")


def lowest_battery(measurement: str) -> str:
    """The :data:`LOWEST_N` devices of ``measurement`` with the lowest latest battery fraction."""
    return (f'SELECT bottom("battery", {ident(DEV)}, {LOWEST_N}) AS "battery", {ident(KEC)} FROM '
            f'(SELECT last({ident(schema.FIELD_BATTERY)}) AS "battery" FROM {ident(measurement)} '
            f"{where(*DEVICE_FILTERS)} GROUP BY {ident(DEV)}, {ident(KEC)})")


def _ingest_panel(pid: int, title: str, description: str, target: InfluxQL, unit: str) -> timeseries.Panel:
    return (new_timeseries(pid, title, 12, 8, "lastNotNull", "max").description(description)
            .with_target(target).interval("1m").unit(unit).min(0).fill_opacity(10))


def build(keep: InfluxSettings | None = None, days: DaysIn | None = None) -> model.Dashboard:
    """The Operations dashboard (uid :data:`UID`); ``keep`` and ``days`` are accepted like the other
    dashboards' but unused (no panel averages readings over time or counts per day)."""
    rate = _ingest_panel(1, "Ingest rate", "Messages received and points stored per second, per ingester.",
                         InfluxQL("A", RATE).alias("$tag_instance $col"), "cps")
    rejects = (_ingest_panel(2, "Rejects by reason", "Messages rejected per interval, by reason (dead letters).",
                             InfluxQL("A", REJECTED).alias("$tag_reason"), "short")
               .draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80).decimals(0)
               .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL)))
    spool = _ingest_panel(3, "Spool depth", "Points in the on-disk spool not yet written to InfluxDB.",
                          InfluxQL("A", SPOOL).alias("$tag_instance"), "short")
    write = _ingest_panel(4, "Write latency", "Slowest InfluxDB batch write per interval.",
                          InfluxQL("A", WRITE).alias("$tag_instance"), "ms")
    offline = (stat.Panel().datasource(datasource()).id(5).span(6).height(8)
               .title(f"Offline devices (no uplink for {OFFLINE_AFTER_H} h)")
               .description("Devices seen in the last 7 days whose last uplink is older than "
                            f"{OFFLINE_AFTER_H} hours before the end of the time range.")
               .with_target(InfluxQL("A", offline_count(BIN)).alias("bins"))
               .with_target(InfluxQL("B", offline_count(AIR)).alias("air stations"))
               .time_from(OFFLINE_WINDOW).no_value("0").thresholds(thresholds("green", (1, "red")))
               .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
               .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).color_mode(cm.BigValueColorMode.BACKGROUND)
               .graph_mode(cm.BigValueGraphMode.NONE))
    offline_rows = (new_table(6, "Offline devices, list", 9, 8)
                    .description("Last receive time of every offline device (bins, then air stations).")
                    .with_target(InfluxQL("A", offline_list(BIN)).table())
                    .with_target(InfluxQL("B", offline_list(AIR)).table())
                    .time_from(OFFLINE_WINDOW)
                    .override_by_name("last_rx", [model.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")]))
    battery = (new_table(7, f"Lowest battery ({LOWEST_N} bins, {LOWEST_N} stations)", 9, 8)
               .description("Latest battery level of the devices with the emptiest batteries.")
               .with_target(InfluxQL("A", lowest_battery(BIN)).table())
               .with_target(InfluxQL("B", lowest_battery(AIR)).table())
               .sort_by([cb.TableSortByFieldState().display_name("battery").desc(False)])
               .override_by_name("battery", [
                   model.DynamicConfigValue(id_val="unit", value="percentunit"),
                   model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
                   model.DynamicConfigValue(id_val="thresholds", value=thresholds(
                       "red", (LOW_BATTERY, "yellow"), (0.5, "green")).build())]))
    return (dash.Dashboard(TITLE).uid(UID).tags(["lorong", "operations"]).time("now-6h", "now").refresh("30s")
            .timezone("browser").editable()
            .with_variable(city_variable([BIN, AIR]))
            .with_variable(tag_values("instance", "Ingester", [INGEST], INST))
            .with_variable(tag_values("kecamatan", "Kecamatan", [BIN, AIR], KEC, BY_CITY, all_value=".*"))
            .with_variable(tag_values("device", "Device", [BIN, AIR], DEV,
                                      f"{BY_CITY} AND {matches(KEC, 'kecamatan')}", all_value=".*"))
            .with_panel(rate).with_panel(rejects).with_panel(spool).with_panel(write)
            .with_panel(offline).with_panel(offline_rows).with_panel(battery)
            .build())
