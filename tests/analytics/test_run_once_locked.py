"""``lorong analytics run-once`` on a SQLite database write-locked longer than its busy timeout
(issue 14 item 8): it waits and tries again instead of exiting 1. The lock is a real second
connection holding ``BEGIN IMMEDIATE``; the busy timeout is cut to 0.5 s through the URL so the
test does not wait SQLite's default 30 s."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any

import pytest
from typer.testing import CliRunner

from analytics.cli import app
from devices.registry import DeviceIn, add_device
from storage.influx import InfluxClient
from tests.analytics.test_pickups import NOW, SERIES, write_series


def test_run_once_waits_for_a_locked_database(sessions: Any, influx: InfluxClient, db_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write_series(influx)
    with sessions.begin() as s:
        for d in SERIES:
            add_device(s, DeviceIn(id=d, kind="bin", kecamatan="Tallo", depth_mm=1000))
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url + "?timeout=0.5")
    monkeypatch.setenv("LORONG_INFLUX__URL", influx.url)
    monkeypatch.setenv("LORONG_INFLUX__DATABASE", influx.database)
    lock = sqlite3.connect(db_url.split("///", 1)[1], isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")
    release = threading.Timer(3.0, lambda: lock.execute("ROLLBACK"))
    release.start()
    started = time.monotonic()
    try:
        result = CliRunner().invoke(app, ["run-once", "--now", NOW.isoformat(), "--no-notify"])
    finally:
        release.join()
        lock.close()
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started >= 3.0
    assert "database is locked" in result.stderr and "trying again" in result.stderr
    assert json.loads(result.stdout)["latest_rows"] == 5
