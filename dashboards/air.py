"""The Air quality dashboard: PM2.5 and PM10 per station against the ISPU bands, and ISPU per station.

ISPU (Indeks Standar Pencemar Udara), Peraturan Menteri LHK No. P.14/MENLHK/SETJEN/KUM.1/7/2020,
Lampiran: categories Baik 0-50, Sedang 51-100, Tidak Sehat 101-200, Sangat Tidak Sehat 201-300,
Berbahaya above 300, shown in the regulation's colours (hijau, biru, kuning, merah, hitam); the
concentration limits of PM2.5 and PM10 at ISPU 50/100/200/300 become the panels' threshold bands.
These numbers repeat :mod:`analytics.aqi` (dashboards import only ``core``); a test keeps the two
equal. Grafana colours a threshold from its value upwards, so a reading exactly on a limit (PM2.5
15.5) is drawn in the upper band although the regulation counts it in the lower one.

Panels (ids are stable; tests key their checks on them):

1. PM2.5 per station: mean per ``$__interval``, ISPU bands as thresholds; from one-hour intervals
   on (long ranges) the mean of the hourly means, from one day on of the daily means (targets
   A/B/C, :func:`dashboards.panels.mean_targets`).
2. PM10 per station: the same for PM10.
3. ISPU category per station: latest ``air_index.ispu`` of each station, shown as its category.

Variables: city, kecamatan (of the chosen cities), station (of the chosen kecamatan); every query
follows all three. "Days in" (``$day_zone``, :func:`dashboards.panels.day_variable`) sets whose
local days the per-day buckets are (panels 1 and 2 from one-day intervals).

Annotation: air alerts: every ``alert_event`` of the selected stations (PM2.5 high, spikes,
episodes, offline, low battery ...), what changed as text, type, severity and station as tags.
The station variable has no custom "All" value, so "All" stands for every air station (a city
has tens, not thousands) and bin alerts stay off this dashboard whatever their type.
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
    InfluxAnnotation,
    InfluxQL,
    Targets,
    city_variable,
    datasource,
    day_variable,
    ident,
    matches,
    mean_targets,
    new_timeseries,
    tag_values,
    thresholds,
    where,
)
from lorong.core import schema
from lorong.core.settings import InfluxSettings

UID = "lorong-air"
TITLE = "Lorong - Air quality"

ISPU_CATEGORIES: tuple[tuple[str, int, int | None, str], ...] = (
    ("Baik", 0, 50, "green"),
    ("Sedang", 51, 100, "blue"),
    ("Tidak Sehat", 101, 200, "yellow"),
    ("Sangat Tidak Sehat", 201, 300, "red"),
    ("Berbahaya", 301, None, "#000000"),
)
"""(name, lowest index, highest index or None, colour) per ISPU category, P.14/2020."""

PM25_LIMITS_UGM3 = (15.5, 55.4, 150.4, 250.4)
"""PM2.5 upper limits (ug/m3, 24 h) of Baik, Sedang, Tidak Sehat, Sangat Tidak Sehat, P.14/2020."""

PM10_LIMITS_UGM3 = (50.0, 150.0, 350.0, 420.0)
"""PM10 upper limits (ug/m3, 24 h) of Baik, Sedang, Tidak Sehat, Sangat Tidak Sehat, P.14/2020."""

AIR, INDEX = schema.MEASUREMENT_AIR, schema.MEASUREMENT_AIR_INDEX
DEV, KEC = schema.TAG_DEVICE, schema.TAG_KECAMATAN
FILTERS = (BY_CITY, matches(KEC, "kecamatan"), matches(DEV, "device"))


def _mean(fld: str, keep: InfluxSettings) -> Targets:
    return mean_targets(fld, fld, AIR, FILTERS, ident(DEV), "$tag_device_id", keep)


ISPU = (f"SELECT last({ident(schema.FIELD_ISPU)}) AS {ident(schema.FIELD_ISPU)} FROM {ident(INDEX)} "
        f"{where(*FILTERS)} GROUP BY {ident(DEV)}")
ALERTS = (f"SELECT {ident(schema.FIELD_ALERT_ACTION)}, {ident(schema.TAG_TYPE)}, {ident(schema.TAG_SEVERITY)}, "
          f"{ident(DEV)} FROM {ident(schema.MEASUREMENT_ALERT)} {where(*FILTERS)}")


def _band_thresholds(limits: tuple[float, ...]) -> dash.ThresholdsConfig:
    colours = [c for _, _, _, c in ISPU_CATEGORIES]
    return thresholds(colours[0], *zip(limits, colours[1:], strict=True))


def _pm_panel(pid: int, title: str, targets: Targets, limits: tuple[float, ...]) -> timeseries.Panel:
    return (new_timeseries(pid, title, 12, 10, "lastNotNull", "max", "mean")
            .description(f"{title}: mean per interval; background bands are the ISPU categories "
                         "(P.14/2020 limits, 24-hour averages).")
            .targets(targets).interval("5m")
            .unit("conµgm3").min(0).thresholds(_band_thresholds(limits))
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE_AND_AREA)))


def ispu_mappings() -> list[model.ValueMapping]:
    """One range mapping per ISPU category: the index shows as the category name in its colour."""
    return [model.RangeMap(model.DashboardRangeMapOptions(
        from_val=lo, to=hi, result=model.ValueMappingResult(text=name, color=colour, index=i)))
        for i, (name, lo, hi, colour) in enumerate(ISPU_CATEGORIES)]


def build(keep: InfluxSettings | None = None, days: DaysIn | None = None) -> model.Dashboard:
    """The Air quality dashboard (uid :data:`UID`) for the retention ``keep`` (default: Lorong's defaults;
    :func:`dashboards.panels.mean_targets`), "Days in" offering the zones of ``days`` (default: Indonesia's
    three, WITA selected; :func:`dashboards.panels.day_variable`).

    Raises:
        ValueError: a zone of ``days`` is not an IANA zone.
    """
    keep = keep or InfluxSettings()
    colours = [c for _, _, _, c in ISPU_CATEGORIES]
    ispu = (stat.Panel().datasource(datasource()).id(3).title("ISPU category per station").span(24).height(6)
            .description("Latest ISPU of each station (analytics job, air_index) as its P.14/2020 category.")
            .with_target(InfluxQL("A", ISPU).alias("$tag_device_id"))
            .mappings(ispu_mappings())
            .thresholds(thresholds(colours[0], *((lo, c) for _, lo, _, c in ISPU_CATEGORIES[1:])))
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).color_mode(cm.BigValueColorMode.BACKGROUND)
            .graph_mode(cm.BigValueGraphMode.NONE))
    return (dash.Dashboard(TITLE).uid(UID).tags(["lorong", "air"]).time("now-24h", "now").refresh("1m")
            .timezone("browser").editable()
            .with_variable(city_variable([AIR]))
            .with_variable(tag_values("kecamatan", "Kecamatan", [AIR], KEC, BY_CITY, all_value=".*"))
            .with_variable(tag_values("device", "Station", [AIR], DEV, f"{BY_CITY} AND {matches(KEC, 'kecamatan')}"))
            .with_variable(day_variable(days))
            .annotation(InfluxAnnotation("Air alerts", ALERTS, schema.FIELD_ALERT_ACTION,
                                         [schema.TAG_TYPE, schema.TAG_SEVERITY, DEV], "red"))
            .with_panel(_pm_panel(1, "PM2.5 per station", _mean(schema.FIELD_PM25, keep), PM25_LIMITS_UGM3))
            .with_panel(_pm_panel(2, "PM10 per station", _mean(schema.FIELD_PM10, keep), PM10_LIMITS_UGM3))
            .with_panel(ispu)
            .build())
