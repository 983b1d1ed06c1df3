"""Per-device credentials on a real broker: a device registered over its serial console publishes
with its own password and its reading reaches InfluxDB through the ingester (which logs in with its
service account); publishing on another device's topic, or with a retired device's credentials,
is refused by Mosquitto and nothing is stored.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.orm import Session, sessionmaker

from devices.registry import RegistryLookup
from firmware_sim.serial_device import SerialDevice
from ingest.deadletter import DeadLetterStore
from ingest.service import Ingester
from lorong.core.settings import MqttSettings, Settings
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from tests.devices.conftest import RunCli
from tests.devices.test_register import DETAILS
from tests.support import wait_for

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 135  # MQTT 5.0 section 2.4, reason code 0x87
SUCCESS = 0
NO_MATCHING_SUBSCRIBERS = 16  # 0x10: accepted, nobody subscribed


class DeviceClient:
    """A bare MQTT 5 client that reports the broker's reason codes (CONNACK and PUBACK)."""

    def __init__(self, port: int, username: str | None, password: str | None, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: ReasonCode | None = None
        self._connected = threading.Event()
        self._acks: dict[int, ReasonCode] = {}
        self._acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            pytest.fail("no CONNACK within 10 s")

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if self.connack is None:
            self.connack = reason
        self._connected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._acked:
            self._acks[mid] = reason
            self._acked.notify_all()

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        with self._acked:
            if not self._acked.wait_for(lambda: info.mid in self._acks, timeout=10):
                pytest.fail(f"no PUBACK for {topic} within 10 s")
            return self._acks[info.mid].value

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def connected(port: int, username: str | None, password: str | None, client_id: str) -> Iterator[DeviceClient]:
    client = DeviceClient(port, username, password, client_id)
    try:
        yield client
    finally:
        client.close()


def connack(port: int, username: str | None, password: str | None) -> int:
    """The CONNACK reason code the broker gives these credentials."""
    with connected(port, username, password, f"probe-{time.monotonic_ns()}") as c:
        assert c.connack is not None
        return c.connack.value


def uplink(device_id: str, distance_mm: float) -> bytes:
    return json.dumps({"device_id": device_id, "metrics": {"distance": {"value": distance_mm, "unit": "mm"}}}).encode()


def stored(influx: InfluxClient) -> list[tuple[str, float]]:
    rows = influx.records('SELECT "distance" FROM "waste_container" GROUP BY "device_id"')
    return sorted((r["device_id"], r["distance"]) for r in rows)


def test_device_credentials_on_the_broker(run_cli: RunCli, sessions: sessionmaker[Session], influx: InfluxClient,
                                         make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    port = stack.free_port()
    saved: dict[str, dict[str, str]] = {}
    for dev_id in ("MKS-BIN-0101", "MKS-BIN-0102"):
        with SerialDevice(device_id=dev_id) as dev:
            result = run_cli("register", "--port", dev.port, "--no-input", *DETAILS, "--broker-host", "127.0.0.1",
                             "--broker-port", str(port), "--timeout", "2")
            assert result.exit_code == 0, result.output
            assert dev.saved is not None
            saved[dev_id] = dev.saved
    assert run_cli("credentials", "export").exit_code == 0
    mq = tmp_path / "var" / "mosquitto"
    env = dict(line.split("=", 1) for line in (mq / "ingest.env").read_text().splitlines())
    svc_user, svc_pw = env["LORONG_MQTT__USERNAME"], env["LORONG_MQTT__PASSWORD"]
    a, b = saved["MKS-BIN-0101"], saved["MKS-BIN-0102"]
    assert a["topic"] == "lorong/v1/MKS-BIN-0101/up" and int(a["broker_port"]) == port

    broker = stack.start_mosquitto(tmp_path / "broker", port, mq / "passwd", mq / "acl")
    settings = make_settings(influx=influx, mqtt=MqttSettings(port=port, username=svc_user, password=svc_pw,
                                                              client_id="lorong-ingest-auth-test"))
    ingester = Ingester(settings, RegistryLookup(sessions), DeadLetterStore(sessions), influx)
    try:
        ingester.start()
        assert ingester.source.subscribed.wait(10), "the ingester's account could not subscribe"

        with connected(port, a["username"], a["password"], "dev-a") as dev_a:
            assert dev_a.connack is not None and dev_a.connack.value == SUCCESS
            assert dev_a.publish(a["topic"], uplink("MKS-BIN-0101", 400.0)) == SUCCESS
            # another device's topic, or any other topic: refused by the broker's ACL
            assert dev_a.publish(b["topic"], uplink("MKS-BIN-0102", 111.0)) == NOT_AUTHORIZED
            assert dev_a.publish("v3/app@ttn/devices/mks-bin-0102/up", b"{}") == NOT_AUTHORIZED
        with connected(port, b["username"], b["password"], "dev-b") as dev_b:
            assert dev_b.publish(b["topic"], uplink("MKS-BIN-0102", 500.0)) == SUCCESS
        # the ingester's account reads, it does not publish
        with connected(port, svc_user, svc_pw, "svc-probe") as svc:
            assert svc.publish(a["topic"], uplink("MKS-BIN-0101", 222.0)) == NOT_AUTHORIZED
        wait_for(lambda: stored(influx) == [("MKS-BIN-0101", 400.0), ("MKS-BIN-0102", 500.0)],
                 what="both readings stored")

        # no anonymous clients, no wrong passwords
        assert connack(port, None, None) == NOT_AUTHORIZED
        assert connack(port, a["username"], b["password"]) == NOT_AUTHORIZED

        # retire B: export, reload the broker, and B's credentials stop working
        assert run_cli("retire", "MKS-BIN-0102").exit_code == 0
        assert run_cli("credentials", "export").exit_code == 0
        assert "MKS-BIN-0102" not in (mq / "passwd").read_text() + (mq / "acl").read_text()
        broker.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: connack(port, b["username"], b["password"]) != SUCCESS,
                 timeout_s=10, what="retired device refused")
        assert connack(port, b["username"], b["password"]) == NOT_AUTHORIZED
        assert connack(port, a["username"], a["password"]) == SUCCESS

        wait_for(lambda: ingester.spool.depth() == 0, what="spool drained")
        assert ingester.stats.received == 2
        assert ingester.dead_letters.count() == 0
        assert stored(influx) == [("MKS-BIN-0101", 400.0), ("MKS-BIN-0102", 500.0)]
    finally:
        ingester.stop()
        broker.stop()


@pytest.mark.parametrize("backend", ["sqlite"])  # the broker part does not depend on the SQL back end
def test_stack_up_auth_and_reload(run_cli: RunCli, cli_env: dict[str, str], tmp_path: Path, backend: str) -> None:
    from lorong.core.errors import ConfigError
    from lorong.core.settings import InfluxSettings
    from lorong.storage.cli import down, reload, up

    port = stack.free_port()
    settings = Settings(var_dir=tmp_path / "var", database_url=cli_env["LORONG_DATABASE_URL"],
                        mqtt=MqttSettings(port=port), influx=InfluxSettings(url=f"http://127.0.0.1:{stack.free_port()}"))
    with pytest.raises(ConfigError, match=r"run `lorong devices credentials export` first"):
        up(settings, auth=True, detach=False)
    assert run_cli("add", "MKS-AIR-01", "--kind", "air").exit_code == 0
    issued = run_cli("credentials", "issue", "MKS-AIR-01")
    password = issued.stdout.strip().rsplit(" ", 1)[-1]
    assert run_cli("credentials", "export").exit_code == 0
    assert not reload(settings)  # nothing runs yet
    services = up(settings, auth=True, detach=False)
    try:
        assert {s.name for s in services} == {"mosquitto", "influxd"}
        assert connack(port, None, None) == NOT_AUTHORIZED
        assert connack(port, "MKS-AIR-01", password) == SUCCESS
        with connected(port, "MKS-AIR-01", password, "air-01") as dev:
            assert dev.publish("lorong/v1/MKS-AIR-01/up", b'{"metrics": {"pm25": 12.5}}') == NO_MATCHING_SUBSCRIBERS
            assert dev.publish("lorong/v1/MKS-AIR-02/up", b'{"metrics": {"pm25": 12.5}}') == NOT_AUTHORIZED
        assert run_cli("retire", "MKS-AIR-01").exit_code == 0
        assert run_cli("credentials", "export").exit_code == 0
        assert reload(settings)
        wait_for(lambda: connack(port, "MKS-AIR-01", password) == NOT_AUTHORIZED,
                 timeout_s=10, what="retired device refused")
    finally:
        down(settings)
