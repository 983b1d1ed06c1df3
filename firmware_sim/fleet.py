"""A simulated Makassar fleet: bins that fill and get emptied, air stations with PM2.5 spikes.

Pure model (no I/O): :meth:`Fleet.step` advances simulated time and returns the uplinks due,
as ``(topic, payload)`` pairs in the gateway formats Lorong ingests. Device times are the real
``now`` given to :meth:`step`, so a fast simulation never sends times from the future.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from firmware_sim.encoders.milesight import FPORT, encode_em310_udl
from firmware_sim.makassar import KECAMATAN

TTN_APP = "lorong-makassar@ttn"


def ttn_v3_uplink(dev_eui: str, fcnt: int, frame: bytes, received_at: datetime | str,
                  gateways: tuple[tuple[str, int], ...] = (("gw-makassar-1", -97),),
                  app: str = TTN_APP, fport: int = FPORT) -> tuple[str, bytes]:
    """A The Things Stack v3 ``ApplicationUp`` uplink as the ``ttn-v3`` format parses it.

    Args:
        dev_eui: the device's DevEUI (16 hex digits); the TTS device id is its lower-case form.
        fcnt: LoRaWAN frame counter.
        frame: FRMPayload bytes (sent base64 in ``frm_payload``).
        received_at: network-server receive time (tz-aware datetime, or its ISO-8601 text).
        gateways: ``(gateway id, RSSI dBm)`` per gateway that heard it (``rx_metadata``).
        app: ``<application id>@<tenant>`` of the topic.
        fport: LoRaWAN FPort.

    Returns:
        ``(topic, payload)``: ``v3/<app>/devices/<id>/up`` and the UTF-8 JSON body.
    """
    at = received_at if isinstance(received_at, str) else received_at.isoformat()
    dev_id = dev_eui.lower()
    body = {
        "end_device_ids": {"device_id": dev_id, "dev_eui": dev_eui,
                           "application_ids": {"application_id": app.split("@")[0]}},
        "received_at": at,
        "uplink_message": {"f_port": fport, "f_cnt": fcnt,
                           "frm_payload": base64.b64encode(frame).decode(),
                           "rx_metadata": [{"gateway_ids": {"gateway_id": g}, "rssi": rssi} for g, rssi in gateways],
                           "received_at": at},
    }
    return f"v3/{app}/devices/{dev_id}/up", json.dumps(body).encode()


def lorong_json_uplink(device_id: str, time: str, seq: int, metrics: dict[str, Any]) -> tuple[str, bytes]:
    """A native ``lorong-json`` uplink.

    Args:
        device_id: the sender's serial number (also in the topic).
        time: device time, ISO-8601 with offset.
        seq: uplink counter (deduplication key).
        metrics: metric name -> ``{"value": number, "unit": str}`` or a bare number (canonical unit).

    Returns:
        ``(topic, payload)``: ``lorong/v1/<id>/up`` and the UTF-8 JSON body.
    """
    body = {"device_id": device_id, "time": time, "seq": seq, "metrics": metrics}
    return f"lorong/v1/{device_id}/up", json.dumps(body).encode()


@dataclass
class SimBin:
    """One bin: ``fill`` 0..1, ``rate`` fill per simulated hour; LoRaWAN ones speak TTN v3."""

    device_id: str
    kecamatan: str
    lat: float
    lon: float
    depth_mm: float
    blind_zone_mm: float
    fill: float
    rate: float
    lorawan: bool
    interval_s: float = 600.0
    due_s: float = 0.0
    fcnt: int = 0

    def distance_mm(self) -> int:
        """What the ultrasonic sensor reads for the current fill."""
        return max(1, round(self.depth_mm - self.fill * (self.depth_mm - self.blind_zone_mm)))


@dataclass
class SimStation:
    """One air station: PM2.5 baseline (ug/m3) with occasional spikes (open burning)."""

    device_id: str
    kecamatan: str
    lat: float
    lon: float
    base_pm25: float
    spike_left_s: float = 0.0
    interval_s: float = 300.0
    due_s: float = 0.0
    seq: int = 0


@dataclass
class Fleet:
    """The whole simulated fleet.

    Args:
        bins: number of bins (every other one LoRaWAN EM310-UDL, the rest native JSON).
        air: number of air stations.
        seed: random seed (same seed, same fleet).
        spike_prob: chance per station report that a PM2.5 spike starts.
    """

    bins: int = 20
    air: int = 3
    seed: int = 7
    spike_prob: float = 0.02
    sim_s: float = 0.0
    bin_list: list[SimBin] = field(default_factory=list)
    stations: list[SimStation] = field(default_factory=list)

    def __post_init__(self) -> None:
        rnd = random.Random(self.seed)
        names = list(KECAMATAN)
        for i in range(self.bins):
            kec = names[i % len(names)]
            lat, lon = KECAMATAN[kec]
            lorawan = i % 2 == 0
            dev = f"24E1247{i:09X}" if lorawan else f"MKS-BIN-{i:04d}"
            self.bin_list.append(SimBin(
                dev, kec, lat + rnd.uniform(-0.008, 0.008), lon + rnd.uniform(-0.008, 0.008),
                depth_mm=rnd.choice([1000.0, 1100.0, 1200.0]), blind_zone_mm=150.0,
                fill=rnd.uniform(0.05, 0.9), rate=rnd.uniform(0.01, 0.06), lorawan=lorawan,
                due_s=rnd.uniform(0, 30)))
        for j in range(self.air):
            kec = names[(j * 4) % len(names)]
            lat, lon = KECAMATAN[kec]
            self.stations.append(SimStation(f"MKS-AIR-{j:02d}", kec, lat + 0.002, lon - 0.002,
                                            base_pm25=rnd.uniform(12, 30), due_s=rnd.uniform(0, 10)))
        self._rnd = rnd

    def step(self, dt_s: float, now: datetime) -> list[tuple[str, bytes]]:
        """Advance ``dt_s`` simulated seconds; return the uplinks due, stamped ``now``."""
        self.sim_s += dt_s
        out: list[tuple[str, bytes]] = []
        for b in self.bin_list:
            b.fill = min(1.0, b.fill + b.rate * dt_s / 3600.0)
            if b.fill >= 0.97 and self._rnd.random() < 0.2 * dt_s / 600:
                b.fill = self._rnd.uniform(0.0, 0.05)  # emptied by a crew
            if self.sim_s >= b.due_s:
                b.due_s = self.sim_s + b.interval_s
                out.append(self._bin_uplink(b, now))
        for s in self.stations:
            if s.spike_left_s > 0:
                s.spike_left_s -= dt_s
            if self.sim_s >= s.due_s:
                s.due_s = self.sim_s + s.interval_s
                if s.spike_left_s <= 0 and self._rnd.random() < self.spike_prob:
                    s.spike_left_s = 3 * 3600.0
                out.append(self._air_uplink(s, now))
        return out

    def _bin_uplink(self, b: SimBin, now: datetime) -> tuple[str, bytes]:
        b.fcnt += 1
        if b.lorawan:
            return ttn_v3_uplink(b.device_id, b.fcnt, encode_em310_udl(b.distance_mm(), 90), now)
        return lorong_json_uplink(b.device_id, now.isoformat(), b.fcnt,
                                  {"distance": {"value": b.distance_mm(), "unit": "mm"},
                                   "batteryLevel": {"value": 88, "unit": "%"}})

    def _air_uplink(self, s: SimStation, now: datetime) -> tuple[str, bytes]:
        s.seq += 1
        pm25 = s.base_pm25 * (1 + self._rnd.uniform(-0.15, 0.15))
        if s.spike_left_s > 0:
            pm25 += self._rnd.uniform(60, 120)
        metrics: dict[str, Any] = {
            "pm25": {"value": round(pm25, 1), "unit": "ug/m3"},
            "pm10": {"value": round(pm25 * 1.6, 1), "unit": "ug/m3"},
            "temperature": {"value": round(self._rnd.uniform(26, 33), 1), "unit": "degC"},
            "relativeHumidity": {"value": round(self._rnd.uniform(65, 90), 1), "unit": "%"}}
        return lorong_json_uplink(s.device_id, now.isoformat(), s.seq, metrics)

    def registry_rows(self) -> list[dict[str, object]]:
        """The fleet as registry rows (fields of :class:`devices.registry.DeviceIn`)."""
        rows: list[dict[str, object]] = [
            {"id": b.device_id, "kind": "bin", "model": "EM310-UDL" if b.lorawan else "LRG-US1",
             "codec": "milesight-em310-udl" if b.lorawan else None, "lat": round(b.lat, 6), "lon": round(b.lon, 6),
             "kecamatan": b.kecamatan, "depth_mm": b.depth_mm, "blind_zone_mm": b.blind_zone_mm,
             "capacity_l": 660.0, "waste_kind": "campuran", "report_interval_s": int(b.interval_s)}
            for b in self.bin_list
        ]
        rows += [{"id": s.device_id, "kind": "air", "model": "LRG-PM1", "lat": round(s.lat, 6),
                  "lon": round(s.lon, 6), "kecamatan": s.kecamatan, "report_interval_s": int(s.interval_s)}
                 for s in self.stations]
        return rows
