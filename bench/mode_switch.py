"""How long switching from one ingester to ``--workers 2`` takes with a full queue.

Starts its own Mosquitto and InfluxDB (lorong.storage.stack, temporary directory) and a SQLite registry
with 8 air stations; runs one ingester (in process) once so that its session exists, stops it,
publishes N time-less ``lorong-json`` uplinks at QoS 1 (they queue in that session only), then
times :func:`ingest.handover.hand_over` to two workers: the old session emptied into the spool and
acknowledged, the marker, the session ended, the spool drained into InfluxDB. It prints the time,
the rate, and whether InfluxDB holds exactly N points.

Usage::

    .venv/bin/python bench/mode_switch.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from devices.registry import DeviceIn, RegistryLookup, add_device
from firmware_sim.publisher import Publisher
from ingest.deadletter import DeadLetterStore
from ingest.handover import RetiringIngester, hand_over
from ingest.service import Ingester
from ingest.workers import worker_mqtt
from lorong.core.model import DeviceKind
from lorong.core.settings import InfluxSettings, IngestSettings, MqttSettings, Settings
from lorong.storage import stack
from lorong.storage.db import make_engine, migrate, session_factory
from lorong.storage.influx import InfluxClient

DEVICES = [f"MSW-{i:02d}" for i in range(8)]


def main() -> None:
    """Run the measurement and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    n = ap.parse_args().messages
    with tempfile.TemporaryDirectory(prefix="lorong-switch-") as tmp:
        root = Path(tmp)
        broker = stack.start_mosquitto(root / "mosquitto", stack.free_port())
        influxd = stack.start_influxd(root / "influxd", stack.free_port())
        try:
            url = f"sqlite:///{root / 'lorong.db'}"
            migrate(url)
            sessions = session_factory(make_engine(url))
            with sessions.begin() as s:
                for d in DEVICES:
                    add_device(s, DeviceIn(id=d, kind=DeviceKind.AIR, kecamatan="Tallo"))
            influx = InfluxClient(f"http://127.0.0.1:{influxd.port}", "bench")
            influx.create_database()
            settings = Settings.model_validate({
                "var_dir": root / "var", "database_url": url,
                "mqtt": MqttSettings(port=broker.port, client_id="bench"),
                "influx": InfluxSettings(url=influx.url, database=influx.database),
                "ingest": IngestSettings(spool_dir=root / "spool")})

            def parts(s: Settings) -> tuple[RegistryLookup, DeadLetterStore, InfluxClient]:
                return RegistryLookup(sessions), DeadLetterStore(sessions), InfluxClient(influx.url, influx.database)

            single = Ingester(settings, *parts(settings))
            single.start()
            assert single.source.subscribed.wait(15), "ingester did not subscribe"
            single.stop()
            pub = Publisher("127.0.0.1", broker.port, client_id="bench-pub")
            t0 = time.monotonic()
            for i in range(0, n, 1000):
                pub.publish_many([(f"lorong/v1/{DEVICES[k % 8]}/up", json.dumps(
                    {"device_id": DEVICES[k % 8], "seq": k,
                     "metrics": {"pm25": {"value": float(k % 1000), "unit": "ug/m3"}}}).encode())
                    for k in range(i, min(n, i + 1000))], timeout_s=120)
            pub.close()
            print(f"published {n} messages in {time.monotonic() - t0:.1f} s (queued in the single ingester's session)")
            own = [worker_mqtt(settings, i, "bench") for i in (1, 2)]
            t0 = time.monotonic()
            ok = hand_over(settings, own, lambda s, t: RetiringIngester(s, *parts(s), t), threading.Event())
            took = time.monotonic() - t0
            rows = influx.records('SELECT count("pm25") FROM "air_quality"')
            stored = int(rows[0]["count"]) if rows else 0
            print(f"hand-over to --workers 2: {took:.1f} s, {n / took:,.0f} msg/s; done: {ok}; "
                  f"points in InfluxDB {stored} of {n} ({'exact' if stored == n else 'NOT exact'})")
        finally:
            broker.stop()
            influxd.stop()


if __name__ == "__main__":
    main()
