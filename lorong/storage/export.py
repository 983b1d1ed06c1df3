"""Readings out of InfluxDB as CSV or Parquet, for officers and open-data portals, in bounded memory.

One row per reading (long format, the same columns for every device kind and every format):

=============  =====================================================================
column         meaning
=============  =====================================================================
``time``       time of the reading (UTC, ms; for means the bucket start)
``device_id``  DevEUI or serial number
``city``       city id of the reading (its ``city`` tag, ``cities.id``; empty when it has none)
``kecamatan``  district tag of the device (empty when it has none)
``kind``       ``bin`` or ``air``
``metric``     canonical metric name (:mod:`lorong.core.metrics`, FIWARE names)
``value``      float, in ``unit``
``unit``       canonical unit (``1`` = fraction 0..1)
=============  =====================================================================

Rows come window by window (:data:`WINDOW`, one day), bins before air stations within a window,
oldest first within a measurement, the metrics of one point in name order. Each window is one
InfluxQL query read with ``chunked=true`` (:meth:`lorong.storage.influx.InfluxClient.query_chunked`), and
rows are written as they arrive: memory does not grow with the length of the range
(``bench/export_memory.py``).

``resolution`` picks the retention policy read: ``raw`` readings (the database's default policy:
``raw``, the last ``raw_days`` only), ``hourly`` or ``daily`` means (:mod:`lorong.storage.retention`).

A CSV cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed
with ``'`` so that a spreadsheet shows it as text instead of running it as a formula (OWASP, "CSV
Injection", https://owasp.org/www-community/attacks/CSV_Injection); only text columns are
touched, never numbers. Parquet cells are typed and stay as stored.

:func:`write_file` writes to a temporary file beside the target and renames it over the target only
once the export is complete: a failure (InfluxDB going away midway, a full disk) leaves an existing
file as it was and no partial one.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import secrets
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from lorong.core import schema
from lorong.core.metrics import METRICS
from lorong.core.model import to_ms
from lorong.storage.influx import InfluxClient, quote_ident
from lorong.storage.kecamatan import registered_as
from lorong.storage.retention import require_policy
from lorong.storage.tables import CityRow

if TYPE_CHECKING:  # pyarrow is imported by the Parquet path only: a CSV export does without its ~85 MB
    import pyarrow as pa

COLUMNS = ("time", "device_id", "city", "kecamatan", "kind", "metric", "value", "unit")
"""Export columns, in order."""
MAX_SPAN = timedelta(days=400)
"""Longest range one export (and one ``/readings`` window) may cover: a year of daily means plus a
month; a longer one is refused before InfluxDB is asked, so a typo'd year cannot run unbounded."""
WINDOW = timedelta(days=1)
"""Time window of one query."""
CHUNK_POINTS = 2_000
"""Points per chunk InfluxDB streams (``chunk_size``). A chunk is held whole, as JSON text and then as
Python lists (~1 kB a point with its strings and floats): 10,000 cost the export process ~14 MB of
peak memory, 2,000 ~6 MB, at the same speed (``bench/export_memory.py``, 2026-12-06)."""
PARQUET_BATCH_ROWS = 8_192
"""Rows per Parquet row group written. The Arrow memory pool holds ~2 MB at this size (mimalloc,
jemalloc and the system allocator alike). Over 1,000,000 readings (measured as ``bench/export_memory.py``
does, 2026-12-07, malloc), 4,096 rows lowered the export's peak by 2 MB for a file 23 % larger and
16,384 raised it by 5 MB."""
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
"""Environment variable naming the allocator of Arrow's default memory pool (``mimalloc``, ``jemalloc``
or ``system``), read when pyarrow is first imported (Arrow C++ ``default_memory_pool``,
https://arrow.apache.org/docs/python/memory.html)."""
Format = Literal["csv", "parquet"]
Resolution = Literal["raw", "hourly", "daily"]
RESOLUTIONS: dict[str, str | None] = {"raw": None, "hourly": schema.RP_HOURLY, "daily": schema.RP_DAILY}
"""Retention policy read per resolution (raw: the database default, ``raw`` once applied)."""
KINDS: dict[str, str] = {m: k.value for k, m in schema.MEASUREMENT_BY_KIND.items()}
"""Measurement -> device kind (``waste_container`` -> ``bin``)."""
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)



@functools.cache
def parquet_schema() -> pa.Schema:
    """Arrow schema of the Parquet export: :data:`COLUMNS`, ``time`` as ms since the epoch in UTC,
    ``value`` float64, every other column a UTF-8 string (``""`` when absent, never null)."""
    import pyarrow as pa

    return pa.schema([
        ("time", pa.timestamp("ms", tz="UTC")), ("device_id", pa.string()), ("city", pa.string()),
        ("kecamatan", pa.string()),
        ("kind", pa.string()), ("metric", pa.string()), ("value", pa.float64()), ("unit", pa.string())])


def prefer_system_allocator() -> bool:
    """Have this process's Arrow allocate with the C library's ``malloc`` (:data:`ARROW_POOL_VARIABLE`
    ``=system``) instead of pyarrow's bundled mimalloc, for a process that exports and exits.

    The Parquet writer allocates from Arrow's default pool whatever pool it is handed (its column
    writers take the pool of their ``WriterProperties``, which pyarrow leaves at the default), and
    the pool is chosen once, from the environment, when pyarrow is imported. Writing 20 row groups of
    8,192 rows grew the resident memory by 19 MB through mimalloc and by 2 MB through ``malloc``, while
    the pool never held more than 2 MB (mimalloc keeps the pages it touched); the peak of ``lorong
    export readings --format parquet`` over 1,000,000 readings went from 171 to 165 MB
    (``bench/export_memory.py``, 2026-12-07). The API does not call this: a server shares its pool
    with every other Arrow user.

    Returns:
        True when it took effect: False when pyarrow is already imported (too late) or the
        environment already names a pool (the operator's choice stands).
    """
    if "pyarrow" in sys.modules or os.environ.get(ARROW_POOL_VARIABLE):
        return False
    os.environ[ARROW_POOL_VARIABLE] = "system"
    return True


def import_pyarrow_without_numpy() -> bool:
    """Import ``pyarrow.parquet`` with numpy hidden, for a process that exports and exits.

    pyarrow imports numpy whenever it is installed (it is, for pandas), ~19 MB of resident memory the
    export never uses: its columns are built from buffers (:func:`_record_batch`). pyarrow has not
    needed numpy since 16.0 (its wheel declares no dependency; ``pyarrow/lib.pyx`` reads ``try: import
    numpy ... except ImportError: np = None``), so ``None`` in ``sys.modules["numpy"]`` (the import
    system's documented way to refuse a module) has pyarrow run as on an install without numpy. It
    stays refused for the life of the process, which is what keeps pyarrow consistent: a later
    ``import numpy`` raises ``ModuleNotFoundError`` instead of meeting a pyarrow that did not set up
    numpy's C API. The API does not call this (a server has pandas, and numpy, loaded anyway).

    Returns:
        True when it took effect: False when pyarrow or numpy is already imported (nothing changed).
    """
    if "pyarrow" in sys.modules or "numpy" in sys.modules:
        return False
    sys.modules["numpy"] = None  # type: ignore[assignment]
    import pyarrow.parquet  # noqa: F401

    return True


def __getattr__(name: str) -> object:
    """``PARQUET_SCHEMA`` is :func:`parquet_schema` (built, with pyarrow imported, on first use)."""
    if name == "PARQUET_SCHEMA":
        return parquet_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

Row = tuple[datetime, str, str, str, str, str, float, str]
"""One export row, :data:`COLUMNS` in order."""


def safe_cell(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would read it as a formula (OWASP CSV Injection)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


@dataclass(frozen=True, slots=True)
class Selection:
    """What to export.

    Attributes:
        start, end: ``[start, end)``, tz-aware.
        resolution: ``raw``, ``hourly`` or ``daily``.
        kecamatan: only devices with this kecamatan tag; all when None.
        area: only devices with one of these kecamatan tags (an API token's area); all when empty.
        city: only points with this ``city`` tag; ignored while the measurements carry no such tag
            (one city per deployment; see :func:`city_filter_applies`).
    """

    start: datetime
    end: datetime
    resolution: Resolution = "raw"
    kecamatan: str | None = None
    city: str | None = None
    area: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("export times must carry a time zone (UTC offset)")
        if self.start >= self.end:
            raise ValueError(f"export start {self.start.isoformat()} is not before end {self.end.isoformat()}")
        check_span(self.start, self.end)
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution {self.resolution!r}: use one of {', '.join(RESOLUTIONS)}")


def check_span(start: datetime, end: datetime) -> None:
    """Refuse a range ``[start, end)`` longer than :data:`MAX_SPAN` (the API's 422, the CLI's error line).

    Raises:
        ValueError: ``the range is N days long: ask for at most 400 days``.
    """
    if end - start > MAX_SPAN:
        raise ValueError(f"the range is {(end - start).days} days long: ask for at most {MAX_SPAN.days} days")


class UnknownCityFilter(ValueError):
    """A city filter naming no registered city; the message lists the known city ids."""


def known_cities(session: Session) -> list[str]:
    """Every city id in the registry (``cities.id``), sorted."""
    return list(session.scalars(select(CityRow.id).order_by(CityRow.id)))


def match_city(value: str, known: Iterable[str]) -> str:
    """The registered city id ``value`` names, compared without case (ids are lower-case slugs).

    Shared by the API (a 422) and ``lorong export readings`` (one ``error:`` line, exit 2), so that
    both refuse a city that is not registered instead of answering with a header-only file.

    Args:
        value: the filter as the user typed it (``Makassar``).
        known: registered ids (:func:`known_cities`).

    Returns:
        the registered id (``makassar``).

    Raises:
        UnknownCityFilter: no registered city matches; the message (``no city 'x' in the registry;
            known cities: a, b``) lists the known ids, or says there are none yet.
    """
    ids = sorted(set(known))
    found = registered_as(value, ids)
    if found is not None:
        return found
    listed = ", ".join(ids) if ids else "none yet (add one with `lorong cities add`)"
    raise UnknownCityFilter(f"no city {value[:64]!r} in the registry; known cities: {listed}")


def city_filter_applies(influx: InfluxClient, sel: Selection) -> bool:
    """True when ``sel.city`` is set and some readings measurement has a ``city`` tag key."""
    if sel.city is None:
        return False
    q = f"SHOW TAG KEYS FROM {', '.join(_source(sel, m) for m in KINDS)}"
    return any(row[0] == schema.TAG_CITY for s in influx.query(q) for row in s.values)


def _source(sel: Selection, measurement: str) -> str:
    """``"hourly"."waste_container"``, or the bare measurement for the default policy."""
    rp = RESOLUTIONS[sel.resolution]
    return (f"{quote_ident(rp)}." if rp else "") + quote_ident(measurement)


def rows(influx: InfluxClient, sel: Selection, window: timedelta = WINDOW,
         chunk_points: int = CHUNK_POINTS) -> Iterator[Row]:
    """Every reading of ``sel``, one :data:`Row` per metric value (order: module docstring).

    Raises:
        StoreNotReady: means asked for and their retention policy is missing.
        StoreUnavailable: InfluxDB is not reachable (also midway).
        StoreRejected: InfluxDB refused a query.
    """
    rp = RESOLUTIONS[sel.resolution]
    if rp is not None:
        require_policy(influx, rp)
    where, params = "", {}
    if sel.kecamatan is not None:
        where += f" AND {quote_ident(schema.TAG_KECAMATAN)} = $kecamatan"
        params["kecamatan"] = sel.kecamatan
    if sel.area:
        where += " AND (" + " OR ".join(f"{quote_ident(schema.TAG_KECAMATAN)} = $area{i}"
                                        for i in range(len(sel.area))) + ")"
        params.update({f"area{i}": k for i, k in enumerate(sel.area)})
    if city_filter_applies(influx, sel):
        where += f" AND {quote_ident(schema.TAG_CITY)} = $city"
        params["city"] = sel.city or ""
    t = sel.start
    while t < sel.end:
        t2 = min(t + window, sel.end)
        for meas, kind in KINDS.items():
            q = (f"SELECT * FROM {_source(sel, meas)} WHERE time >= {to_ms(t)}ms AND time < {to_ms(t2)}ms"
                 f"{where}")
            for series in influx.query_chunked(q, params, chunk_points):
                yield from _series_rows(series.columns, series.values, kind)
        t = t2


def _series_rows(columns: Sequence[str], values: Iterable[Sequence[object]], kind: str) -> Iterator[Row]:
    """Explode points (``SELECT *`` rows: time, tags, fields) into one row per metric value."""
    idx_dev = columns.index(schema.TAG_DEVICE) if schema.TAG_DEVICE in columns else None
    idx_kec = columns.index(schema.TAG_KECAMATAN) if schema.TAG_KECAMATAN in columns else None
    idx_city = columns.index(schema.TAG_CITY) if schema.TAG_CITY in columns else None
    metrics = [(i, c, METRICS[c].unit) for i, c in enumerate(columns) if c in METRICS]
    for point in values:
        ts = datetime.fromtimestamp(int(point[0]) / 1000, UTC)  # type: ignore[call-overload]
        dev = str(point[idx_dev] or "") if idx_dev is not None else ""
        kec = str(point[idx_kec] or "") if idx_kec is not None else ""
        city = str(point[idx_city] or "") if idx_city is not None else ""
        for i, metric, unit in metrics:
            v = point[i]
            if v is not None:
                yield ts, dev, city, kec, kind, metric, float(v), unit  # type: ignore[arg-type]


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def csv_chunks(source: Iterable[Row], rows_per_chunk: int = 5_000) -> Iterator[bytes]:
    """UTF-8 CSV (RFC 4180, header first) in pieces of ``rows_per_chunk`` rows, text cells made safe."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")
    out.writerow(COLUMNS)
    for n, (ts, dev, city, kec, kind, metric, value, unit) in enumerate(source, 1):
        out.writerow((_iso(ts), safe_cell(dev), safe_cell(city), safe_cell(kec), kind, metric, repr(value), unit))
        if n % rows_per_chunk == 0:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


class _Sink(io.RawIOBase):
    """A write-only file that hands its bytes to whoever drains it (Parquet streaming)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _string_array(values: Sequence[str]) -> pa.Array:
    """A UTF-8 string array (no nulls) from its buffers: 32-bit offsets and the bytes end to end."""
    import pyarrow as pa

    encoded = [v.encode() for v in values]
    offsets = array("i", [0])  # C int: 32 bits, the offset width of pa.string()
    offsets.extend(accumulate(map(len, encoded)))
    return pa.Array.from_buffers(pa.string(), len(values),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def _record_batch(rows: Sequence[Row]) -> pa.RecordBatch:
    """One :func:`parquet_schema` batch of ``rows``.

    The arrays are built from their buffers (``pa.Array.from_buffers``) rather than with
    ``pa.array(list)``: the latter imports pandas on its first call (to check whether the list is a
    pandas object), ~55 MB the export does not need.
    """
    import pyarrow as pa

    schema = parquet_schema()
    times, devices, cities, kecamatan, kinds, metrics, values, units = zip(*rows, strict=True)
    ms = array("q", [(ts - _EPOCH) // _MS for ts in times])  # as pyarrow converts: whole ms, exact
    arrays = [pa.Array.from_buffers(schema.field("time").type, len(rows), [None, pa.py_buffer(ms)]),
              *map(_string_array, (devices, cities, kecamatan, kinds, metrics)),
              pa.Array.from_buffers(pa.float64(), len(rows), [None, pa.py_buffer(array("d", values))]),
              _string_array(units)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _batches(source: Iterable[Row], size: int) -> Iterator[pa.RecordBatch]:
    run: list[Row] = []
    for row in source:
        run.append(row)
        if len(run) >= size:
            yield _record_batch(run)
            run = []
    if run:
        yield _record_batch(run)


def parquet_chunks(source: Iterable[Row], batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[bytes]:
    """A Parquet file (:func:`parquet_schema`, zstd) in pieces: one row group per ``batch_rows``
    rows, the footer last; memory holds one row group."""
    import pyarrow.parquet as pq

    sink = _Sink()
    with pq.ParquetWriter(sink, parquet_schema(), compression="zstd") as writer:
        for batch in _batches(source, batch_rows):
            writer.write_batch(batch)
            if data := sink.drain():
                yield data
    yield sink.drain()


def chunks(source: Iterable[Row], fmt: Format) -> Iterator[bytes]:
    """:func:`csv_chunks` or :func:`parquet_chunks`."""
    if fmt == "csv":
        return csv_chunks(source)
    if fmt == "parquet":
        return parquet_chunks(source)
    raise ValueError(f"format {fmt!r}: use csv or parquet")


def write(source: Iterable[Row], fmt: Format, out: IO[bytes]) -> int:
    """Write every row of ``source`` to ``out`` as ``fmt``; returns the bytes written."""
    n = 0
    for data in chunks(source, fmt):
        out.write(data)
        n += len(data)
    return n


def write_file(source: Iterable[Row], fmt: Format, path: Path, batch_rows: int = PARQUET_BATCH_ROWS) -> int:
    """Write every row of ``source`` to the file ``path`` as ``fmt``, all or nothing; returns the bytes written.

    The rows go to a temporary file in ``path``'s folder (``.NAME.<random>.part``, created with the
    permissions ``open`` gives), which is renamed over ``path`` (``os.replace``, atomic on POSIX) once
    complete. ``batch_rows``: rows per CSV piece or Parquet row group.

    Raises:
        whatever ``source`` raises (StoreUnavailable, StoreRejected ...), and OSError writing the
        file; in every case ``path`` is as it was and the temporary file is removed.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format {fmt!r}: use csv or parquet")
    pieces = csv_chunks(source, batch_rows) if fmt == "csv" else parquet_chunks(source, batch_rows)
    part = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with open(part, "xb") as out:
            n = 0
            for data in pieces:
                out.write(data)
                n += len(data)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return n
