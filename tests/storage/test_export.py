"""Readings export (CSV, Parquet) against a real InfluxDB: contents equal what was written."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lorong.core import schema
from lorong.core.errors import StoreNotReady, StoreUnavailable
from lorong.core.model import to_ms
from lorong.core.settings import InfluxSettings, Settings
from lorong.storage import export, retention
from lorong.storage.influx import InfluxClient, line

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)


def seed(influx: InfluxClient) -> list[tuple[datetime, str, str, str, str, str, float, str]]:
    """Bin and air points over three days (so several one-day windows), a hostile kecamatan; returns the
    expected export rows in export order (window, then bins before air, then time)."""
    lines: list[str] = []
    bins: list[tuple[datetime, str, str, str, str, str, float, str]] = []
    air: list[tuple[datetime, str, str, str, str, str, float, str]] = []
    for i in range(3 * 24):
        ts = T0 + timedelta(hours=i, minutes=7)
        fill, dist = round(0.01 * (i % 90), 3), 1000.0 + i
        tags = {schema.TAG_DEVICE: "MKS-BIN-0001", schema.TAG_KECAMATAN: "=HYPERLINK(1)"}
        fields = {schema.FIELD_FILL: fill, schema.FIELD_DISTANCE: dist, schema.FIELD_RX: to_ms(ts)}
        lines.append(line(schema.MEASUREMENT_BIN, tags, fields, to_ms(ts)))
        bins += [(ts, "MKS-BIN-0001", "", "=HYPERLINK(1)", "bin", "distance", dist, "mm"),  # metrics in name order
                 (ts, "MKS-BIN-0001", "", "=HYPERLINK(1)", "bin", "fillingLevel", fill, "1")]
        if i % 2 == 0:
            pm = 10.5 + i
            lines.append(line(schema.MEASUREMENT_AIR, {schema.TAG_DEVICE: "MKS-AIR-01", schema.TAG_KECAMATAN: "Tallo"},
                              {schema.FIELD_PM25: pm}, to_ms(ts)))
            air.append((ts, "MKS-AIR-01", "", "Tallo", "air", "pm25", pm, "ug/m3"))
    influx.write_lines(lines)
    out = []
    day = T0
    while day < T0 + timedelta(days=3):
        out += [r for r in bins if day <= r[0] < day + timedelta(days=1)]
        out += [r for r in air if day <= r[0] < day + timedelta(days=1)]
        day += timedelta(days=1)
    return out


def sel(**kw: object) -> export.Selection:
    """The seeded three days."""
    return export.Selection(T0, T0 + timedelta(days=3), **kw)  # type: ignore[arg-type]


def test_rows_equal_what_was_written_in_small_chunks(influx: InfluxClient) -> None:
    want = seed(influx)
    assert list(export.rows(influx, sel(), chunk_points=7)) == want  # many chunks per window
    assert list(export.rows(influx, sel(kecamatan="Tallo"))) == [r for r in want if r[4] == "air"]


def test_csv_equals_what_was_written_and_defuses_formulas(influx: InfluxClient) -> None:
    want = seed(influx)
    buf = io.BytesIO()
    export.write(export.rows(influx, sel()), "csv", buf)
    got = list(csv.reader(io.StringIO(buf.getvalue().decode())))
    assert got[0] == list(export.COLUMNS)
    assert len(got) == len(want) + 1
    for row, (ts, dev, city, kec, kind, metric, value, unit) in zip(got[1:], want, strict=True):
        assert row == [ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"), dev, city,
                       "'" + kec if kec.startswith("=") else kec, kind, metric, repr(value), unit]
    assert got[1][3] == "'=HYPERLINK(1)"  # a spreadsheet shows text, runs no formula


@pytest.mark.parametrize(("cell", "safe"), [
    ("=1+2", "'=1+2"), ("+62", "'+62"), ("-x", "'-x"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("Tallo", "Tallo"), ("", "")])
def test_safe_cell(cell: str, safe: str) -> None:
    assert export.safe_cell(cell) == safe


def test_parquet_equals_what_was_written(influx: InfluxClient, tmp_path: Path) -> None:
    want = seed(influx)
    path = tmp_path / "r.parquet"
    with open(path, "wb") as fh:
        export.write(export.rows(influx, sel()), "parquet", fh)
    pieces = list(export.parquet_chunks(iter(want), batch_rows=50))
    assert len(pieces) >= 3  # row groups stream out before the footer
    table = pq.read_table(path)
    assert table.schema == export.PARQUET_SCHEMA
    assert [tuple(r.values()) for r in table.to_pylist()] == want
    assert pq.read_table(io.BytesIO(b"".join(pieces))).num_rows == len(want)


def test_hourly_export_reads_the_means(influx: InfluxClient) -> None:
    with pytest.raises(StoreNotReady, match="lorong storage retention apply"):
        list(export.rows(influx, sel(resolution="hourly")))
    retention.apply(influx, InfluxSettings(), "Asia/Makassar")  # moves the seed into raw, backfills the means
    want = seed(influx)
    retention.backfill(influx, "Asia/Makassar", T0, T0 + timedelta(days=3))
    got = list(export.rows(influx, sel(resolution="hourly")))
    # one point per hour per device: the hourly mean is the point itself, stamped at the hour
    assert got == [(ts.replace(minute=0), *rest) for ts, *rest in want]


def test_city_is_ignored_while_no_city_tag_exists_and_filters_once_it_does(influx: InfluxClient) -> None:
    want = seed(influx)
    assert not export.city_filter_applies(influx, sel(city="makassar"))
    assert list(export.rows(influx, sel(city="makassar"))) == want
    ts = T0 + timedelta(minutes=30)
    influx.write_lines([line(schema.MEASUREMENT_AIR, {schema.TAG_DEVICE: "JKT-AIR-01", schema.TAG_CITY: "jakarta"},
                             {schema.FIELD_PM25: 40.0}, to_ms(ts))])
    assert export.city_filter_applies(influx, sel(city="jakarta"))
    assert list(export.rows(influx, sel(city="jakarta"))) == [
        (ts, "JKT-AIR-01", "jakarta", "", "air", "pm25", 40.0, "ug/m3")]


def test_cli_writes_csv_and_parquet(influx: InfluxClient, make_settings: Callable[..., Settings],
                                   tmp_path: Path) -> None:
    want = seed(influx)
    env = {"LORONG_INFLUX__URL": influx.url, "LORONG_INFLUX__DATABASE": influx.database, "PATH": "/usr/bin:/bin",
           "LORONG_DATABASE_URL": make_settings().database_url}  # --city is checked against the registry
    base = [sys.executable, "-m", "lorong.cli", "export", "readings", "--from", T0.isoformat(),
            "--to", (T0 + timedelta(days=3)).isoformat(), "--city", "makassar"]
    out = subprocess.run([*base, "--format", "parquet", "--out", str(tmp_path / "r.parquet")], env=env,
                         capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no city tag yet" in out.stdout and "r.parquet" in out.stdout
    table = pq.read_table(tmp_path / "r.parquet")  # written without numpy, with malloc: the same cells
    assert table.schema == export.PARQUET_SCHEMA
    assert [tuple(r.values()) for r in table.to_pylist()] == want
    bad = subprocess.run([*base, "--format", "xlsx", "--out", str(tmp_path / "r.x")], env=env,
                         capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert bad.returncode == 2 and bad.stderr.startswith("error: --format 'xlsx'")


def test_city_is_a_column_of_raw_and_mean_exports(influx: InfluxClient, tmp_path: Path) -> None:
    """Two cities' stations in one export were told apart by nothing; the ``city`` tag is now a column."""
    retention.apply(influx, InfluxSettings(), "Asia/Makassar")
    points = [("MKS-AIR-01", "makassar", 12.0), ("JKT-AIR-01", "jakarta", 40.0)]
    influx.write_lines([line(schema.MEASUREMENT_AIR, {schema.TAG_DEVICE: dev, schema.TAG_CITY: city},
                             {schema.FIELD_PM25: pm}, to_ms(T0 + timedelta(minutes=10))) for dev, city, pm in points])
    retention.backfill(influx, "Asia/Makassar", T0, T0 + timedelta(hours=1))
    want = sorted((T0 + timedelta(minutes=10), dev, city, "", "air", "pm25", pm, "ug/m3") for dev, city, pm in points)
    assert sorted(export.rows(influx, sel())) == want
    assert sorted(export.rows(influx, sel(resolution="hourly"))) == [(T0, *r[1:]) for r in want]
    assert list(export.rows(influx, sel(city="jakarta"))) == [want[0]]
    path = tmp_path / "r.parquet"
    export.write_file(export.rows(influx, sel()), "parquet", path)
    assert sorted(pq.read_table(path).column("city").to_pylist()) == ["jakarta", "makassar"]
    export.write_file(export.rows(influx, sel(resolution="hourly")), "csv", tmp_path / "r.csv")
    got = list(csv.reader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert got[0] == ["time", "device_id", "city", "kecamatan", "kind", "metric", "value", "unit"]
    assert sorted(r[2] for r in got[1:]) == ["jakarta", "makassar"]


def _failing(rows: list[export.Row], n: int) -> Iterator[export.Row]:
    """``rows``, then InfluxDB going away after ``n`` of them (as :func:`export.rows` raises midway)."""
    yield from rows[:n]
    raise StoreUnavailable("influx http://127.0.0.1:9/query: ConnectError('connection refused')")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_file_replaces_the_target_only_when_complete(tmp_path: Path, fmt: export.Format) -> None:
    """A failure midway (after row groups were written) leaves the old file as it was and no partial one."""
    ts = datetime(2026, 12, 5, tzinfo=UTC)
    rows = [(ts + timedelta(minutes=i), "B1", "makassar", "Tallo", "bin", "fillingLevel", i / 100, "1")
            for i in range(50)]
    target = tmp_path / f"r.{fmt}"
    target.write_bytes(b"old data\n")
    with pytest.raises(StoreUnavailable):
        export.write_file(_failing(rows, 40), fmt, target, batch_rows=10)
    assert target.read_bytes() == b"old data\n"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    with pytest.raises(StoreUnavailable):
        export.write_file(_failing(rows, 40), fmt, tmp_path / f"new.{fmt}", batch_rows=10)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    size = export.write_file(iter(rows), fmt, target, batch_rows=10)
    assert target.stat().st_size == size > 9
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    if fmt == "parquet":
        assert [tuple(r.values()) for r in pq.read_table(target).to_pylist()] == rows
    else:
        assert target.read_bytes().count(b"\r\n") == len(rows) + 1
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # as open() would have made it


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_parquet_keeps_every_cell_of_any_text_and_number(tmp_path: Path) -> None:
    """The Parquet columns are built from their buffers (UTF-8 bytes and 32-bit offsets, epoch ms,
    float64): multi-byte text, empty cells, signed zero and extremes come back as written."""
    ts = datetime(2026, 3, 29, 0, 59, 59, 999000, tzinfo=UTC)
    rows = [(ts, "MKS-BIN-0001", "makassar", "Ujung Pandang — Mariso", "bin", "fillingLevel", -0.0, "1"),
            (ts + timedelta(milliseconds=1), "", "", "", "air", "pm25", 1e300, "ug/m3"),
            (datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), "鍵-01", "jakarta", "=1+2", "air", "pm10",
             -273.15, "ug/m3")] * 7
    path = tmp_path / "r.parquet"
    export.write_file(iter(rows), "parquet", path, batch_rows=4)
    table = pq.read_table(path)
    assert table.schema == export.PARQUET_SCHEMA
    assert [tuple(r.values()) for r in table.to_pylist()] == rows
    assert str(table.column("value")[0]) == "-0.0"


def test_parquet_row_groups_are_written_one_by_one_as_rows_arrive(tmp_path: Path) -> None:
    """25 rows in groups of 10: three row groups (10, 10, 5) holding exactly the rows in order, with the
    export's column types, and each group leaves as bytes before the source is asked for the next
    group's first row (memory holds one group, not the file)."""
    ts = datetime(2026, 12, 5, tzinfo=UTC)
    rows = [(ts + timedelta(minutes=i), f"MKS-BIN-{i % 3:04d}", "makassar", "Tallo", "bin", "fillingLevel",
             i / 8, "1") for i in range(25)]
    pulled: list[int] = []

    def source() -> Iterator[export.Row]:
        for n, row in enumerate(rows, 1):
            pulled.append(n)  # rows handed out so far
            yield row

    pieces = []
    for piece in export.parquet_chunks(source(), batch_rows=10):
        pieces.append((len(pulled), piece))
    # rows pulled when each piece came out: 10 (the 11th not yet asked), 20, 25, then the footer
    assert [n for n, _ in pieces] == [10, 20, 25, 25]
    assert pieces[0][1].startswith(b"PAR1") and pieces[-1][1].endswith(b"PAR1")
    path = tmp_path / "r.parquet"
    path.write_bytes(b"".join(p for _, p in pieces))
    file = pq.ParquetFile(path)
    assert file.schema_arrow == export.PARQUET_SCHEMA
    assert [str(f.type) for f in file.schema_arrow] == [
        "timestamp[ms, tz=UTC]", "string", "string", "string", "string", "string", "double", "string"]
    assert [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)] == [10, 10, 5]
    for i, (lo, hi) in enumerate([(0, 10), (10, 20), (20, 25)]):
        assert [tuple(r.values()) for r in file.read_row_group(i).to_pylist()] == rows[lo:hi]


ALLOCATOR_IN_A_CHILD = """
import sys
from lorong.storage import export
took = export.prefer_system_allocator()
import pyarrow as pa
print(took, pa.default_memory_pool().backend_name, export.prefer_system_allocator())
"""


@pytest.mark.parametrize(("chosen", "want"), [(None, "True system False"), ("jemalloc", "False jemalloc False")])
def test_prefer_system_allocator_before_pyarrow_unless_the_environment_chose(chosen: str | None, want: str) -> None:
    """``lorong export readings --format parquet`` has Arrow allocate with malloc (~6 MB less at the peak,
    bench/export_memory.py); an ``ARROW_DEFAULT_MEMORY_POOL`` already set stands, and once pyarrow is
    imported it is too late (False)."""
    env = {k: v for k, v in os.environ.items() if k != export.ARROW_POOL_VARIABLE}
    if chosen is not None:
        env[export.ARROW_POOL_VARIABLE] = chosen
    out = subprocess.run([sys.executable, "-c", ALLOCATOR_IN_A_CHILD], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parents[2], env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == want


NUMPY_IN_A_CHILD = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
if sys.argv[1] == "numpy first":
    import numpy
from lorong.storage import export
took = export.import_pyarrow_without_numpy()
import pyarrow.lib
print(took, pyarrow.lib.np is not None, export.import_pyarrow_without_numpy())
ts = datetime(2026, 12, 5, tzinfo=UTC)
rows = [(ts + timedelta(minutes=i), "B1", "makassar", "Tallo", "bin", "fillingLevel", i / 3, "1") for i in range(30)]
export.write_file(iter(rows), "parquet", Path(sys.argv[2]), batch_rows=8)
try:
    import numpy
    print("numpy importable")
except ModuleNotFoundError:
    print("numpy refused")
"""


@pytest.mark.parametrize(("first", "want"), [("nothing first", "True False False\nnumpy refused"),
                                             ("numpy first", "False True False\nnumpy importable")])
def test_import_pyarrow_without_numpy_writes_the_same_parquet(first: str, want: str, tmp_path: Path) -> None:
    """``lorong export readings --format parquet`` imports pyarrow with numpy refused (~19 MB less,
    bench/export_memory.py): the file holds the same rows and types, numpy stays refused in that process
    (no pyarrow half set up for it), and a process that already has numpy keeps it (False)."""
    out = subprocess.run([sys.executable, "-c", NUMPY_IN_A_CHILD, first, str(tmp_path / "r.parquet")],
                         capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2], check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == want
    ts = datetime(2026, 12, 5, tzinfo=UTC)
    file = pq.ParquetFile(tmp_path / "r.parquet")
    assert file.schema_arrow == export.PARQUET_SCHEMA and file.num_row_groups == 4
    assert [tuple(r.values()) for r in file.read().to_pylist()] == [
        (ts + timedelta(minutes=i), "B1", "makassar", "Tallo", "bin", "fillingLevel", i / 3, "1") for i in range(30)]


EXPORT_IN_A_CHILD = """
import sys
from datetime import UTC, datetime
from lorong.storage import export
rows = [(datetime(2026, 12, 5, tzinfo=UTC), "B1", "makassar", "Tallo", "bin", "fillingLevel", 0.5, "1")] * 3
b"".join(export.csv_chunks(iter(rows)))
print("pyarrow" in sys.modules, "pandas" in sys.modules)
b"".join(export.parquet_chunks(iter(rows)))
print("pyarrow" in sys.modules, "pandas" in sys.modules)
"""


def test_export_imports_only_what_its_format_needs() -> None:
    """A CSV export imports no pyarrow (~85 MB with numpy), a Parquet one no pandas (~55 MB, which
    ``pa.array(list)`` imports on its first call): the export's peak memory (bench/export_memory.py)."""
    out = subprocess.run([sys.executable, "-c", EXPORT_IN_A_CHILD], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parents[2], check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["False False", "True False"]
