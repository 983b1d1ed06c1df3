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

from firmware_sim.encoders.milesight import FPORT, encode_em310_udl
from firmware_sim.makassar import KECAMATAN

TTN_APP = "lorong-makassar@ttn"


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
            frame = encode_em310_udl(b.distance_mm(), 90)
            body = {
                "end_device_ids": {"device_id": b.device_id.lower(), "dev_eui": b.device_id,
                                   "application_ids": {"application_id": "lorong-makassar"}},
                "received_at": now.isoformat(),
                "uplink_message": {"f_port": FPORT, "f_cnt": b.fcnt,
                                   "frm_payload": base64.b64encode(frame).decode(),
                                   "rx_metadata": [{"gateway_ids": {"gateway_id": "gw-makassar-1"}, "rssi": -97}],
                                   "received_at": now.isoformat()},
            }
            return f"v3/{TTN_APP}/devices/{b.device_id.lower()}/up", json.dumps(body).encode()
        body2 = {"device_id": b.device_id, "time": now.isoformat(), "seq": b.fcnt,
                 "metrics": {"distance": {"value": b.distance_mm(), "unit": "mm"},
                             "batteryLevel": {"value": 88, "unit": "%"}}}
        return f"lorong/v1/{b.device_id}/up", json.dumps(body2).encode()

    def _air_uplink(self, s: SimStation, now: datetime) -> tuple[str, bytes]:
        s.seq += 1
        pm25 = s.base_pm25 * (1 + self._rnd.uniform(-0.15, 0.15))
        if s.spike_left_s > 0:
            pm25 += self._rnd.uniform(60, 120)
        body = {"device_id": s.device_id, "time": now.isoformat(), "seq": s.seq,
                "metrics": {"pm25": {"value": round(pm25, 1), "unit": "ug/m3"},
                            "pm10": {"value": round(pm25 * 1.6, 1), "unit": "ug/m3"},
                            "temperature": {"value": round(self._rnd.uniform(26, 33), 1), "unit": "degC"},
                            "relativeHumidity": {"value": round(self._rnd.uniform(65, 90), 1), "unit": "%"}}}
        return f"lorong/v1/{s.device_id}/up", json.dumps(body).encode()

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
