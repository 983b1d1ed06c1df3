"""``lorong stack`` signals only the processes it started (issue 14, item 9).

A stale ``var/run/stack.json`` whose PIDs now belong to other processes (after a reboot, PIDs are
reused) must neither make ``stack up`` skip starting the broker nor make ``stack down`` kill them.
Real mosquitto and influxd; the "other processes" are ``sleep`` children of this test.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import InfluxSettings, MqttSettings, Settings
from storage import stack
from storage.cli import down, up

pytestmark = pytest.mark.integration


@pytest.fixture
def strangers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two processes Lorong did not start."""
    procs = [subprocess.Popen(["sleep", "120"]) for _ in range(2)]
    yield procs
    for p in procs:
        p.kill()
        p.wait(timeout=10)


def test_stale_pid_file_neither_skips_nor_kills(tmp_path: Path, strangers: list[subprocess.Popen[bytes]]) -> None:
    settings = Settings(var_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path / 'lorong.db'}",
                        mqtt=MqttSettings(port=stack.free_port()),
                        influx=InfluxSettings(url=f"http://127.0.0.1:{stack.free_port()}"))
    pidfile = tmp_path / "var" / "run" / "stack.json"
    pidfile.parent.mkdir(parents=True)
    pidfile.write_text(json.dumps({"mosquitto": strangers[0].pid, "influxd": strangers[1].pid}))

    assert down(settings) == []  # nothing Lorong started runs
    assert all(p.poll() is None for p in strangers), "stack down killed a process it did not start"

    pidfile.write_text(json.dumps({"mosquitto": strangers[0].pid, "influxd": strangers[1].pid}))
    started = up(settings, detach=False)
    try:
        assert sorted(s.name for s in started) == ["influxd", "mosquitto"]
        assert stack.port_in_use(settings.mqtt.port)
    finally:
        stopped = down(settings)
    assert sorted(stopped) == ["influxd", "mosquitto"]
    assert all(p.poll() is None for p in strangers)
    assert all(s.proc.wait(timeout=10) is not None for s in started)
