"""``lorong dashboards push`` hardening (issue 14 items 24 and 25), against the local stand-in for
Grafana's HTTP API (tests/dashboards/fake_grafana.py): the token never goes on the command line
(where ``ps`` shows it), and a dashboard is never pushed to a Grafana without the datasource its
panels query."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dashboards.build import build_all
from dashboards.panels import DATASOURCE_UID
from dashboards.push import PushError, push_all
from lorong.cli import app
from tests.dashboards.fake_grafana import FakeGrafana

EDITOR = "editor-token"


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana().start()
    yield fake
    fake.stop()


def _uids(node: Any) -> set[str]:
    """Every ``datasource.uid`` in a dashboard's JSON."""
    found: set[str] = set()
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and "uid" in ds:
            found.add(str(ds["uid"]))
        for v in node.values():
            found |= _uids(v)
    elif isinstance(node, list):
        for v in node:
            found |= _uids(v)
    return found


def test_token_is_refused_on_the_command_line(grafana: FakeGrafana, tmp_path: Path) -> None:
    """Item 24: ``--token`` put the Grafana token in every process listing."""
    runner = CliRunner()
    argv = runner.invoke(app, ["dashboards", "push", "--url", grafana.url, "--token", EDITOR])
    assert argv.exit_code == 2 and "No such option: --token" in argv.output, argv.output
    assert not [p for _, p, _ in grafana.log if p == "/api/dashboards/db"]
    none = runner.invoke(app, ["dashboards", "push", "--url", grafana.url], env={"LORONG_GRAFANA_TOKEN": ""})
    assert none.exit_code == 1
    assert "error: no Grafana token: set LORONG_GRAFANA_TOKEN or pass --token-file" in none.output
    token_file = tmp_path / "grafana.token"
    token_file.write_text(EDITOR + "\n")
    proc = subprocess.run([sys.executable, "-m", "lorong.cli", "dashboards", "push", "--url", grafana.url,
                           "--token-file", str(token_file)], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "LORONG_GRAFANA_TOKEN"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("created") == 3
    missing = runner.invoke(app, ["dashboards", "push", "--url", grafana.url, "--token-file", str(tmp_path / "no")])
    assert missing.exit_code == 1 and "cannot read --token-file" in missing.output


def test_missing_datasource_is_refused_before_anything_is_pushed(grafana: FakeGrafana) -> None:
    """Item 25: a push to a Grafana without the ``lorong-influx`` datasource reported "created"."""
    grafana.datasources.clear()
    with pytest.raises(PushError) as err:
        push_all(grafana.url, EDITOR, build_all())
    assert err.value.status == 404
    assert f"datasource uid {DATASOURCE_UID!r}" in str(err.value) and "--datasource-uid" in str(err.value)
    assert not [p for _, p, _ in grafana.log if p == "/api/dashboards/db"]
    assert ("GET", f"/api/datasources/uid/{DATASOURCE_UID}", None) in grafana.log


def test_datasource_uid_maps_to_an_existing_one(grafana: FakeGrafana) -> None:
    grafana.datasources.clear()
    grafana.datasources["P951FEA4DE68E13C5"] = {"id": 3, "uid": "P951FEA4DE68E13C5", "name": "InfluxDB city",
                                                "type": "influxdb"}
    results = CliRunner().invoke(app, ["dashboards", "push", "--url", grafana.url,
                                       "--datasource-uid", "P951FEA4DE68E13C5"], env={"LORONG_GRAFANA_TOKEN": EDITOR})
    assert results.exit_code == 0, results.output
    assert len(grafana.dashboards) == 3
    for stored in grafana.dashboards.values():
        assert _uids(stored.dashboard) == {"P951FEA4DE68E13C5"}, stored.dashboard["uid"]
    assert DATASOURCE_UID not in json.dumps([s.dashboard for s in grafana.dashboards.values()])
    grafana.datasources["P951FEA4DE68E13C5"]["type"] = "prometheus"
    wrong = CliRunner().invoke(app, ["dashboards", "push", "--url", grafana.url,
                                     "--datasource-uid", "P951FEA4DE68E13C5"], env={"LORONG_GRAFANA_TOKEN": EDITOR})
    assert wrong.exit_code == 1 and "is a prometheus datasource, the dashboards need influxdb" in wrong.output
