"""A retired device and a re-issued password lose their broker access at once (issue 14 item 14).

Retiring a device revoked its credentials in the registry only: the broker kept the old password and
ACL files until someone ran ``lorong devices credentials export`` and ``lorong stack reload`` by hand,
and the ingester kept accepting the device until its next registry reload (60 s). Readings sent 50 s
after retirement were stored. Now ``devices retire`` and ``devices credentials issue`` rewrite the
broker's files and reload the broker that ``lorong stack up --auth`` started (Mosquitto then drops a
client whose password no longer holds, mosquitto(8) SIGHUP), and the ingester notices a retirement
within a second. Real Mosquitto, influxd and SQLite.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from devices.registry import retire_device
from ingest.deadletter import DeadLetterStore
from lorong.core.settings import InfluxSettings, MqttSettings, Settings
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from tests.devices.conftest import RunCli
from tests.devices.test_broker_auth import NOT_AUTHORIZED, SUCCESS, DeviceClient, connack
from tests.ingest.test_delivery_support import count_stored, register_fleet, settings_for, start_ingester, uplinks
from tests.support import wait_for

pytestmark = pytest.mark.integration


def _password(issued_output: str) -> str:
    """The password in ``lorong devices credentials issue`` output (its last word)."""
    return issued_output.strip().rsplit(" ", 1)[-1]


@pytest.mark.parametrize("backend", ["sqlite"])  # the broker part does not depend on the SQL back end
def test_retire_and_reissue_revoke_broker_access_at_once(run_cli: RunCli, cli_env: dict[str, str],
                                                         tmp_path: Path, backend: str) -> None:
    from lorong.storage.cli import down, up

    port = stack.free_port()
    settings = Settings(var_dir=tmp_path / "var", database_url=cli_env["LORONG_DATABASE_URL"],
                        mqtt=MqttSettings(port=port), influx=InfluxSettings(url=f"http://127.0.0.1:{stack.free_port()}"))
    devices = ("MKS-AIR-01", "MKS-AIR-02", "MKS-AIR-03")
    for device in devices:
        assert run_cli("add", device, "--kind", "air").exit_code == 0
    old = {d: _password(run_cli("credentials", "issue", d).stdout) for d in devices}
    assert run_cli("credentials", "export").exit_code == 0
    up(settings, auth=True, detach=False)
    try:
        dev = DeviceClient(port, "MKS-AIR-01", old["MKS-AIR-01"], "air-01")
        dropped = threading.Event()
        dev.client.on_disconnect = lambda *_a: dropped.set()
        dev.client.reconnect_delay_set(30, 30)  # a reconnect would hide the drop
        try:
            assert dev.connack is not None and dev.connack.value == SUCCESS
            assert dev.publish("lorong/v1/MKS-AIR-01/up", b'{"metrics": {"pm25": 12.5}}') != NOT_AUTHORIZED

            retired = run_cli("retire", "MKS-AIR-01")  # nothing else: no export, no reload by hand
            assert retired.exit_code == 0, retired.output
            # the connected device is dropped and cannot come back
            assert dropped.wait(5), "the retired device's connection stayed open"
            assert connack(port, "MKS-AIR-01", old["MKS-AIR-01"]) == NOT_AUTHORIZED
            assert "broker" in retired.stdout and "reloaded" in retired.stdout, retired.stdout
        finally:
            dev.close()

        # a re-issued password: the old one is refused at once, the new one works
        assert connack(port, "MKS-AIR-02", old["MKS-AIR-02"]) == SUCCESS
        issued = run_cli("credentials", "issue", "MKS-AIR-02")
        assert issued.exit_code == 0, issued.output
        new = _password(issued.stdout)
        wait_for(lambda: connack(port, "MKS-AIR-02", old["MKS-AIR-02"]) == NOT_AUTHORIZED, timeout_s=5,
                 what="the old password refused")
        assert "reloaded" in issued.stdout, issued.stdout
        assert connack(port, "MKS-AIR-02", new) == SUCCESS

        # retired by a status change (`devices update --status retired`) as well as by `retire`
        dev = DeviceClient(port, "MKS-AIR-03", old["MKS-AIR-03"], "air-03")
        dropped = threading.Event()
        dev.client.on_disconnect = lambda *_a: dropped.set()
        dev.client.reconnect_delay_set(30, 30)
        try:
            assert dev.connack is not None and dev.connack.value == SUCCESS
            updated = run_cli("update", "MKS-AIR-03", "--status", "retired")
            assert updated.exit_code == 0, updated.output
            assert dropped.wait(5), "the device retired by a status change kept its connection"
            assert connack(port, "MKS-AIR-03", old["MKS-AIR-03"]) == NOT_AUTHORIZED
            assert "reloaded" in updated.stdout, updated.stdout
        finally:
            dev.close()
    finally:
        down(settings)


def test_retire_without_exported_broker_files_writes_none(run_cli: RunCli, tmp_path: Path) -> None:
    """A broker without Lorong's password file (``stack up`` without ``--auth``): retiring creates
    none (that would lock every device out of a broker started later with ``--auth`` by surprise)."""
    assert run_cli("add", "MKS-AIR-03", "--kind", "air").exit_code == 0
    assert run_cli("credentials", "issue", "MKS-AIR-03").exit_code == 0
    retired = run_cli("retire", "MKS-AIR-03")
    assert retired.exit_code == 0, retired.output
    assert not (tmp_path / "var" / "mosquitto" / "passwd").exists()
    assert "credentials export" in retired.stdout  # says how to give the broker the files


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    """A broker of this test only, without accounts: the ingester is then the only gate."""
    svc = stack.start_mosquitto(tmp_path / "mosquitto", stack.free_port())
    yield svc
    svc.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_ingester_refuses_a_retired_device_within_a_second(tmp_path: Path, db_url: str,
                                                           sessions: sessionmaker[Session], influx: InfluxClient,
                                                           broker: stack.Service) -> None:
    register_fleet(sessions, ("RTD-00", "RTD-01"))
    ing = start_ingester(settings_for(tmp_path, db_url, broker.port, influx, "rtd-ing"), sessions, influx)
    sent = uplinks(4, devices=("RTD-00", "RTD-01"))
    publisher = DeviceClient(broker.port, None, None, "rtd-pub")
    try:
        for u in sent[:2]:
            publisher.publish(u.topic, u.payload)
        wait_for(lambda: count_stored(influx, "RTD-") == 2, 20, "both devices' first readings stored")
        with sessions.begin() as s:
            retire_device(s, "RTD-00", datetime.now(UTC))
        time.sleep(1.1)
        for u in sent[2:]:
            publisher.publish(u.topic, u.payload)
        letters = DeadLetterStore(sessions)
        wait_for(lambda: count_stored(influx, "RTD-01") == 2 and letters.count() >= 1, 20,
                 "the working device's second reading stored, the retired one's dead-lettered")
        assert ing.stats.received == 4
        assert count_stored(influx, "RTD-00") == 1  # the retired one: only the reading from before
        assert [(d.reason, d.device_id) for d in letters.list(limit=10)] == [("unknown_device", "RTD-00")]
    finally:
        publisher.close()
        ing.stop()



def test_import_that_retires_a_device_rewrites_the_broker_files(run_cli: RunCli, tmp_path: Path) -> None:
    """``devices import --update`` with ``status`` ``retired`` retires the device as ``retire`` does: its
    line leaves the broker's password and ACL files (it stayed there until an export by hand)."""
    for device in ("MKS-AIR-04", "MKS-AIR-05"):
        assert run_cli("add", device, "--kind", "air").exit_code == 0
        assert run_cli("credentials", "issue", device).exit_code == 0
    assert run_cli("credentials", "export").exit_code == 0
    files = tmp_path / "var" / "mosquitto"
    assert "MKS-AIR-04:" in (files / "passwd").read_text()
    csv_file = tmp_path / "retire.csv"
    csv_file.write_text("id,kind,status\r\nMKS-AIR-04,air,retired\r\n", encoding="utf-8")
    imported = run_cli("import", str(csv_file), "--update")
    assert imported.exit_code == 0, imported.output
    text = (files / "passwd").read_text() + (files / "acl").read_text()
    assert "MKS-AIR-04" not in text and "MKS-AIR-05" in text, text
    assert "rewritten" in imported.stdout, imported.stdout
