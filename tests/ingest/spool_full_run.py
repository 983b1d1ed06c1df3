"""Run inside a mount namespace whose ``argv[1]`` is a small tmpfs (see test_spool_full.py): fill a
spool there until the filesystem is full, then drain it into the InfluxDB at ``argv[2]`` (database
``argv[3]``) with the real writer; print what happened as one JSON object."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import time
from pathlib import Path

from prometheus_client import generate_latest

from ingest.metrics import IngestMetrics
from ingest.writer import SpoolWriter
from lorong.storage.influx import InfluxClient
from lorong.storage.spool import Spool


def stored(influx: InfluxClient) -> int:
    """Points of measurement ``m`` in InfluxDB."""
    series = influx.query('SELECT count("v") FROM "m"')
    return int(series[0].values[0][1]) if series else 0


def main() -> None:
    """See the module docstring."""
    folder, url, database = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    spool = Spool(folder / "lorong-ingest.sqlite", reserve_bytes=256 * 1024)  # a 2 MB disk: a smaller reserve
    appended, error = 0, ""
    for i in range(100_000):  # bounded: a 2 MB filesystem fills long before
        try:
            spool.append([f"m,device_id=d{i % 50} v={i}i {1_700_000_000_000 + i * 1000 + k}" for k in range(100)])
        except sqlite3.Error as exc:
            error = f"{type(exc).__name__}: {exc}"
            break
        appended += 100
    free_full = spool.free_bytes()
    metrics = IngestMetrics("t", spool.depth, lambda: True, lambda: True, spool_free=spool.free_bytes)
    page = generate_latest(metrics.registry).decode()
    influx = InfluxClient(url, database)
    writer = SpoolWriter(spool, influx, dead_letter=lambda letters: None, batch_size=1000, idle_s=0.05)
    writer.start()
    deadline = time.monotonic() + 30
    while stored(influx) < appended and time.monotonic() < deadline:
        time.sleep(0.2)
    count, depth = stored(influx), spool.depth()
    try:
        spool.append(["m,device_id=after v=1i 1700000000000"])  # space again for new messages
        after = "ok"
    except sqlite3.Error as exc:
        after = str(exc)
    writer.stop(drain_s=5)
    print(json.dumps({"appended": appended, "error": error, "depth": depth, "stored": count, "after": after,
                      "free_full": free_full, "free_metric": [x for x in page.splitlines()
                                                              if x.startswith("lorong_ingest_spool_free_bytes")],
                      "influx_up": writer.up}))
    spool.close()


if __name__ == "__main__":
    main()
