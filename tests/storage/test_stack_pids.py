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

from lorong.core.settings import InfluxSettings, MqttSettings, Settings
from lorong.storage import stack
from lorong.storage.cli import down, kept, release, up

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


def _settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path / 'lorong.db'}",
                    mqtt=MqttSettings(port=stack.free_port()),
                    influx=InfluxSettings(url=f"http://127.0.0.1:{stack.free_port()}"))


def test_a_broker_restarted_under_a_demo_is_still_stopped_by_stack_down(tmp_path: Path) -> None:
    """The demo's broker dies and `lorong stack up` starts a new one while the demo runs; when the
    demo stops it releases only what it started (its influxd), and `stack down` stops the new broker
    (the demo's release forgot it: it ran on, orphaned)."""
    settings = _settings(tmp_path)
    demo = up(settings, detach=False)  # what `lorong demo` starts
    restarted: list[stack.Service] = []
    try:
        broker = next(s for s in demo if s.name == "mosquitto")
        broker.kill()
        restarted = up(settings, detach=False)
        assert [s.name for s in restarted] == ["mosquitto"]
        release(settings, demo)  # the demo stops
        assert stack.port_in_use(settings.mqtt.port)  # the new broker is not the demo's to stop
        assert down(settings) == ["mosquitto"]
        assert restarted[0].proc.wait(timeout=10) is not None
    finally:
        for s in demo + restarted:
            s.kill()


def test_stack_down_finds_the_services_when_the_pid_file_is_gone(tmp_path: Path) -> None:
    """A lost or overwritten var/run/stack.json does not orphan the services: `stack down` finds
    the mosquitto and influxd running on this folder's files (command line names var/...)."""
    settings = _settings(tmp_path)
    started = up(settings, detach=False)
    try:
        (tmp_path / "var" / "run" / "stack.json").unlink()
        assert sorted(down(settings)) == ["influxd", "mosquitto"]
        assert all(s.proc.wait(timeout=10) is not None for s in started)
    finally:
        for s in started:
            s.kill()


def test_a_failed_start_leaves_no_broker_behind(tmp_path: Path) -> None:
    """Tried as a new user: with InfluxDB's port held by another program, ``lorong stack up`` said
    ``error: port 8086 is already in use`` and ``stopped.``, yet the Mosquitto it had just started
    kept running, orphaned (``stack status``: ``running=False answers=True``) until ``stack down``."""
    import socket

    from lorong.core.errors import ConfigError

    settings = _settings(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", int(settings.influx.url.rsplit(":", 1)[1])))
        holder.listen()
        with pytest.raises(ConfigError, match="already in use"):
            up(settings, detach=True)
    assert not stack.port_in_use(settings.mqtt.port), "the broker this start began is still running"
    assert down(settings) == []


def test_a_demo_on_a_running_stack_says_the_stack_stays_up(tmp_path: Path) -> None:
    """Tried as a new user: `lorong demo` after `lorong stack up` stopped with ``stopped.`` and said
    nothing of the broker and InfluxDB it had found running and left up. What an up call found
    running is named, with how to stop it."""
    settings = _settings(tmp_path)
    first = up(settings, detach=False)  # `lorong stack up`
    try:
        again = up(settings, detach=False)  # the demo's
        assert again == []
        assert kept(again) == ("mosquitto and influxd were running before (`lorong stack up`): they stay up "
                               "after this stops; `lorong stack down` stops them")
        assert kept(first) is None
        broker = next(s for s in first if s.name == "mosquitto")
        assert kept([broker]) == ("influxd was running before (`lorong stack up`): it stays up after this stops; "
                                  "`lorong stack down` stops it")
    finally:
        for s in first:
            s.kill()
