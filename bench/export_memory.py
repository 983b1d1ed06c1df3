"""Peak memory of ``lorong export readings`` over 1,000,000 readings, CSV and Parquet.

Workload: a fresh influxd (Debian 1.6.7, started here on a free loopback port) holding
``--devices`` bins (default 200) with one point every 30 minutes over the days up to now, each
point carrying ``fillingLevel`` and ``distance``, so that ``--readings`` (default 1,000,000)
readings = points x 2 (52 days). Each export runs in a child process (``python -m lorong.cli export
readings``, the command users run) that writes the file; its peak resident set size is the
``ru_maxrss`` that ``os.wait4`` reports for that child alone, started by a small launcher
(:data:`LAUNCHER`) so that this script's own size does not count. Exports run as CSV, as Parquet, and as
Parquet with ``--city makassar`` (as an officer of a multi-city deployment asks: it opens the
registry, a SQLite file created here). A child that only imports the modules of a Parquet export
gives the baseline, so the export's own cost is the difference; it is printed step by step: the
bare interpreter, the command's modules (typer, pydantic-settings, httpx, SQLAlchemy, Alembic) and
pyarrow.parquet, which a Parquet export imports with numpy refused
(:func:`lorong.storage.export.import_pyarrow_without_numpy`; what numpy would add is printed too) and
whose memory it allocates with ``malloc`` (:func:`lorong.storage.export.prefer_system_allocator`;
``ARROW_DEFAULT_MEMORY_POOL=mimalloc`` in this script's environment measures pyarrow's own default).
A CSV export imports no pyarrow.

Figures are MiB (``ru_maxrss`` KiB / 1024), printed as MB. Target: peak under 200 MB for the whole
export (the data would be ~60 MB as Python tuples).
It is printed, not asserted: the machine may be shared.

Usage::

    .venv/bin/python bench/export_memory.py [--readings 1000000] [--devices 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lorong.core import schema  # noqa: E402
from lorong.core.model import to_ms  # noqa: E402
from lorong.core.settings import Settings  # noqa: E402
from lorong.storage import stack  # noqa: E402
from lorong.storage.influx import InfluxClient, line  # noqa: E402
from lorong.storage.runtime import create_database  # noqa: E402

STEP = timedelta(minutes=30)


def seed(influx: InfluxClient, readings: int, devices: int, end: datetime) -> datetime:
    """Write ``readings / 2`` points (two metrics each) spread over ``devices``; returns the first time."""
    per_device = readings // 2 // devices
    start = end - per_device * STEP
    batch: list[str] = []
    for i in range(per_device):
        ts = to_ms(start + i * STEP)
        for d in range(devices):
            tags = {schema.TAG_DEVICE: f"MKS-BIN-{d:05d}", schema.TAG_CITY: "makassar",
                    schema.TAG_KECAMATAN: f"K{d % 15:02d}"}  # the tags the ingester writes
            fields = {schema.FIELD_FILL: (i * 7 + d) % 100 / 100, schema.FIELD_DISTANCE: 200.0 + (i + d) % 900}
            batch.append(line(schema.MEASUREMENT_BIN, tags, fields, ts))
            if len(batch) >= 5000:
                influx.write_lines(batch)
                batch.clear()
    influx.write_lines(batch)
    return start


LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""
"""Runs the measured command and writes its ``ru_maxrss`` (KiB) to the file ``argv[1]``. Linux counts
in a child's ``ru_maxrss`` the resident size of the process it was forked from, up to its ``exec``
(``exec_mmap`` keeps the old memory's high-water mark): spawned from this script (~90 MB by then), a
child that imports nothing reported 93 MB. This small launcher (~13 MB) starts the command instead."""


def child_peak_mb(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``args`` as a child (through :data:`LAUNCHER`); return (its own peak RSS in MiB, wall
    seconds, its stdout). A figure under ~13 MB would be the launcher's size, not the child's."""
    with tempfile.TemporaryFile("w+") as out, tempfile.NamedTemporaryFile("r", suffix=".maxrss") as report:
        t0 = time.monotonic()
        code = subprocess.run([sys.executable, "-c", LAUNCHER, report.name, *args], env=env, stdout=out,
                              stderr=subprocess.STDOUT, text=True, cwd=ROOT, check=False).returncode
        took = time.monotonic() - t0
        out.seek(0)
        said = out.read().strip()
        peak_kib = report.read().strip()
    if code != 0:
        raise SystemExit(f"child failed ({code}): {said}")
    return int(peak_kib) / 1024, took, said  # ru_maxrss: KiB on Linux


def main() -> None:
    """Seed, export as CSV and Parquet in child processes, print peak memory."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--devices", type=int, default=200)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lorong-export-") as tmp:
        svc = stack.start_influxd(Path(tmp) / "influxd", stack.free_port())
        try:
            influx = InfluxClient(f"http://127.0.0.1:{svc.port}", "bench")
            influx.create_database()
            end = datetime.now(UTC).replace(second=0, microsecond=0)
            t0 = time.monotonic()
            start = seed(influx, opts.readings, opts.devices, end)
            print(f"seeded {opts.readings:,} readings ({opts.devices} bins, {start:%Y-%m-%d} .. {end:%Y-%m-%d}) "
                  f"in {time.monotonic() - t0:.1f} s")
            settings = Settings(database_url=f"sqlite:///{tmp}/registry.db")
            create_database(settings)  # the registry --city is checked against (city makassar)
            env = {**os.environ, "LORONG_INFLUX__URL": influx.url, "LORONG_INFLUX__DATABASE": "bench",
                   "LORONG_DATABASE_URL": settings.database_url}
            steps = ["pass", "import lorong.cli, lorong.storage.export_cli",  # then as export_cli does for Parquet
                     "from lorong.storage.export import prefer_system_allocator, import_pyarrow_without_numpy; "
                     "prefer_system_allocator(); import_pyarrow_without_numpy()"]
            peaks = [child_peak_mb([sys.executable, "-c", "; ".join(steps[:i + 1])], env)[0] for i in range(3)]
            numpy_mb = child_peak_mb([sys.executable, "-c", f"{steps[1]}; import numpy"], env)[0] - peaks[1]
            print(f"baseline (a child that only imports a Parquet export's modules): peak RSS {peaks[2]:.0f} MB = "
                  f"Python {peaks[0]:.0f} + the command's modules {peaks[1] - peaks[0]:.0f} + pyarrow.parquet "
                  f"{peaks[2] - peaks[1]:.0f} (numpy, which the export keeps out, would add {numpy_mb:.0f})")
            for fmt, city in (("csv", []), ("parquet", []), ("parquet", ["--city", "makassar"])):
                out = Path(tmp) / f"readings.{fmt}"
                peak, took, said = child_peak_mb(
                    [sys.executable, "-m", "lorong.cli", "export", "readings", "--from", start.isoformat(),
                     "--to", (end + timedelta(minutes=1)).isoformat(), "--format", fmt, "--out", str(out), *city],
                    env)
                rows = opts.readings
                print(f"{' '.join([fmt, *city]):24s} {rows:,} readings, {out.stat().st_size / 1e6:.1f} MB file, "
                      f"{took:.1f} s ({rows / took:,.0f} readings/s), peak RSS {peak:.0f} MB (target < 200 MB)  "
                      f"[{said.splitlines()[-1]}]")
        finally:
            svc.stop()


if __name__ == "__main__":
    main()
