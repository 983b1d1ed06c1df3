"""End to end on real services: MQTT (mosquitto) -> ingester -> InfluxDB -> analytics -> HTTP API.

The LoRaWAN uplinks are the real EM310-UDL vector of tests/data/lorawan_vectors.json wrapped in
The Things Stack v3 envelopes; the rest are native JSON uplinks.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from analytics.jobs import run_once
from api.auth import create_token
from api.main import create_app
from devices.registry import DeviceIn, RegistryLookup, add_device
from firmware_sim.publisher import Publisher
from ingest.deadletter import DeadLetterStore
from ingest.service import Ingester
from lorong.core.settings import Settings
from lorong.storage import stack
from tests.conftest import DATA
from tests.support import wait_for

pytestmark = pytest.mark.integration

VECTORS = json.loads((DATA / "lorawan_vectors.json").read_text())
EM310 = [v for v in VECTORS if v["device"] == "EM310-UDL"]

# (DevEUI, depth_mm, blind_zone_mm) for the LoRaWAN bins
LORA_BINS = [("24E124713B0000A1", 2500.0, 200.0), ("24E124713B0000A2", 2200.0, 200.0)]


def ttn_envelope(dev_eui: str, fport: int, payload_hex: str, fcnt: int, received_at: str) -> bytes:
    """A The Things Stack v3 uplink message carrying raw bytes only (no decoded_payload)."""
    return json.dumps({
        "end_device_ids": {"device_id": dev_eui.lower(), "dev_eui": dev_eui,
                           "application_ids": {"application_id": "lorong-test"}},
        "received_at": received_at,
        "uplink_message": {"f_port": fport, "f_cnt": fcnt,
                           "frm_payload": base64.b64encode(bytes.fromhex(payload_hex)).decode(),
                           "rx_metadata": [{"gateway_ids": {"gateway_id": "gw1"}, "rssi": -101}],
                           "received_at": received_at},
    }).encode()


def native(device_id: str, when: str, seq: int, **metrics: tuple[float, str]) -> tuple[str, bytes]:
    """A native lorong-json uplink."""
    body = {"device_id": device_id, "time": when, "seq": seq,
            "metrics": {k: {"value": v, "unit": u} for k, (v, u) in metrics.items()}}
    return f"lorong/v1/{device_id}/up", json.dumps(body).encode()


@pytest.fixture
def api_url(make_settings: Any, influx: Any, mosquitto: stack.Service) -> Iterator[str]:
    """The real API served by uvicorn on a free loopback port."""
    settings = make_settings(mqtt_port=mosquitto.port, influx=influx)
    port = stack.free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    stack.wait_for_port(port, 10)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_vertical_slice(make_settings: Any, mosquitto: stack.Service, influx: Any, sessions: Any,
                        api_url: str) -> None:
    assert EM310, "the EM310-UDL vectors must be in tests/data"
    # one uplink per device: open alerts on a single reading (the default debounce wants two)
    settings: Settings = make_settings(mqtt_port=mosquitto.port, influx=influx, analytics={"debounce_readings": 1})
    with sessions.begin() as s:
        for dev_eui, depth, blind in LORA_BINS:
            add_device(s, DeviceIn(id=dev_eui, kind="bin", model="EM310-UDL", codec="milesight-em310-udl",
                                   kecamatan="Tallo", depth_mm=depth, blind_zone_mm=blind, lat=-5.11, lon=119.44))
        for dev, kec in (("MKS-BIN-0001", "Wajo"), ("MKS-BIN-0002", "Mariso"), ("MKS-BIN-0003", "Wajo")):
            add_device(s, DeviceIn(id=dev, kind="bin", kecamatan=kec, depth_mm=1000, blind_zone_mm=150))
        for dev in ("MKS-AIR-01", "MKS-AIR-02"):
            add_device(s, DeviceIn(id=dev, kind="air", kecamatan="Panakkukang"))

    dead = DeadLetterStore(sessions)
    ingester = Ingester(settings, RegistryLookup(sessions), dead, influx)
    ingester.start()
    assert ingester.source.subscribed.wait(10)
    pub = Publisher("127.0.0.1", mosquitto.port, client_id="test-gateway")
    now = time.time()

    def iso(offset_s: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now + offset_s))

    messages: list[tuple[str, bytes]] = []
    fcnt = 0
    for dev_eui, _, _ in LORA_BINS:
        for v in EM310:
            fcnt += 1
            messages.append((f"v3/lorong-test@ttn/devices/{dev_eui.lower()}/up",
                             ttn_envelope(dev_eui, v["fport"], v["payload_hex"], fcnt, iso(-60))))
    messages += [
        native("MKS-BIN-0001", iso(-30), 1, distance=(200, "mm"), batteryLevel=(81, "%")),    # 800/850
        native("MKS-BIN-0002", iso(-30), 1, distance=(100, "mm")),                             # blind zone: full
        native("MKS-BIN-0003", iso(-30), 1, distance=(57.5, "cm")),                            # 425/850
        native("MKS-AIR-01", iso(-1200), 1, pm25=(80.0, "ug/m3")),
        native("MKS-AIR-01", iso(-600), 2, pm25=(70.0, "ug/m3")),
        native("MKS-AIR-02", iso(-600), 1, pm25=(20.0, "ug/m3")),
    ]
    bad = [
        ("lorong/v1/NOT-REGISTERED/up", native("NOT-REGISTERED", iso(0), 1, pm25=(1.0, "ug/m3"))[1]),
        ("lorong/v1/MKS-AIR-01/up", b"{not json"),
        (f"v3/lorong-test@ttn/devices/{LORA_BINS[0][0].lower()}/up",
         ttn_envelope(LORA_BINS[0][0], 10, EM310[0]["payload_hex"], 999, iso(0))),
    ]
    pub.publish_many(bad + messages)
    # the same LoRaWAN frame heard again (gateway duplicate) must be stored once
    pub.publish_many(messages[:1])
    pub.close()

    wait_for(lambda: ingester.stats.received >= len(messages) + len(bad) + 1)
    wait_for(lambda: ingester.spool.depth() == 0 and ingester.stats.stored_points >= len(messages))
    ingester.stop()

    assert ingester.stats.duplicates == 1
    reasons = sorted(d.reason for d in dead.list())
    assert reasons == ["bad_json", "unknown_device", "unknown_fport"]

    first = run_once(sessions, influx, settings.analytics)
    second = run_once(sessions, influx, settings.analytics)
    # the EM310-UDL vector carries the tilt flag (position abnormal)
    assert first.opened == {"bin_full": 2, "pm25_high": 1, "tilt": 2}
    assert second.opened == {} and second.extended == {"bin_full": 2, "pm25_high": 1, "tilt": 2}

    with sessions.begin() as s:
        token = create_token(s, "e2e", "officer")[1]
    officer = {"Authorization": f"Bearer {token}"}
    bins = httpx.get(f"{api_url}/bins", headers=officer).json()
    levels = {b["id"]: b["fillingLevel"] for b in bins}
    dist = EM310[0]["expected"]["distance"]
    assert dist == 2116
    # shown to 1 mm of the bin (issue 14 item 27)
    assert levels["24E124713B0000A1"] == round((2500 - dist) / (2500 - 200), 3)
    assert levels["24E124713B0000A2"] == round((2200 - dist) / (2200 - 200), 3)
    assert levels["MKS-BIN-0001"] == round(800 / 850, 3)
    assert levels["MKS-BIN-0002"] == 1.0
    assert levels["MKS-BIN-0003"] == round(425 / 850, 3)
    assert [b["id"] for b in bins] == ["MKS-BIN-0002", "MKS-BIN-0001", "MKS-BIN-0003",
                                       "24E124713B0000A1", "24E124713B0000A2"]
    assert bins[0]["dateObserved"].endswith(("Z", "+00:00"))
    batt = {b["id"]: b["batteryLevel"] for b in bins}
    assert batt["24E124713B0000A1"] == pytest.approx(EM310[0]["expected"]["battery"] / 100)

    alerts = httpx.get(f"{api_url}/alerts", headers=officer).json()
    got = sorted((a["device_id"], a["type"], a["severity"], a["count"]) for a in alerts)
    assert got == [("24E124713B0000A1", "tilt", "major", 2), ("24E124713B0000A2", "tilt", "major", 2),
                   ("MKS-AIR-01", "pm25_high", "major", 2),
                   ("MKS-BIN-0001", "bin_full", "major", 2),
                   ("MKS-BIN-0002", "bin_full", "critical", 2)]
    pm = next(a for a in alerts if a["type"] == "pm25_high")
    assert pm["details"]["pm25_1h_mean"] == 75.0

    health = httpx.get(f"{api_url}/health").json()
    assert health["status"] == "ok", health
    devices = httpx.get(f"{api_url}/devices", headers=officer).json()
    assert len(devices) == 7
