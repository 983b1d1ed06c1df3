"""The Bins dashboard: how full the city's bins are, where, and when they were emptied.

Panels (ids are stable; tests key their checks on them):

1. Full bins: bins whose latest fill in the range is at or above the "full" threshold (0.8).
2. Fill by kecamatan, now: per kecamatan, the mean of each bin's latest fill.
3. Full bins, list: those bins with their kecamatan and latest fill.
4. Bin map: every bin at its registry location (``bin_state``), coloured by fill.
5. Mean fill by kecamatan: mean of all fill readings per kecamatan per ``$__interval``; from
   one-hour intervals on (long ranges) the mean of the bins' hourly means, from one day on of their
   daily means (targets A/B/C, :func:`dashboards.panels.mean_targets`).
6. Pickups per day: detected collections (``collection``) per kecamatan per local day (of the
   zone chosen in "Days in", ``$day_zone``).
7. Time to full: hours until each bin reaches its threshold (``bin_state.hours_to_full``).

Variables: city, kecamatan (of the chosen cities), bin (of the chosen kecamatan); every query
follows all three. "Days in" (``$day_zone``, :func:`dashboards.panels.day_variable`) sets whose
local days the per-day buckets are (panels 5 and 6).

Annotation: full-bin alerts (``alert_event`` of the types in :data:`ALERT_TYPES`): what changed
(opened, cleared ...) as text, type, severity and bin as tags.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, geomap, stat, table
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import geomap as gm

from dashboards.panels import (
    BY_CITY,
    DAY_TZ,
    FILL_THRESHOLDS,
    FULL_THRESHOLD,
    DaysIn,
    InfluxAnnotation,
    InfluxQL,
    city_variable,
    datasource,
    day_variable,
    ident,
    matches,
    mean_targets,
    new_table,
    new_timeseries,
    tag_values,
    thresholds,
    where,
)
from lorong.core import schema
from lorong.core.alerts import types_for
from lorong.core.settings import InfluxSettings

UID = "lorong-bins"
TITLE = "Lorong - Bins"

ALERT_TYPES = types_for("crew")
"""Alert types shown on the Bins dashboard: those the crew acts on (:mod:`lorong.core.alerts`)."""

BIN, STATE, PICKUP = schema.MEASUREMENT_BIN, schema.MEASUREMENT_BIN_STATE, schema.MEASUREMENT_COLLECTION
DEV, KEC, FILL = schema.TAG_DEVICE, schema.TAG_KECAMATAN, schema.FIELD_FILL
FILTERS = (BY_CITY, matches(KEC, "kecamatan"), matches(DEV, "device"))
"""Every panel follows the city, kecamatan and device pickers."""


def _latest_fill(*group: str) -> str:
    """Subquery: each bin's latest fill in the range as ``fill``, grouped by ``group`` tags."""
    return (f"SELECT last({ident(FILL)}) AS \"fill\" FROM {ident(BIN)} {where(*FILTERS)} "
            f"GROUP BY {', '.join(ident(g) for g in group)}")


FULL_COUNT = f'SELECT count("fill") AS "bins" FROM ({_latest_fill(DEV)}) WHERE "fill" >= {FULL_THRESHOLD:g}'
FULL_LIST = (f'SELECT "fill" FROM ({_latest_fill(DEV, KEC)}) WHERE "fill" >= {FULL_THRESHOLD:g} '
             f"GROUP BY {ident(DEV)}, {ident(KEC)}")
FILL_BY_KEC_NOW = f'SELECT mean("fill") AS "fill" FROM ({_latest_fill(DEV, KEC)}) GROUP BY {ident(KEC)}'
MAP = (f"SELECT {ident(schema.FIELD_LAT)}, {ident(schema.FIELD_LON)}, {ident(FILL)} FROM {ident(STATE)} "
       f"{where(*FILTERS)} GROUP BY {ident(DEV)}, {ident(KEC)} ORDER BY time DESC LIMIT 1")
PICKUPS = (f'SELECT count({ident(schema.FIELD_BEFORE)}) AS "pickups" FROM {ident(PICKUP)} {where(*FILTERS)} '
           f"GROUP BY time(1d), {ident(KEC)} fill(none) {DAY_TZ}")  # no data is not 0 pickups
TIME_TO_FULL = (f"SELECT {ident(schema.FIELD_HOURS_TO_FULL)}, {ident(FILL)} FROM {ident(STATE)} "
                f"{where(*FILTERS)} GROUP BY {ident(DEV)}, {ident(KEC)} ORDER BY time DESC LIMIT 1")
ALERTS = (f"SELECT {ident(schema.FIELD_ALERT_ACTION)}, {ident(schema.TAG_TYPE)}, {ident(schema.TAG_SEVERITY)}, "
          f"{ident(DEV)} FROM {ident(schema.MEASUREMENT_ALERT)} "
          f"{where(ident(schema.TAG_TYPE) + ' =~ /^(' + '|'.join(ALERT_TYPES) + ')$/', *FILTERS)}")


def _fill_field(builder: bargauge.Panel | geomap.Panel | table.Panel) -> None:
    builder.unit("percentunit").min(0).max(1).thresholds(thresholds("green", *FILL_THRESHOLDS))


def build(keep: InfluxSettings | None = None, days: DaysIn | None = None) -> model.Dashboard:
    """The Bins dashboard (uid :data:`UID`) for the retention ``keep`` (default: Lorong's defaults;
    :func:`dashboards.panels.mean_targets`), "Days in" offering the zones of ``days`` (default: Indonesia's
    three, WITA selected; :func:`dashboards.panels.day_variable`).

    Raises:
        ValueError: a zone of ``days`` is not an IANA zone.
    """
    fill_by_kec = mean_targets(FILL, "fill", BIN, FILTERS, ident(KEC), "$tag_kecamatan", keep or InfluxSettings())
    full = (stat.Panel().datasource(datasource()).id(1).span(4).height(8)
            .title(f"Full bins (fill >= {FULL_THRESHOLD:.0%})")
            .description("Bins whose latest fill in the time range is at or above the full threshold.")
            .with_target(InfluxQL("A", FULL_COUNT).alias("full bins")).no_value("0")
            .thresholds(thresholds("green", (1, "orange")))
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE))
    by_kec_now = (bargauge.Panel().datasource(datasource()).id(2).title("Fill by kecamatan, now").span(10).height(8)
                  .description("Mean of each bin's latest fill in the time range, per kecamatan.")
                  .with_target(InfluxQL("A", FILL_BY_KEC_NOW).alias("$tag_kecamatan"))
                  .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
                  .orientation(cm.VizOrientation.HORIZONTAL).display_mode(cm.BarGaugeDisplayMode.GRADIENT))
    _fill_field(by_kec_now)
    full_list = (new_table(3, "Full bins, list", 10, 8)
                 .description("Bins at or above the full threshold, with the time of their latest reading.")
                 .with_target(InfluxQL("A", FULL_LIST).table())
                 .sort_by([cb.TableSortByFieldState().display_name("fill").desc(True)]))
    _fill_field(full_list)
    bin_map = (geomap.Panel().datasource(datasource()).id(4).title("Bin map").span(12).height(12)
               .description("Every bin at its registered location, coloured by its latest fill "
                            "(written by the analytics job as bin_state).")
               .with_target(InfluxQL("A", MAP).table())
               .view(geomap.MapViewConfig().id(gm.MapCenterID.FIT).all_layers(True))
               .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
               .layers([cb.MapLayerOptions().type("markers").name("Bins").tooltip(True)
                        .location(cb.FrameGeometrySource().mode(cm.FrameGeometrySourceMode.COORDS)
                                  .latitude(schema.FIELD_LAT).longitude(schema.FIELD_LON))
                        .config({"showLegend": True,
                                 "style": {"color": {"field": FILL, "fixed": "dark-green"},
                                           "size": {"fixed": 6}, "opacity": 0.9,
                                           "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"}}})])
               .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS)))
    _fill_field(bin_map)
    by_kec = (new_timeseries(5, "Mean fill by kecamatan", 12, 12, "lastNotNull", "max")
              .description("Mean of all fill readings per kecamatan per interval; for long ranges "
                           "(intervals of an hour or more) the mean of the bins' hourly, then daily, means.")
              .targets(fill_by_kec).interval("10m")
              .unit("percentunit").min(0).max(1).thresholds(thresholds("green", *FILL_THRESHOLDS))
              .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)))
    pickups = (new_timeseries(6, "Pickups per day", 12, 9, "sum")
               .description("Detected collections per kecamatan per day (local days of the zone chosen in "
                            "\"Days in\"). A day without a bar has no detected collection: no data, which is not "
                            "the same as zero.")
               .with_target(InfluxQL("A", PICKUPS).alias("$tag_kecamatan"))
               .draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80).decimals(0)
               .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL)))
    ttf = (new_table(7, "Time to full", 12, 9)
           .description("Hours until each bin reaches its full threshold at its current fill rate "
                        "(empty: not filling); from the analytics job's bin_state.")
           .with_target(InfluxQL("A", TIME_TO_FULL).table())
           .sort_by([cb.TableSortByFieldState().display_name(schema.FIELD_HOURS_TO_FULL).desc(False)])
           .override_by_name(schema.FIELD_HOURS_TO_FULL, [model.DynamicConfigValue(id_val="unit", value="h")])
           .override_by_name(FILL, [model.DynamicConfigValue(id_val="unit", value="percentunit")]))
    return (dash.Dashboard(TITLE).uid(UID).tags(["lorong", "waste"]).time("now-7d", "now").refresh("1m")
            .timezone("browser").editable()
            .with_variable(city_variable([BIN]))
            .with_variable(tag_values("kecamatan", "Kecamatan", [BIN], KEC, BY_CITY, all_value=".*"))
            .with_variable(tag_values("device", "Bin", [BIN], DEV, f"{BY_CITY} AND {matches(KEC, 'kecamatan')}",
                                      all_value=".*"))
            .with_variable(day_variable(days))
            .annotation(InfluxAnnotation("Bin alerts", ALERTS, schema.FIELD_ALERT_ACTION,
                                         [schema.TAG_TYPE, schema.TAG_SEVERITY, DEV], "orange"))
            .with_panel(full).with_panel(by_kec_now).with_panel(full_list)
            .with_panel(bin_map).with_panel(by_kec).with_panel(pickups).with_panel(ttf)
            .build())
