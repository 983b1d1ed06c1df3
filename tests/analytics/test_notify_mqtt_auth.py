"""MQTT alert notifications on a broker with passwords and an ACL (``lorong stack up --auth``).

A real Mosquitto 2 reads the password and ACL files; the alert publisher logs in with its own
account. With the ACL granting it ``lorong/alerts/#`` an alert reaches a subscriber allowed to read
``lorong/alerts/#``; with the grant gone, Mosquitto answers the MQTT 5 publish with PUBACK reason
0x87 (Not authorized) and the outbox row stays pending with that reason. (To an MQTT 3.1.1 client
Mosquitto acknowledges a denied publish like any other and drops it, so that row was marked sent.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from analytics import cli as analytics_cli
from analytics.alerts import AlertBook
from analytics.notify import build_outbox
from analytics.notify_mqtt import MqttChannel, MqttNotifier, PublishRefused
from analytics.outbox import Outbox
from devices import cli as devices_cli
from devices.credentials import mosquitto_hash
from devices.registry import DeviceIn, add_device
from lorong.core.settings import InfluxSettings, MqttSettings, Settings
from lorong.storage import stack
from lorong.storage.cli import down, reload, up
from lorong.storage.tables import NotificationOutboxRow as Row
from tests.analytics.test_scenarios import NOW
from tests.support import Subscriber, wait_for

pytestmark = pytest.mark.integration

PUBLISHER, PUBLISHER_PW = "lorong-alerts", "alerts-secret"
READER, READER_PW = "alerts-reader", "reader-secret"


def write_auth_files(mq: Path, publisher_grant: bool) -> tuple[Path, Path]:
    """A password file with the publisher and the reader, and an ACL that lets the reader read
    ``lorong/alerts/#`` and the publisher write it (or, without ``publisher_grant``, nothing)."""
    mq.mkdir(parents=True, exist_ok=True)
    passwd, acl = mq / "passwd", mq / "acl"
    passwd.write_text(f"{PUBLISHER}:{mosquitto_hash(PUBLISHER_PW)}\n{READER}:{mosquitto_hash(READER_PW)}\n")
    grant = "topic write lorong/alerts/#\n" if publisher_grant else ""
    acl.write_text(f"user {READER}\ntopic read lorong/alerts/#\n\nuser {PUBLISHER}\n{grant}")
    return passwd, acl


@pytest.fixture
def denied_broker(tmp_path: Path) -> Iterator[stack.Service]:
    """A broker whose ACL grants the alert publisher nothing."""
    passwd, acl = write_auth_files(tmp_path / "mq", publisher_grant=False)
    svc = stack.start_mosquitto(tmp_path / "broker", stack.free_port(), passwd, acl)
    yield svc
    svc.stop()


def open_alert(sessions: Any, device: str = "A1") -> int:
    """Open one bin_full alert with an ``mqtt`` outbox row; its id."""
    with sessions.begin() as s:
        return AlertBook(s, channels=["mqtt"]).raise_(device, "bin_full", "major", NOW, {"fillingLevel": 0.9},
                                                       "Wajo")[0].id


def mqtt_rows(sessions: Any) -> list[Row]:
    """The ``mqtt`` outbox rows, by id."""
    with sessions() as s:
        return list(s.scalars(select(Row).where(Row.channel == "mqtt").order_by(Row.id)))


def test_publish_denied_by_the_acl_stays_pending_with_the_brokers_reason(sessions: Any,
                                                                         denied_broker: stack.Service) -> None:
    sub = Subscriber(denied_broker.port, READER, READER_PW, mqtt5=True)
    box = Outbox(sessions, {"mqtt": MqttChannel("127.0.0.1", denied_broker.port, PUBLISHER, PUBLISHER_PW,
                                                timeout_s=5.0)})
    try:
        open_alert(sessions)
        report = box.dispatch()
        msgs = sub.settle(1, timeout_s=1.0)
        status = box.status()
    finally:
        box.close()
        sub.close()
    assert report.sent == {} and "Not authorized" in report.deferred["mqtt"]
    (row,) = mqtt_rows(sessions)
    assert (row.sent_at, row.failed_at, row.attempts) == (None, None, 1)
    assert row.last_error is not None and "PUBACK reason 135 (Not authorized)" in row.last_error
    assert msgs == []  # the broker dropped it
    assert [(s.channel, s.pending, s.last_error) for s in status] == [("mqtt", 1, row.last_error)]


def test_stack_up_auth_alert_reaches_the_reader_and_not_without_the_publishers_account(
        sessions: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [n for n in os.environ if n.startswith("LORONG_")]:
        monkeypatch.delenv(name)
    var, port = tmp_path / "var", stack.free_port()
    env = {"LORONG_DATABASE_URL": db_url, "LORONG_VAR_DIR": str(var)}
    exported = CliRunner().invoke(devices_cli.app, ["credentials", "export"], env=env)
    assert exported.exit_code == 0, exported.output
    mq = var / "mosquitto"
    assert "user lorong-alerts\ntopic write lorong/alerts/#\n" in (mq / "acl").read_text()
    assert "user lorong-alerts-reader\ntopic read lorong/alerts/#\n" in (mq / "acl").read_text()
    assert "topic write lorong/alerts/#\ntopic write lorong/+/alerts/#\n" in (mq / "acl").read_text()
    reader = dict(line.split("=", 1) for line in (mq / "alerts-reader.env").read_text().splitlines())
    settings = Settings(var_dir=var, database_url=db_url, mqtt=MqttSettings(port=port),
                        influx=InfluxSettings(url=f"http://127.0.0.1:{stack.free_port()}"))
    services = up(settings, auth=True, detach=False)
    sub = None
    try:
        sub = Subscriber(port, reader["MQTT_USERNAME"], reader["MQTT_PASSWORD"], mqtt5=True)
        assert sub.granted == [1]  # QoS 1 granted: the reader may read lorong/alerts/#
        outbox = build_outbox(settings, sessions)  # logs in as lorong-alerts from alerts.env
        try:
            open_alert(sessions, "A1")
            assert outbox.dispatch().sent == {"mqtt": 1}
        finally:
            outbox.close()
        ((topic, body),) = sub.settle(1)
        assert topic == "lorong/alerts/Wajo/bin_full/A1" and body["alert"]["device_id"] == "A1"
        # a registered device's alert also goes to its city's topic, which the exported ACL grants too
        with sessions.begin() as s:
            add_device(s, DeviceIn(id="MKS-1", kind="bin", depth_mm=1000, kecamatan="Wajo"))
        outbox = build_outbox(settings, sessions)
        try:
            open_alert(sessions, "MKS-1")
            assert outbox.dispatch().sent == {"mqtt": 1}  # PUBACK 0 on lorong/makassar/alerts/... and lorong/alerts/...
        finally:
            outbox.close()
        assert [t for t, _ in sub.settle(2)] == ["lorong/alerts/Wajo/bin_full/A1", "lorong/alerts/Wajo/bin_full/MKS-1"]

        # the publisher's account removed from the password file, the broker reloaded
        passwd = mq / "passwd"
        passwd.write_text("".join(x for x in passwd.read_text().splitlines(keepends=True)
                                  if not x.startswith("lorong-alerts:")))
        assert reload(settings)
        outbox = build_outbox(settings, sessions)
        try:
            wait_for(lambda: _refused(outbox), timeout_s=10, what="the broker refuses the removed account")
            open_alert(sessions, "A2")
            report = outbox.dispatch()
        finally:
            outbox.close()
        assert report.sent == {}
        status = {s.channel: s for s in outbox.status()}["mqtt"]
        assert status.pending == 1 and status.last_error is not None
        assert "refused the alert publisher 'lorong-alerts': CONNACK reason 135 (Not authorized)" in status.last_error
        assert [m["alert"]["device_id"] for _, m in sub.settle(2, timeout_s=0.5)] == ["A1", "MKS-1"]  # A2: nobody
        listed = CliRunner().invoke(analytics_cli.app, ["outbox"], env=env)
        assert listed.exit_code == 0, listed.output
        (row,) = [x for x in listed.output.splitlines() if x.startswith("mqtt ")]
        assert row.split()[1:3] == ["1", "0"] and "CONNACK reason 135 (Not authorized)" in row
    finally:
        if sub is not None:
            sub.close()
        for svc in services:
            svc.stop()
        down(settings)


def _refused(outbox: Outbox) -> bool:
    """Whether the broker now refuses the publisher's connection (a probe that publishes nothing)."""
    channel = outbox.channels["mqtt"]
    assert isinstance(channel, MqttChannel)
    try:
        MqttNotifier(channel.host, channel.port, username=channel._auth[0], password=channel._auth[1],
                     timeout_s=2.0).close()
    except PublishRefused:
        return True
    return False
