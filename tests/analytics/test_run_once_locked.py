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
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from typer.testing import CliRunner

from analytics.cli import app, is_locked
from devices.registry import DeviceIn, add_device
from lorong.core.errors import DatabaseUnavailable
from lorong.storage.db import make_engine, session_factory, unavailable
from lorong.storage.influx import InfluxClient
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


def test_a_locked_database_is_told_by_a_field_not_by_the_message(db_url: str, sessions: Any, tmp_path: Any) -> None:
    """``DatabaseUnavailable.locked`` says "another process holds the write lock": set from the
    driver's error where it is translated (:func:`lorong.storage.db.unavailable`), read by the retry
    (:func:`analytics.cli.is_locked`) instead of matching the message's words."""
    lock = sqlite3.connect(db_url.split("///", 1)[1], isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        busy_db = session_factory(make_engine(db_url + "?timeout=0.1"))
        with pytest.raises(OperationalError) as busy, busy_db.begin() as s:
            add_device(s, DeviceIn(id="B1", kind="bin", depth_mm=1000))
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    locked = unavailable(busy.value)
    assert locked.locked is True and is_locked(locked)
    (tmp_path / "x.db").write_bytes(b"not a database, " * 100)
    broken = session_factory(make_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    with pytest.raises(DBAPIError) as gone, broken.begin() as s:  # not a lock: a file that is no database
        s.execute(text("SELECT 1"))
    down = unavailable(gone.value)
    assert down.locked is False and not is_locked(down)
    assert not is_locked(DatabaseUnavailable("the database is not answering (database is locked)"))  # words alone
