"""The Grafana model the query tests rely on: macro and variable substitution as Grafana does it."""

from __future__ import annotations

import pytest

from dashboards.panels import ALL
from tests.dashboards.grafana import GrafanaSim, backend_macros, duration_ms, escape_regex, format_interval


def test_backend_macros_in_grafanas_order() -> None:
    q = "SELECT mean(x) FROM m WHERE $timeFilter GROUP BY time($__interval) LIMIT $__interval_ms; $interval"
    assert backend_macros(q, 1_000, 61_000, 300_000) == (
        "SELECT mean(x) FROM m WHERE time >= 1000ms and time <= 61000ms GROUP BY time(5m) LIMIT 300000; 5m")


@pytest.mark.parametrize(("ms", "text"), [(1, "1ms"), (999, "999ms"), (1000, "1s"), (90_000, "1m"),
                                          (3_600_000, "1h"), (86_400_000, "1d"), (0, "1ms")])
def test_format_interval_like_gtime(ms: int, text: str) -> None:
    assert format_interval(ms) == text


def test_duration_and_escape() -> None:
    assert duration_ms("7d") == 604_800_000 and duration_ms("10s") == 10_000
    with pytest.raises(ValueError):
        duration_ms("7 days")
    assert escape_regex("a.b/c(d)|e-f g") == r"a\.b\/c\(d\)\|e-f g"


def _sim(selection: dict[str, object], all_value: str | None = None) -> GrafanaSim:
    var = {"name": "kec", "query": "SHOW TAG VALUES", "multi": True, "includeAll": True}
    if all_value is not None:
        var["allValue"] = all_value
    dashboard = {"time": {"from": "now-1h", "to": "now"}, "templating": {"list": [var]}, "panels": []}
    return GrafanaSim(dashboard, None, 7_200_000, "1m", selection)  # type: ignore[arg-type]


def test_variable_formats() -> None:
    assert _sim({"kec": ["Mariso", "Ujung Pandang"]}).interpolate("/^$kec$/", 0, 1) == "/^(Mariso|Ujung Pandang)$/"
    assert _sim({"kec": ["Tallo"]}).interpolate("/^${kec}$/", 0, 1) == "/^Tallo$/"
    assert _sim({"kec": ALL}, all_value=".*").interpolate("/^$kec$/ $kecamatan", 0, 1) == "/^.*$/ $kecamatan"
    assert _sim({}).interpolate("x < ${__to} - 1 AND y > $__from AND $timeFilter", 5, 9) == (
        "x < 9 - 1 AND y > 5 AND $timeFilter")
    assert _sim({}).time_range() == (3_600_000, 7_200_000)
    assert _sim({}).time_range({"timeFrom": "2h"}) == (0, 7_200_000)
    with pytest.raises(KeyError):
        _sim({"nope": ["x"]})
