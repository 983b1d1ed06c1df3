"""Shared parts of the dashboards: the InfluxQL query model, the datasource, variables, helpers.

No build of grafana-foundation-sdk ships an InfluxDB query builder, so :class:`InfluxQLQuery` is
a small ``Dataquery`` variant for raw InfluxQL targets, registered with the SDK runtime under the
datasource type ``influxdb`` so that ``Dashboard.from_json`` reads it back (round trip). Its JSON
is the target Grafana's InfluxDB datasource (InfluxQL mode) stores: ``refId``, ``query``,
``rawQuery: true``, ``resultFormat`` (``time_series`` or ``table``), ``alias``, ``datasource``
(grafana/grafana ``public/app/plugins/datasource/influxdb/types.ts``, ``InfluxQuery``).

Annotations: the SDK types ``AnnotationQuery.target`` as the built-in Grafana annotation target
(its own comment: "this should be a regular DataQuery"), which cannot carry an InfluxQL query, so
:class:`InfluxAnnotationQuery` extends it with the target the InfluxDB datasource reads
(``query``, ``textColumn``, ``tagsColumn`` ...; grafana/grafana
``public/app/plugins/datasource/influxdb/migrations.ts``).

Macros Grafana substitutes in these queries: ``$timeFilter`` (``time >= <from>ms and time <=
<to>ms``), ``$__interval`` / ``$__interval_ms`` (the panel's group-by interval; never below the
panel's ``interval`` nor the datasource's ``timeInterval``), ``${__to}`` (end of the range, epoch
ms) and dashboard variables in the InfluxDB datasource's ``regex`` format (one value escaped,
several as ``(a|b)``, "All" as the variable's ``allValue`` or as every value).

Cities: every dashboard's first variable is ``$city`` (:func:`city_variable`, the ``city`` tag the
ingester and the analytics job write); the other device variables are chained to it and every
query on device data filters by it. "All" is ``.*``, so points written before the city tag existed
(no ``city`` tag: an empty value) still show under "All".

Days: the daily means are each city's local days (:mod:`lorong.storage.retention`: 23 or 25 hours
long on the days a zone with daylight saving time changes its clock), and a dashboard cannot look up
the selected city's zone, so per-day buckets follow the ``$day_zone`` variable (:func:`day_variable`,
"Days in": Indonesia's three zones and every zone of the registry's cities when the dashboards were
built; the deployment's zone by default): ``GROUP BY time($__interval), <tags> fill(none)
${day_zone:raw}``, the variable's value being an InfluxQL ``tz('Europe/London')`` clause, which makes
InfluxDB start each bucket of a day or more at the zone's local midnight (measured on InfluxDB 1.6.7,
also inside subqueries). ``:raw`` because Grafana's InfluxDB datasource escapes a plain ``$day_zone``
for a regex in some versions (``tz\\('Europe\\/London'\\)``, which InfluxDB refuses), while
``${name:raw}`` passes the value unchanged in every version (Grafana docs, "Variable syntax",
advanced variable format options).

A 1-day bucket holds exactly one daily mean of each device of a city whose zone is the one chosen
(its daily means are stamped at those very midnights), and of each city of a zone without daylight
saving time when the chosen zone has none either (their means are 24 h apart, like the buckets).
Between a zone with daylight saving time and another zone the distance of their midnights moves by
an hour at each clock change: where the other zone's midnight lies within that hour (Europe/London,
midnight 00:00 or 23:00 UTC, beside a UTC+0 zone, midnight 00:00 UTC) a bucket of the clock-change
day can hold two daily means of a device (March) or none (October). Several cities of different
zones at once share one choice: pick the zone of the city looked at.

Long ranges read means (:func:`mean_targets`): a panel that averages readings over time has one
target per retention policy of :mod:`lorong.storage.retention` (``raw``, ``hourly``, ``daily``), and each
target is switched on by Grafana's ``$__interval_ms`` (the panel's group-by interval, which grows
with the chosen range: range / max data points, rounded to 1h, 2h, 12h, 1d ...): raw readings below
one hour, hourly means from one hour, daily means from one day. The conditions are InfluxQL
constant comparisons (``3600000 >= 3600000``) that InfluxDB evaluates before reading any shard,
so the two switched-off targets return nothing and cost nothing; all three share one alias, so the
panel shows one series per group whatever the range.

Old ranges: a policy keeps its points only so long (``raw_days`` ..., :class:`lorong.core.settings.InfluxSettings`),
so each target reads its own policy where it still holds the time and the next coarser one before that
(:func:`level_sources`): a one-day range six months back shows hourly means, one per hour. The limits
are ``now() - <days>d`` for the retention the dashboards are built for (:func:`dashboards.build.build_all`,
``lorong dashboards build`` reads ``LORONG_INFLUX__*_DAYS``).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import plugins as cogplugins
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as model

from lorong.core import schema
from lorong.core.settings import AnalyticsSettings, InfluxSettings

DATASOURCE_TYPE = "influxdb"
DATASOURCE_UID = "lorong-influx"
"""The uid of the provisioned InfluxDB (InfluxQL) datasource every query uses."""

DATASOURCE_NAME = "Lorong InfluxDB"
DATASOURCE_TIME_INTERVAL = "10s"
"""Datasource-wide minimum ``$__interval``: the ingester writes its self-metrics every 10 s."""

CITY_TZ = AnalyticsSettings().timezone
"""IANA zone of the deployment's own city by default (``analytics.timezone``: ``Asia/Makassar``,
WITA, UTC+8): the day zone a dashboard built without settings opens with."""

DAY_ZONES = {"WITA (UTC+8)": "Asia/Makassar", "WIB (UTC+7)": "Asia/Jakarta", "WIT (UTC+9)": "Asia/Jayapura"}
"""Indonesia's three zones (none keeps daylight saving time), always offered by :func:`day_variable`."""

FULL_THRESHOLD = AnalyticsSettings().full_threshold
"""Fill fraction at which a bin counts as full (0.8; see :mod:`analytics.jobs`)."""

OVERFLOW_THRESHOLD = AnalyticsSettings().overflow_threshold
"""Fill fraction at which a full bin is critical (0.95; see :mod:`analytics.jobs`)."""

TIME_SERIES = "time_series"
TABLE = "table"
ALL = "$__all"
"""Grafana's value for the "All" option of a variable."""


def datasource() -> model.DataSourceRef:
    """A fresh reference to the provisioned InfluxDB datasource."""
    return model.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


def ident(name: str) -> str:
    """Quote an InfluxQL identifier (measurement, tag or field key) with double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def matches(tag: str, variable: str) -> str:
    """InfluxQL condition ``"tag" =~ /^$variable$/`` (Grafana fills in the variable as a regex)."""
    return f"{ident(tag)} =~ /^${variable}$/"


def where(*conditions: str) -> str:
    """``WHERE $timeFilter AND c1 AND c2 ...``: every panel query is bounded by the time picker."""
    return " AND ".join(("WHERE $timeFilter", *conditions))


class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL target of Grafana's InfluxDB datasource.

    Attributes:
        ref_id: target id within the panel (``A``, ``B`` ...).
        query: InfluxQL text with Grafana macros and ``$variables``.
        result_format: ``time_series`` (one series per GROUP BY tag set) or ``table`` (one frame,
            tags as columns).
        alias: series name pattern (``$tag_<key>``, ``$col``); ``None`` for Grafana's default.
        datasource: the datasource reference (the provisioned InfluxDB).
        hide: hide the target's result.
    """

    def __init__(self, ref_id: str = "", query: str = "", result_format: str = TIME_SERIES,
                 alias: str | None = None, datasource: model.DataSourceRef | None = None,
                 hide: bool | None = None) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias
        self.datasource = datasource
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        """JSON as Grafana stores an InfluxQL raw-mode target."""
        payload: dict[str, object] = {"refId": self.ref_id, "query": self.query, "rawQuery": True,
                                      "resultFormat": self.result_format}
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> typing.Self:
        """Read a target written by :meth:`to_json` (or by Grafana in raw mode).

        Raises:
            ValueError: the target is not in raw InfluxQL mode.
        """
        if data.get("rawQuery") is not True:
            raise ValueError(f"not a raw InfluxQL target: {data!r}")
        ds = data.get("datasource")
        return cls(ref_id=data.get("refId", ""), query=data.get("query", ""),
                   result_format=data.get("resultFormat", TIME_SERIES), alias=data.get("alias"),
                   datasource=model.DataSourceRef.from_json(ds) if ds is not None else None,
                   hide=data.get("hide"))


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder of an :class:`InfluxQLQuery` on the provisioned datasource.

    Args:
        ref_id: target id within the panel.
        query: InfluxQL text.
    """

    def __init__(self, ref_id: str, query: str) -> None:
        self._internal = InfluxQLQuery(ref_id=ref_id, query=query, datasource=datasource())

    def build(self) -> InfluxQLQuery:
        """Return the target."""
        return self._internal

    def alias(self, alias: str) -> typing.Self:
        """Name series with ``alias`` (``$tag_<key>`` and ``$col`` are replaced per series)."""
        self._internal.alias = alias
        return self

    def table(self) -> typing.Self:
        """Return one table (GROUP BY tags become columns) instead of time series."""
        self._internal.result_format = TABLE
        return self


class InfluxAnnotationTarget:
    """The target of an InfluxQL annotation query.

    Attributes:
        query: InfluxQL with ``$timeFilter``; each row becomes one annotation at its time.
        text_column: column shown as the annotation text.
        tags_column: comma-separated columns whose values become the annotation's tags.
    """

    def __init__(self, query: str = "", text_column: str = "", tags_column: str = "") -> None:
        self.query = query
        self.text_column = text_column
        self.tags_column = tags_column

    def to_json(self) -> dict[str, object]:
        """JSON in the shape ``prepareAnnotation`` (InfluxDB datasource) produces."""
        return {"query": self.query, "queryType": "tags", "fromAnnotations": True,
                "textColumn": self.text_column, "tagsColumn": self.tags_column,
                "timeEndColumn": "", "titleColumn": ""}

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> typing.Self:
        """Read a target written by :meth:`to_json`."""
        return cls(query=data.get("query", ""), text_column=data.get("textColumn", ""),
                   tags_column=data.get("tagsColumn", ""))


class InfluxAnnotationQuery(model.AnnotationQuery):
    """A dashboard annotation whose events come from an InfluxQL query.

    Attributes:
        influx_target: the InfluxQL target, written as the annotation's ``target``.
    """

    def __init__(self, name: str, influx_target: InfluxAnnotationTarget, icon_color: str) -> None:
        super().__init__(name=name, datasource=datasource(), enable=True, icon_color=icon_color)
        self.influx_target = influx_target

    def to_json(self) -> dict[str, object]:
        """The SDK's annotation JSON plus the InfluxQL ``target``."""
        payload = super().to_json()
        payload["target"] = self.influx_target
        return payload

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> typing.Self:
        """Read an annotation written by :meth:`to_json`."""
        return cls(data.get("name", ""), InfluxAnnotationTarget.from_json(data.get("target", {})),
                   data.get("iconColor", ""))


class InfluxAnnotation(cogbuilder.Builder[model.AnnotationQuery]):
    """Builder of an :class:`InfluxAnnotationQuery`.

    Args:
        name: the toggle's label on the dashboard.
        query: InfluxQL with ``$timeFilter``.
        text_column: column shown as the text.
        tags_columns: columns shown as tags.
        icon_color: marker colour (Grafana colour name or hex).
    """

    def __init__(self, name: str, query: str, text_column: str, tags_columns: typing.Sequence[str],
                 icon_color: str) -> None:
        self._internal = InfluxAnnotationQuery(
            name, InfluxAnnotationTarget(query, text_column, ",".join(tags_columns)), icon_color)

    def build(self) -> InfluxAnnotationQuery:
        """Return the annotation."""
        return self._internal


def variant_config() -> cogruntime.DataqueryConfig:
    """Runtime registration of :class:`InfluxQLQuery` for the ``influxdb`` datasource type."""
    return cogruntime.DataqueryConfig(identifier=DATASOURCE_TYPE, from_json_hook=InfluxQLQuery.from_json)


def register_runtime() -> None:
    """Register the SDK's panel and query plugins plus :class:`InfluxQLQuery` (idempotent).

    ``Dashboard.from_json`` decodes panel options and targets only for registered types.
    """
    cogplugins.register_default_plugins()
    cogruntime.register_dataquery_variant(variant_config())


def tag_values(name: str, label: str, measurements: typing.Sequence[str], key: str,
               condition: str | None = None, all_value: str | None = None) -> dash.QueryVariable:
    """A multi-value variable filled by ``SHOW TAG VALUES``, with "All" selected.

    Args:
        name: variable name (``$name`` in queries).
        label: label shown on the dashboard.
        measurements: measurements whose tag values are offered (their union).
        key: tag key.
        condition: optional InfluxQL condition (another variable, for chained variables).
        all_value: what "All" stands for; ``None`` for every listed value as ``(a|b|...)``,
            ``".*"`` where the list can hold thousands of devices.

    Returns:
        The variable builder (refreshed on dashboard load, sorted alphabetically).
    """
    query = (f"SHOW TAG VALUES FROM {', '.join(ident(m) for m in measurements)} "
             f"WITH KEY = {ident(key)}")
    if condition:
        query += f" WHERE {condition}"
    var = (dash.QueryVariable(name).label(label).query(query).datasource(datasource())
           .multi(True).include_all(True).refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
           .sort(model.VariableSort.ALPHABETICAL_ASC)
           .current(model.VariableOption(selected=True, text=["All"], value=[ALL])))
    if all_value is not None:
        var = var.all_value(all_value)
    return var


def city_variable(measurements: typing.Sequence[str]) -> dash.QueryVariable:
    """The ``$city`` variable: every ``city`` tag value of ``measurements``, multi-value, "All" as ``.*``.

    ``.*`` (not the list of cities) so that "All" also shows points that carry no ``city`` tag
    (written before the registry had cities).
    """
    return tag_values("city", "City", measurements, schema.TAG_CITY, all_value=".*")


_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*")
"""Shape of an IANA zone name (``Asia/Makassar``, ``America/Argentina/Buenos_Aires``, ``Etc/GMT+5``):
nothing that needs quoting in an InfluxQL string literal or changes meaning in a Grafana variable."""


@dataclass(frozen=True, slots=True)
class DaysIn:
    """The zones "Days in" (:func:`day_variable`) offers besides Indonesia's three.

    Attributes:
        default: IANA zone selected when a dashboard opens: the deployment's (``analytics.timezone``).
        zones: IANA zones of the registry's cities (``cities.timezone``) when the dashboards are built;
            order and repeats do not matter.
    """

    default: str = CITY_TZ
    zones: tuple[str, ...] = ()

    @classmethod
    def of(cls, default: str, zones: Iterable[str]) -> DaysIn:
        """``DaysIn`` of the deployment's zone and the cities' zones (sorted, each once)."""
        return cls(default, tuple(sorted(set(zones))))


def tz_clause(zone: str) -> str:
    """InfluxQL ``tz('Europe/London')`` for an IANA zone: buckets of a day or more start at its local
    midnights (23 or 25 hours apart on the days its clock changes).

    Raises:
        ValueError: ``zone`` is not a zone of the IANA database (:mod:`zoneinfo`).
    """
    if not _ZONE_NAME.fullmatch(zone):
        raise ValueError(f"{zone!r} is not an IANA time zone name (like Asia/Makassar)")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{zone!r} is not an IANA time zone name (like Asia/Makassar)") from None
    return f"tz('{zone}')"


def day_options(days: DaysIn) -> dict[str, str]:
    """``{text: IANA zone}`` offered by "Days in": :data:`DAY_ZONES` (``WITA (UTC+8)`` ...), then
    ``days.default`` and ``days.zones`` not among them, by name, each under its IANA name.

    Raises:
        ValueError: one of the zones is not an IANA zone (:func:`tz_clause`).
    """
    options = dict(DAY_ZONES)
    for zone in sorted({days.default, *days.zones} - set(DAY_ZONES.values())):
        options[zone] = zone
    for zone in options.values():
        tz_clause(zone)
    return options


def day_variable(days: DaysIn | None = None) -> dash.CustomVariable:
    """The ``$day_zone`` variable ("Days in"): the zone whose local days per-day buckets follow, one
    of :func:`day_options` (text ``Europe/London``, value ``tz('Europe/London')``, appended to a
    query as :data:`DAY_TZ`); ``days.default`` selected (default :data:`CITY_TZ`).

    Grafana reads a custom variable's options back from its query, ``text : value`` pairs split at
    commas, so neither text nor value holds a comma (IANA names have none).

    Raises:
        ValueError: a zone is not an IANA zone (:func:`tz_clause`).
    """
    days = days or DaysIn()
    options = day_options(days)
    current = next(k for k, v in options.items() if v == days.default)
    return (dash.CustomVariable("day_zone").label("Days in")
            .values(",".join(f"{k} : {tz_clause(v)}" for k, v in options.items()))
            .options([model.VariableOption(selected=k == current, text=k, value=tz_clause(v))
                      for k, v in options.items()])
            .current(model.VariableOption(selected=True, text=current, value=tz_clause(days.default)))
            .multi(False).include_all(False).allow_custom_value(False))


DAY_TZ = "${day_zone:raw}"
"""Last clause of a query with per-day buckets (after ``fill()``, where InfluxQL wants ``tz()``): the
``tz()`` of the zone chosen in "Days in", unescaped (``:raw``; module docstring)."""

BY_CITY = matches(schema.TAG_CITY, "city")
"""``"city" =~ /^$city$/``: the condition every query on device data carries."""

HOUR_MS = 3_600_000
DAY_MS = 86_400_000

RAW_WHEN = f"$__interval_ms < {HOUR_MS}"
HOURLY_WHEN = f"$__interval_ms >= {HOUR_MS} AND $__interval_ms < {DAY_MS}"
DAILY_WHEN = f"$__interval_ms >= {DAY_MS}"
"""When each retention policy's target runs (module docstring, "Long ranges read means")."""


Targets = list[cogbuilder.Builder[cogvariants.Dataquery]]
"""Targets of one panel, as the SDK's ``targets()`` takes them."""


@dataclass(frozen=True, slots=True)
class _Level:
    """One retention policy as :func:`mean_targets` reads it: ``rp`` (``None``: the database's
    default, ``raw``), the InfluxQL duration of one of its points (``""`` for readings) and the
    days it keeps (0 = forever)."""

    rp: str | None
    bucket: str
    days: int


def _levels(keep: InfluxSettings) -> tuple[_Level, _Level, _Level]:
    return (_Level(None, "", keep.raw_days), _Level(schema.RP_HOURLY, "1h", keep.hourly_days),
            _Level(schema.RP_DAILY, "1d", keep.daily_days))


def level_sources(keep: InfluxSettings, band: int) -> list[tuple[str | None, list[str]]]:
    """What the target of ``band`` (0 raw readings, 1 hourly means, 2 daily means) reads: the
    policy of its band for the time it still holds, then each coarser policy for older time.

    Args:
        keep: the deployment's retention (``raw_days``, ``hourly_days``, ``daily_days``).
        band: index of the target's level.

    Returns:
        ``[(rp, time conditions)]``, finest first; ``rp`` ``None`` is the default policy (``raw``).
        With ``raw_days=90, hourly_days=1830`` band 0 reads ``raw`` for ``time > now() - 90d``,
        ``hourly`` for ``time <= now() - 90d - 1h AND time > now() - 1830d`` and ``daily`` for
        ``time <= now() - 1830d - 1d``: a coarser point (stamped at its bucket's start) is read only
        when its whole bucket ends before the finer policy's limit, so no reading counts twice; from
        the start of the coarse bucket holding the limit up to the limit nothing shows (a gap shorter
        than one coarse bucket). A policy kept forever ends the list.
    """
    levels = _levels(keep)
    out: list[tuple[str | None, list[str]]] = []
    for j in range(band, len(levels)):
        conditions: list[str] = []
        if j > band:
            finer = levels[j - 1]
            if not finer.days:
                break
            conditions.append(f"time <= now() - {finer.days}d - {levels[j].bucket}")
        if j + 1 < len(levels) and levels[j].days:
            conditions.append(f"time > now() - {levels[j].days}d")
        out.append((levels[j].rp, conditions))
    return out


def mean_targets(fld: str, name: str, measurement: str, conditions: typing.Sequence[str], group_by: str,
                 alias: str, keep: InfluxSettings) -> Targets:
    """Targets ``A`` (raw readings), ``B`` (hourly means), ``C`` (daily means) of one averaging panel.

    Args:
        fld: the field averaged, e.g. ``fillingLevel`` (the means keep the raw measurement, tag and
            field names, :mod:`lorong.storage.retention`).
        name: the column's name in the result (``AS "fill"``).
        measurement: a :data:`lorong.core.schema.DOWNSAMPLED` measurement.
        conditions: filters after ``$timeFilter`` (variables).
        group_by: tags after ``time($__interval)``, e.g. ``"kecamatan"``.
        alias: series name pattern, the same for the three targets.
        keep: the retention the dashboards are built for (:func:`level_sources`).

    Returns:
        three targets; for any ``$__interval`` exactly one of them has a true condition. The daily
        target's buckets start at midnight of the zone chosen in "Days in" (:data:`DAY_TZ`, in every
        subquery and the outer query); a ``1d`` bucket holds one daily mean of each device of that
        zone's cities (module docstring).

    Where a target's own policy no longer holds the time (raw readings older than ``raw_days``), it
    reads the next coarser one there (:func:`level_sources`): a one-day range six months back shows
    one hourly mean per hour, a range across the limit raw readings after it and hourly means before
    it. Those parts are subqueries of one query, ``SELECT mean(f) FROM (SELECT mean(f) ... FROM raw
    ... GROUP BY time($__interval), <tags>), (... FROM "hourly" ...) GROUP BY time($__interval), <tags>``,
    whose rows InfluxDB merges per tag set (measured on 1.6.7), so the panel shows one series per group,
    not one per policy. No bucket holds rows of two policies (a bucket is shorter than the coarser
    policy's, whose points all lie a whole coarse bucket before the finer policy's first), so each
    outer mean is the mean of one subquery row: the very number a query on that policy alone gives.
    The subqueries aggregate (InfluxDB computes those means in its shards, as for a plain query) and
    carry the interval condition, so a switched-off target reads no shard.

    A mean over several hours of hourly means weighs every device-hour the same (an hour with
    more readings counts once), as the API's readings do (:mod:`api.readings`).
    """
    out: Targets = []
    for band, (ref, when, tail) in enumerate((("A", RAW_WHEN, ""), ("B", HOURLY_WHEN, ""),
                                               ("C", DAILY_WHEN, f" {DAY_TZ}"))):
        group = "time($__interval)"
        parts = []
        for rp, limits in level_sources(keep, band):
            source = ident(measurement) if rp is None else f"{ident(rp)}.{ident(measurement)}"
            parts.append((source, limits))
        if len(parts) == 1 and not parts[0][1]:
            query = (f"SELECT mean({ident(fld)}) AS {ident(name)} FROM {parts[0][0]} "
                     f"{where(*conditions, when)} GROUP BY {group}, {group_by} fill(none){tail}")
        else:
            subqueries = ", ".join(f"(SELECT mean({ident(fld)}) AS {ident(fld)} FROM {source} "
                                   f"{where(*limits, *conditions, when)} GROUP BY {group}, {group_by} "
                                   f"fill(none){tail})" for source, limits in parts)
            query = (f"SELECT mean({ident(fld)}) AS {ident(name)} FROM {subqueries} {where(when)} "
                     f"GROUP BY {group}, {group_by} fill(none){tail}")
        out.append(InfluxQL(ref, query).alias(alias))
    return out


def thresholds(base: str, *steps: tuple[float, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds: ``base`` colour below the first step, then ``(value, colour)`` steps.

    Grafana applies a step's colour to values greater than or equal to its value.
    """
    return (dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=None, color=base),
                    *(model.Threshold(value=v, color=c) for v, c in steps)]))


FILL_THRESHOLDS = ((0.5, "yellow"), (FULL_THRESHOLD, "orange"), (OVERFLOW_THRESHOLD, "red"))
"""Fill colours: green below half, orange from "full" (0.8), red from overflow risk (0.95)."""



def new_table(pid: int, title: str, w: int, h: int) -> table.Panel:
    """A table panel with id, title, size and header, its cell defaults spelled out.

    The SDK's model fills in ``align``/``inspect`` when it reads a table back, so writing them keeps
    the built JSON a fixed point of the SDK round trip.
    """
    return (table.Panel().datasource(datasource()).id(pid).title(title).span(w).height(h).show_header(True)
            .align(cm.FieldTextAlignment.AUTO).inspect(False))


def new_timeseries(pid: int, title: str, w: int, h: int, *calcs: str) -> timeseries.Panel:
    """A time-series panel with id, title and size, a table legend showing ``calcs`` per series
    (Grafana reducer ids: ``lastNotNull``, ``max``, ``mean``, ``sum``) and a shared tooltip."""
    return (timeseries.Panel().datasource(datasource()).id(pid).title(title).span(w).height(h)
            .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
                    .placement(cm.LegendPlacement.BOTTOM).show_legend(True).calcs(list(calcs)))
            .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)))
