"""What Grafana (11.x, InfluxDB datasource in InfluxQL mode) does to a dashboard's queries.

Grafana cannot be installed here, so the tests run each panel's query through this model of
Grafana's two steps, then against the real InfluxDB:

1. Frontend (``public/app/plugins/datasource/influxdb/datasource.ts``, ``applyVariables``):
   ``templateSrv.replace(query, scopedVars, 'regex')`` fills dashboard variables (``$name``,
   ``${name}``) in the ``regex`` format (``@grafana/scenes`` format registry): one value
   ``escapeRegex``-ed (``@grafana/data`` ``text/string.ts``: ``[\\^$*+?.()|[]{}/]``), several as
   ``(a|b)``, "All" as the variable's raw ``allValue`` or, without one, as every option.
   A format named in the query wins: ``${name:raw}`` is the value unchanged (only ``raw`` and
   ``regex`` are modelled; another format fails the test). ``${__from}``/``${__to}`` become the
   range in epoch ms. ``$__interval`` and ``$__interval_ms`` are left for the backend.
   A custom variable's options are what Grafana reads from its query (``text : value`` items split
   at unescaped commas, ``@grafana/scenes`` ``CustomVariable``); they must equal its stored options.
2. Backend (``pkg/tsdb/influxdb/models/query.go``, ``Build``): ``$timeFilter`` ->
   ``time >= <from>ms and time <= <to>ms``, then ``$interval``, ``$__interval_ms``,
   ``$__interval`` (``gtime.FormatInterval``: ``1h``, ``5m``, ``30s`` ...).

The interval is the one Grafana computes from the range and the panel width (a test input here),
raised to the panel's ``interval`` and the datasource's ``timeInterval`` when those are larger.
A panel's ``timeFrom`` (``7d``) replaces the range by the last 7 days up to the range's end.

Results are shaped as Grafana shows them: time series named by the target's ``alias``
(``$tag_<key>``, ``$col``; backend ``response_parser.go`` ``formatFrameName``), tables as rows
with the GROUP BY tags as columns, annotations as events (``influx_series.ts``
``getAnnotations``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from dashboards.panels import ALL, DATASOURCE_TIME_INTERVAL
from lorong.storage.influx import InfluxClient

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
             "y": 31_536_000_000}


def duration_ms(text: str) -> int:
    """``"10m"`` -> 600000. Raises ValueError on anything else."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", text)
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


def format_interval(ms: int) -> str:
    """Grafana's ``gtime.FormatInterval``: the largest whole unit (y, d, h, m, s, ms)."""
    for unit in ("y", "d", "h", "m", "s", "ms"):
        if ms >= _UNITS_MS[unit]:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return "1ms"


def escape_regex(value: str) -> str:
    """``escapeRegex`` of ``@grafana/data``."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value)


def backend_macros(query: str, from_ms: int, to_ms: int, interval_ms: int) -> str:
    """Step 2: the backend's replacements, in its order."""
    text = format_interval(interval_ms)
    query = query.replace("$timeFilter", f"time >= {from_ms}ms and time <= {to_ms}ms")
    query = query.replace("$interval", text)
    query = query.replace("$__interval_ms", str(interval_ms))
    return query.replace("$__interval", text)


def custom_options(query: str) -> list[tuple[str, str]]:
    """``[(text, value)]`` of a custom variable's query as Grafana reads it (``@grafana/scenes``
    ``CustomVariable.getValueOptions``): items split at commas not escaped as ``\\,``, each
    ``text : value`` (split at the last `` : ``) or a bare value that is also its text."""
    options = []
    for item in re.findall(r"(?:\\,|[^,])+", query):
        item = item.replace("\\,", ",")
        m = re.fullmatch(r"\s*(.+)\s:\s(.+)", item, re.S)
        options.append((m.group(1).strip(), m.group(2).strip()) if m else (item.strip(), item.strip()))
    return options


Selection = str | list[str]
"""A variable's current value: ``ALL`` or the selected values."""


@dataclass
class Run:
    """One execution of a target: the query InfluxDB got and what Grafana shows."""

    query: str
    series: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)


class GrafanaSim:
    """A dashboard opened in Grafana at ``now``, with variable selections and an interval.

    Args:
        dashboard: the built dashboard JSON.
        influx: client on the database the datasource points at.
        now_ms: what "now" is (epoch ms); the range is the dashboard's ``time`` relative to it.
        interval: the interval Grafana computed from range and width (``"1h"``).
        selection: current value per variable; unlisted variables are on "All" (one without "All":
            on its ``current`` value).
    """

    def __init__(self, dashboard: dict[str, Any], influx: InfluxClient, now_ms: int, interval: str,
                 selection: dict[str, Selection] | None = None) -> None:
        self.dashboard = dashboard
        self.influx = influx
        self.now_ms = now_ms
        self.interval_ms = duration_ms(interval)
        self.selection = selection or {}
        self.variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
        unknown = set(self.selection) - set(self.variables)
        if unknown:
            raise KeyError(f"no such variables: {sorted(unknown)}")

    # -- time -------------------------------------------------------------------------------
    def _relative(self, expr: str) -> int:
        if expr == "now":
            return self.now_ms
        m = re.fullmatch(r"now-(\w+)", expr)
        if not m:
            raise ValueError(f"unsupported time {expr!r}")
        return self.now_ms - duration_ms(m.group(1))

    def time_range(self, panel: dict[str, Any] | None = None) -> tuple[int, int]:
        """The range a panel queries: the dashboard's, or ``timeFrom`` back from its end."""
        t = self.dashboard["time"]
        start, end = self._relative(t["from"]), self._relative(t["to"])
        if panel and panel.get("timeFrom"):
            start = end - duration_ms(panel["timeFrom"])
        return start, end

    def panel_interval(self, panel: dict[str, Any]) -> int:
        """``$__interval`` in ms: the computed one, raised to the panel's and the datasource's minimum."""
        floors = [duration_ms(DATASOURCE_TIME_INTERVAL)]
        if panel.get("interval"):
            floors.append(duration_ms(panel["interval"]))
        return max(self.interval_ms, *floors)

    # -- variables --------------------------------------------------------------------------
    def options(self, name: str) -> list[str]:
        """The values a variable offers: a custom variable's options as Grafana reads them from its
        query (:func:`custom_options`; they must equal the stored ``options``); a query variable's query
        run, values of every series merged."""
        var = self.variables[name]
        if var["type"] == "custom":
            parsed = custom_options(var["query"])
            stored = [(str(o["text"]), str(o["value"])) for o in var["options"]]
            if parsed != stored:
                raise ValueError(f"{name}: the query gives {parsed}, the stored options are {stored}")
            return [value for _, value in parsed]
        start, end = self.time_range()
        query = backend_macros(self.interpolate(var["query"], start, end), start, end, self.interval_ms)
        values: list[str] = []
        for s in self.influx.query(query):
            for row in s.values:
                v = str(row[s.columns.index("value")])
                if v not in values:
                    values.append(v)
        if var.get("sort") == 1:
            values.sort()
        return values

    def _formatted(self, name: str, fmt: str = "regex") -> str:
        var = self.variables[name]
        chosen = self.selection.get(name, ALL if var.get("includeAll") else var["current"]["value"])
        if not var.get("includeAll") and chosen not in self.options(name):
            raise ValueError(f"{name}={chosen!r} is not an option of the variable: {self.options(name)}")
        if fmt == "raw":
            if not isinstance(chosen, str) or chosen == ALL:
                raise ValueError(f"${{{name}:raw}} of a multi-value or All selection is not modelled: {chosen!r}")
            return chosen
        if fmt != "regex":
            raise ValueError(f"variable format {fmt!r} of ${name} is not modelled")
        if chosen == ALL or chosen == [ALL]:
            if var.get("allValue"):
                return str(var["allValue"])
            chosen = self.options(name)
        if isinstance(chosen, str):
            return escape_regex(chosen)
        escaped = [escape_regex(v) for v in chosen]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"

    def interpolate(self, text: str, start: int, end: int) -> str:
        """Step 1: dashboard variables in ``regex`` format, ``__from``/``__to`` in epoch ms."""
        def repl(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(3)
            if name == "__from":
                return str(start)
            if name == "__to":
                return str(end)
            if name in self.variables:
                return self._formatted(name, m.group(2) or "regex")
            return m.group(0)

        return re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)", repl, text)

    # -- queries ----------------------------------------------------------------------------
    def panel(self, panel_id: int) -> dict[str, Any]:
        """The panel with ``id``."""
        return next(p for p in self.dashboard["panels"] if p["id"] == panel_id)

    def run(self, panel_id: int, ref_id: str) -> Run:
        """Run one target of one panel as Grafana would and shape its result."""
        panel = self.panel(panel_id)
        target = next(t for t in panel["targets"] if t["refId"] == ref_id)
        start, end = self.time_range(panel)
        query = backend_macros(self.interpolate(target["query"], start, end), start, end,
                               self.panel_interval(panel))
        result = Run(query)
        for s in self.influx.query(query):
            if target.get("resultFormat") == "table":
                result.rows.extend(s.records())
                continue
            for col in s.columns[1:]:
                name = self._series_name(target, s.name, s.tags, col, start, end)
                i = s.columns.index(col)
                result.series[name] = [(row[0], row[i]) for row in s.values]
        return result

    def _series_name(self, target: dict[str, Any], measurement: str, tags: dict[str, str], col: str,
                     start: int, end: int) -> str:
        alias = target.get("alias")
        if not alias:
            suffix = " {" + ", ".join(f"{k}: {v}" for k, v in sorted(tags.items())) + "}" if tags else ""
            return f"{measurement}.{col}{suffix}"

        def repl(m: re.Match[str]) -> str:
            key = m.group(1) or m.group(2)
            if key == "col":
                return col
            if key.startswith("tag_") and key[4:] in tags:
                return tags[key[4:]]
            return m.group(0)

        return re.sub(r"\[\[([@\w-]+)\]\]|\$([@\w-]+)", repl, self.interpolate(alias, start, end))

    def annotations(self, name: str) -> list[dict[str, Any]]:
        """Events of the InfluxQL annotation ``name``: time, text and tags per row."""
        ann = next(a for a in self.dashboard["annotations"]["list"] if a["name"] == name)
        target = ann["target"]
        start, end = self.time_range()
        query = backend_macros(self.interpolate(target["query"], start, end), start, end, self.interval_ms)
        tag_cols = target["tagsColumn"].replace(" ", "").split(",")
        events = []
        for row in self.influx.records(query):
            tags = [t for c in tag_cols if row.get(c) for t in str(row[c]).split(",")]
            events.append({"time": row["time"], "text": row.get(target["textColumn"]), "tags": tags})
        return events
