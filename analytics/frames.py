"""InfluxQL -> pandas: the aggregates the analytics rules read, each in one query per run.

Every query has explicit time bounds ``(start, end]`` in epoch milliseconds instead of
``now()``, so a job can run "as of" any time (tests inject ``now``; replays use old data).
Aggregation is pushed into InfluxDB (``LIMIT`` per series, ``mean``/``last`` with
``GROUP BY time``, ``difference`` in a subquery filtered by size): the job never pulls a
month of raw points (InfluxQL reference: https://docs.influxdata.com/influxdb/v1/query_language/).

Every frame is long format: one row per device and time, column ``device_id`` (str), column
``time`` (``datetime64[ns, UTC]``) and one float column per field, NaN where a point lacks it.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from datetime import datetime, time, timedelta
from itertools import pairwise
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analytics.fillprofile import HOUR_MS
from lorong.core import schema
from lorong.core.model import to_ms, utc_from_ms
from lorong.storage.influx import InfluxClient, Series, quote_ident, quote_literal
from lorong.storage.retention import existing_policies

_SKIP_COLUMNS = frozenset({schema.TAG_KECAMATAN, schema.TAG_CITY, schema.FIELD_RX})
T = TypeVar("T")


class PerLocalDay(Generic[T]):
    """What is learned from the days before today (fill profiles, PM2.5 daily profiles): computed
    once per InfluxDB database, time zone and local day, then kept (the newest ``size`` keys).

    A run repeated at the same time sees the same value, and a job stepping through days computes
    it once a day instead of every run.
    """

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._values: OrderedDict[tuple[str, str, str, str, Hashable], T] = OrderedDict()

    def get(self, influx: InfluxClient, now: datetime, tz: str, extra: Hashable,
            compute: Callable[[datetime], T]) -> T:
        """``compute(local midnight of now)``, or the value kept for the same database, zone, local
        day and ``extra`` (the settings the value depends on)."""
        zone = ZoneInfo(tz)
        midnight = datetime.combine(now.astimezone(zone).date(), time(0), tzinfo=zone)
        key = (influx.url, influx.database, tz, midnight.date().isoformat(), extra)
        got = self._values.get(key)
        if got is None:
            got = self._values[key] = compute(midnight)
            while len(self._values) > self._size:
                self._values.popitem(last=False)
        return got


def time_window(start: datetime, end: datetime) -> str:
    """InfluxQL condition ``start < time <= end`` (tz-aware datetimes, ms resolution)."""
    return f"time > {to_ms(start)}ms AND time <= {to_ms(end)}ms"


def _frame(series: Sequence[Series], keep: Sequence[str] | None = None) -> pd.DataFrame:
    """Flatten series (one per ``device_id``) into one long frame (see the module docstring)."""
    devices: list[str] = []
    rows: list[list[object]] = []
    columns: list[str] = []
    for s in series:
        if not s.values:
            continue
        if not columns:
            columns = list(s.columns)
        elif list(s.columns) != columns:  # SELECT * on another series: realign by name
            idx = [s.columns.index(c) if c in s.columns else None for c in columns]
            rows.extend([[r[i] if i is not None else None for i in idx] for r in s.values])
            devices.extend([s.tags.get(schema.TAG_DEVICE, "")] * len(s.values))
            continue
        rows.extend(s.values)
        devices.extend([s.tags.get(schema.TAG_DEVICE, "")] * len(s.values))
    wanted = [c for c in columns[1:] if c not in _SKIP_COLUMNS and (keep is None or c in keep)]
    if not rows:
        return pd.DataFrame({"device_id": pd.Series(dtype=str), "time": pd.Series(dtype="datetime64[ns, UTC]"),
                             **{c: pd.Series(dtype=float) for c in (keep or [])}})
    try:  # numbers and nulls only (the usual case): one array, no object column per field
        arr = np.array(rows, dtype=float)
    except (TypeError, ValueError):  # a string field somewhere: column by column, strings to NaN
        raw = pd.DataFrame(rows, columns=columns)
        out = pd.DataFrame({"device_id": devices, "time": pd.to_datetime(raw["time"], unit="ms", utc=True)})
        for c in wanted:
            out[c] = pd.to_numeric(raw[c], errors="coerce").astype(float)
    else:
        out = pd.DataFrame({"device_id": devices,
                            "time": pd.to_datetime(arr[:, 0].astype(np.int64), unit="ms", utc=True)})
        for c in wanted:
            out[c] = arr[:, columns.index(c)]
    for c in keep or []:
        if c not in out:
            out[c] = float("nan")
    return out


def _streamed_frame(series: Iterable[Series], fields: Sequence[str]) -> pd.DataFrame:
    """:func:`_frame` of an aggregate query's series (``time`` then ``fields``, numbers or nulls),
    each turned into an array as it arrives (:meth:`InfluxClient.query_chunked`), so at most one
    chunk of the answer is held as Python lists."""
    devices: list[str] = []
    counts: list[int] = []
    blocks: list[np.ndarray] = []
    for s in series:
        if not s.values:
            continue
        idx = [s.columns.index(c) if c in s.columns else None for c in ("time", *fields)]
        block = np.array(s.values, dtype=float)
        if idx != list(range(len(idx))):  # columns in another order, or one missing
            block = np.column_stack([block[:, i] if i is not None else np.full(len(block), np.nan) for i in idx])
        devices.append(s.tags.get(schema.TAG_DEVICE, ""))
        counts.append(len(block))
        blocks.append(block)
    if not blocks:
        return _frame([], keep=list(fields))
    arr = np.concatenate(blocks)
    out = pd.DataFrame({"device_id": np.repeat(np.array(devices, dtype=object), counts),
                        "time": pd.to_datetime(arr[:, 0].astype(np.int64), unit="ms", utc=True)})
    for i, c in enumerate(fields, start=1):
        out[c] = arr[:, i]
    return out


_TAG_PREFIX = f"{schema.TAG_DEVICE}="


def _table_frame(table: pa.Table, fields: Sequence[str],
                 empty_fields: Sequence[str] | None = None) -> pd.DataFrame | None:
    """:func:`_frame` of a ``GROUP BY device_id`` answer read as CSV (:meth:`InfluxClient.query_csv`): the
    same columns, dtypes and values, built from the Arrow columns without a Python object per value.

    Returns:
        The long frame (``fields`` as float columns, NaN where a point lacks one; an empty answer's frame
        has the columns ``empty_fields``, as ``_frame([], keep=empty_fields)``), or None when a ``tags``
        value is not ``device_id=...`` (another grouping): :func:`_frame` of the series then.
    """
    if table.num_columns == 0 or table.num_rows == 0:
        return _frame([], keep=list(empty_fields) if empty_fields is not None else None)
    tags = table["tags"]
    if not pc.all(pc.starts_with(tags, _TAG_PREFIX)).as_py():
        return None
    devices = pc.utf8_slice_codeunits(tags, len(_TAG_PREFIX))
    if pc.any(pc.match_substring(devices, "\\")).as_py():  # line protocol's escapes of a space, comma, equals
        devices = pc.replace_substring_regex(devices, pattern=r"\\([ ,=])", replacement=r"\1")
    # one Python string per device, not per row (as the series' rows share their tag's): a code per row
    codes = (devices.combine_chunks() if isinstance(devices, pa.ChunkedArray) else devices).dictionary_encode()
    names = np.array(codes.dictionary.to_pylist(), dtype=object)
    out = pd.DataFrame({"device_id": names[codes.indices.to_numpy(zero_copy_only=False)],
                        "time": pd.to_datetime(table["time"].to_numpy(), unit="ms", utc=True)})
    for c in fields:
        out[c] = table[c].to_numpy(zero_copy_only=False).astype(float) if c in table.column_names \
            else np.full(len(out), np.nan)
    return out


def _columns_frame(influx: InfluxClient, q: str, fields: Sequence[str]) -> pd.DataFrame:
    """:func:`_streamed_frame` of an aggregate query's answer (``time`` then ``fields``, grouped by device),
    read as CSV into columns (:meth:`InfluxClient.query_csv`, :func:`_table_frame`): the same frame, without
    a Python object per value. The forecast's hourly means are read on a thread beside the run's own work,
    whose Python held the interpreter's lock for seconds while parsing the JSON chunks (20,000 bins: the
    ``device_latest`` refresh beside it took 1-1.5 s instead of 0.1-0.2 s, bench/analytics_job.py). One
    answer is at most ``chunk_s`` of means (:func:`hourly_means`), held as text and columns at once.
    """
    got = influx.query_csv(q, fields)
    if isinstance(got, list):  # the server answered JSON or MessagePack
        return _streamed_frame(got, fields)
    frame = _table_frame(got, fields, empty_fields=fields) if got is not None else None
    return frame if frame is not None else _streamed_frame(influx.query_chunked(q), fields)


def field_keys(influx: InfluxClient, measurement: str) -> list[str]:
    """The measurement's field keys (``SHOW FIELD KEYS``), each once, in InfluxDB's order (by name)."""
    out: list[str] = []
    for s in influx.query(f"SHOW FIELD KEYS FROM {quote_ident(measurement)}"):
        for row in s.values:
            if row[0] not in out:
                out.append(row[0])
    return out


def recent_points(influx: InfluxClient, measurement: str, end: datetime, lookback: timedelta,
                  limit: int | None = None, devices: Sequence[str] | None = None) -> pd.DataFrame:
    """Raw points of every device within ``(end - lookback, end]``, optionally only the newest
    ``limit`` per device (``ORDER BY time DESC LIMIT n`` applies per series) and only ``devices``.

    Only the fields are asked for (:func:`field_keys`, less ``rx_ms``): no tags, no receive times,
    a third less to send and parse than ``SELECT *``. The answer is read as CSV into columns
    (:meth:`InfluxClient.query_csv`, :func:`_table_frame`), the same frame as the MessagePack rows gave
    to the last bit (``tests/analytics/test_frames.py``), which are read when a field holds strings.

    Returns:
        Long frame, every numeric field of the measurement as a float column (``rx_ms`` and the
        tags dropped), sorted by ``device_id`` then ``time`` ascending.

    Raises:
        StoreUnavailable, StoreRejected: from the client.
    """
    if devices is not None and not devices:
        return _frame([])
    fields = [f for f in field_keys(influx, measurement) if f not in _SKIP_COLUMNS]
    if not fields:  # no such measurement yet
        return _frame([])
    where = time_window(end - lookback, end) + _only(devices)
    q = (f"SELECT {', '.join(quote_ident(f) for f in fields)} FROM {quote_ident(measurement)} WHERE {where} "
         f"GROUP BY {quote_ident(schema.TAG_DEVICE)}")
    if limit is not None:
        q += f" ORDER BY time DESC LIMIT {int(limit)}"
    got = influx.query_csv(q, fields)
    frame = _frame(got) if isinstance(got, list) else _table_frame(got, fields) if got is not None else None
    if frame is None:  # a field that is not a number, or tags not as expected: the per-row reading
        frame = _frame(influx.query(q, packed=True))
    if limit is not None:
        frame = frame.sort_values(["device_id", "time"], kind="stable").reset_index(drop=True)
    return frame


def _only(devices: Sequence[str] | None) -> str:
    """`` AND device_id =~ /^(?:a|b)$/`` for a device list, empty for None."""
    if devices is None:
        return ""
    return f" AND {quote_ident(schema.TAG_DEVICE)} =~ /^(?:{'|'.join(_regex(d) for d in devices)})$/"


def _regex(text: str) -> str:
    """``text`` as a literal inside an InfluxQL regular expression (Go RE2 syntax)."""
    return re.sub(r"([\\.^$|?*+()\[\]{}/])", r"\\\1", text)


def bucket_means(influx: InfluxClient, measurement: str, fields: Sequence[str], start: datetime, end: datetime,
                 every: str, agg: str = "mean", devices: Sequence[str] | None = None) -> pd.DataFrame:
    """``agg`` of ``fields`` per device in ``every``-long buckets (``GROUP BY time(every)``, empty
    buckets dropped with ``fill(none)``).

    Args:
        fields: field keys, e.g. ``["pm25", "relativeHumidity"]``.
        every: InfluxQL duration literal (``10m``, ``1h``); buckets are aligned to the epoch.
        agg: InfluxQL aggregate or selector (``mean``, ``last``, ``max`` ...).
        devices: only these devices (a regular expression on the tag); all when None.

    Returns:
        Long frame; ``time`` is the bucket start; one float column per field (NaN where a
        bucket holds no value of that field).
    """
    sel = ", ".join(f"{agg}({quote_ident(f)}) AS {quote_ident(f)}" for f in fields)
    q = (f"SELECT {sel} FROM {quote_ident(measurement)} WHERE {time_window(start, end)}{_only(devices)} "
         f"GROUP BY time({every}), {quote_ident(schema.TAG_DEVICE)} fill(none)")
    return _frame(influx.query(q), keep=list(fields))


def bucket_means_chunked(influx: InfluxClient, measurement: str, fields: Sequence[str], start: datetime,
                         end: datetime, every_s: int, chunk_s: int = 86_400) -> pd.DataFrame:
    """:func:`bucket_means` (``mean``, every device) of a long window, read ``chunk_s`` at a time.

    A fortnight of hourly means of 20,000 bins is 6.7 million rows: in one answer, the JSON and its
    Python lists take gigabytes; read a day at a time, one day's rows are held as lists at once
    (bench/analytics_job.py). The cuts fall on multiples of ``chunk_s`` (itself a multiple of
    ``every_s``), so no bucket is split, and each point is in exactly one piece (``time >= cut``
    on one side, ``time < cut`` on the other): the result is the one query's, row for row.

    Returns:
        Long frame as :func:`bucket_means`, each device's rows together in time order.

    Raises:
        ValueError: ``chunk_s`` is not a positive multiple of ``every_s``.
    """
    if chunk_s <= 0 or chunk_s % every_s:
        raise ValueError(f"chunk_s {chunk_s} is not a positive multiple of every_s {every_s}")
    lo_ms, hi_ms, step = to_ms(start), to_ms(end), chunk_s * 1000
    cuts = list(range(lo_ms - lo_ms % step + step, hi_ms, step)) if hi_ms > lo_ms else []
    bounds = [f"time > {lo_ms}ms", *(f"time >= {c}ms" for c in cuts)]
    uppers = [*(f"time < {c}ms" for c in cuts), f"time <= {hi_ms}ms"]
    sel = ", ".join(f"mean({quote_ident(f)}) AS {quote_ident(f)}" for f in fields)
    parts = []
    for lower, upper in zip(bounds, uppers, strict=True):
        q = (f"SELECT {sel} FROM {quote_ident(measurement)} WHERE {lower} AND {upper} "
             f"GROUP BY time({every_s}s), {quote_ident(schema.TAG_DEVICE)} fill(none)")
        parts.append(_frame(influx.query(q), keep=list(fields)))
    parts = [p for p in parts if not p.empty] or parts[:1]  # an empty part's dtypes are not the others'
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    codes, _ = pd.factorize(frame["device_id"])
    return frame.iloc[np.argsort(codes, kind="stable")].reset_index(drop=True)


FINAL_AFTER_H = 3
"""Hours after which an hourly mean in the ``hourly`` policy is final: its continuous query
resamples the last three hours every hour (``RESAMPLE EVERY 1h FOR 3h``,
:func:`lorong.storage.retention.levels`), so the bucket starting at ``h`` is last rewritten at
``h + 3 h``. Only buckets that start before ``floor_hour(now) - 3 h`` are read from the means (the
newest of them was last rewritten an hour before ``now``'s hour began)."""


def _mean_query(measurement: str, fields: Sequence[str], where: str, devices: Sequence[str] | None,
                rp: str | None = None) -> str:
    sel = ", ".join(f"mean({quote_ident(f)}) AS {quote_ident(f)}" for f in fields)
    source = quote_ident(measurement) if rp is None else f"{quote_ident(rp)}.{quote_ident(measurement)}"
    return (f"SELECT {sel} FROM {source} WHERE {where}{_only(devices)} "
            f"GROUP BY time(1h), {quote_ident(schema.TAG_DEVICE)} fill(none)")


def hourly_plan(start: datetime, end: datetime, now: datetime, chunk_s: int = 86_400,
                end_open: bool = False) -> tuple[list[tuple[str | None, str]], int]:
    """The reads of :func:`hourly_means`, covering ``(start, end]`` (``(start, end)`` when ``end_open``)
    once, in time order.

    Whole hourly buckets that lie inside the window and are final (:data:`FINAL_AFTER_H`) come from
    the ``hourly`` policy, cut at multiples of ``chunk_s``; the partial first bucket (the raw window
    excludes a point at ``start``), the buckets not final yet (the current hour among them) and a
    partial last bucket are read from the raw points.

    Returns:
        ``([(policy, time condition), ...], end of the means)``: the policy is ``hourly`` or
        ``None`` (the raw points); the end is the epoch ms where the means stop, 0 when the plan
        reads none (one raw read of the whole window).
    """
    lo, hi = to_ms(start), to_ms(end)
    upto = f"time < {hi}ms" if end_open else f"time <= {hi}ms"
    first = lo - lo % HOUR_MS + HOUR_MS  # the first bucket holding no point at or before start
    now_ms = to_ms(now)
    stop = min(hi - hi % HOUR_MS, now_ms - now_ms % HOUR_MS - FINAL_AFTER_H * HOUR_MS)
    if stop <= first:
        return [(None, f"time > {lo}ms AND {upto}")], 0
    step = chunk_s * 1000
    cuts = [first, *range(first - first % step + step, stop, step), stop]
    plan: list[tuple[str | None, str]] = [(None, f"time > {lo}ms AND time < {first}ms")]
    plan += [(schema.RP_HOURLY, f"time >= {a}ms AND time < {b}ms") for a, b in pairwise(cuts) if b > a]
    if not (end_open and stop == hi):  # an open window ending on a final hour needs no raw tail
        plan.append((None, f"time >= {stop}ms AND {upto}"))
    return plan, stop


def hourly_means(influx: InfluxClient, measurement: str, fields: Sequence[str], start: datetime, end: datetime,
                 now: datetime, devices: Sequence[str] | None = None, chunk_s: int = 86_400,
                 end_open: bool = False) -> pd.DataFrame:
    """:func:`bucket_means` of ``fields`` in hourly buckets over ``(start, end]`` (``mean``,
    ``fill(none)``), with the final whole hours read from the ``hourly`` retention policy
    (:mod:`lorong.storage.retention`) instead of averaged from the raw points again
    (:func:`hourly_plan`): over a week of 20,000 bins, 3.4 million stored means instead of 20
    million raw points (bench/analytics_job.py).

    A stored hourly mean is the continuous query's ``mean`` of the same raw points, so a bucket
    read from it holds the number the raw query gives (``mean`` of one value is that value;
    ``tests/analytics/test_hourly_means.py``). Except: a device whose points of one hour lie in
    two series (its ``kecamatan`` or ``city`` tag changed within the hour) gets the mean of the two
    series' means; a point that arrives more than :data:`FINAL_AFTER_H` hours late is in the raw
    points only.

    Raw points only (as :func:`bucket_means`) when the database has no ``hourly`` policy, or when
    the policy holds no mean of the last hour the plan would read from it (the means of past
    data loaded later were never backfilled: ``lorong storage retention backfill``).

    Args:
        now: the run's time; decides which buckets are final.
        devices: only these devices; all when None.
        chunk_s: the means are read this many seconds at a time (a whole number of hours; bounds
            the answer's size, as :func:`bucket_means_chunked`).
        end_open: the window is ``(start, end)``: a point at ``end`` is left out (``end`` on the hour:
            the buckets before it, whole, for the ones from ``end`` on to come from elsewhere,
            :func:`points_hourly_means`).

    Returns:
        Long frame as :func:`bucket_means`, sorted by device then time.

    Raises:
        ValueError: ``chunk_s`` is not a positive multiple of an hour.
    """
    if chunk_s <= 0 or chunk_s % 3600:
        raise ValueError(f"chunk_s {chunk_s} is not a positive multiple of 3600")
    plan = _ready_plan(influx, measurement, fields[0], start, end, now, chunk_s, end_open)
    parts = [_columns_frame(influx, _mean_query(measurement, fields, where, devices, rp), fields) for rp, where in plan]
    parts = [p for p in parts if not p.empty] or parts[:1]  # an empty part's dtypes are not the others'
    if len(parts) == 1:
        return parts[0]
    frame = pd.concat(parts, ignore_index=True)
    return frame.sort_values(["device_id", "time"], kind="stable").reset_index(drop=True)


def _ready_plan(influx: InfluxClient, measurement: str, field: str, start: datetime, end: datetime,
                now: datetime, chunk_s: int, end_open: bool = False) -> list[tuple[str | None, str]]:
    """:func:`hourly_plan`, or one raw read of the window when its means are not there (:func:`_means_ready`)."""
    plan, means_end = hourly_plan(start, end, now, chunk_s, end_open)
    if means_end and not _means_ready(influx, measurement, field, means_end):
        return [(None, f"time > {to_ms(start)}ms AND time {'<' if end_open else '<='} {to_ms(end)}ms")]
    return plan


def _means_ready(influx: InfluxClient, measurement: str, field: str, end_ms: int) -> bool:
    """Whether the ``hourly`` policy exists and holds a mean of ``field`` in the hour before ``end_ms``."""
    if schema.RP_HOURLY not in existing_policies(influx):
        return False
    q = (f"SELECT count({quote_ident(field)}) FROM {quote_ident(schema.RP_HOURLY)}.{quote_ident(measurement)} "
         f"WHERE time >= {end_ms - HOUR_MS}ms AND time < {end_ms}ms")
    return any(row[1] for s in influx.query(q) for row in s.values)


def points_hourly_means(points: pd.DataFrame, field: str, after: datetime,
                        devices: Collection[str] | None = None) -> pd.DataFrame:
    """:func:`hourly_means` of one field over ``(after, end of points]``, computed from raw points the
    run already holds instead of asked of InfluxDB again (the fill forecast's newest hours are in the
    job's raw window; bench/analytics_job.py).

    The numbers are InfluxDB's to the last bit: its ``mean`` adds a bucket's values in time order,
    then divides by their count (``FloatMeanReducer``, influxql/functions.go of InfluxDB 1.x), and so
    does this (never numpy's pairwise sum); ``tests/analytics/test_hourly_means.py`` compares the two
    on a real InfluxDB. Except a device whose points of one hour lie in two series (its tags changed
    within the hour), which InfluxDB may add in another order.

    Args:
        points: long frame of raw points (:func:`recent_points`), each device's rows together in
            time order, holding every point of the device within ``(after, its newest]``.
        after: start of the window (excluded, as InfluxDB's ``time >`` bound).
        devices: only these devices; all when None.

    Returns:
        Long frame as :func:`hourly_means` (``device_id``, ``time`` as the bucket start, ``field``),
        sorted by device then time; buckets without a value are left out (``fill(none)``).
    """
    if points.empty or field not in points:
        return _frame([], keep=[field])
    t_ms = points["time"].dt.tz_convert(None).to_numpy().astype("datetime64[ms]").astype(np.int64)
    values = points[field].to_numpy(dtype=float)
    device = points["device_id"].to_numpy()
    keep = (t_ms > to_ms(after)) & ~np.isnan(values)
    if devices is not None:
        keep &= points["device_id"].isin(list(devices)).to_numpy()
    t_ms, values, device = t_ms[keep], values[keep], device[keep]
    if not len(t_ms):
        return _frame([], keep=[field])
    bucket = t_ms - t_ms % HOUR_MS
    first = np.r_[True, (device[1:] != device[:-1]) | (bucket[1:] != bucket[:-1])]
    starts = np.flatnonzero(first)
    group = np.cumsum(first) - 1
    rank = np.arange(len(t_ms)) - starts[group]
    sums = np.zeros(len(starts))
    for k in range(int(rank.max()) + 1):  # one addition per value, in time order (no index twice per step)
        at = rank == k
        sums[group[at]] += values[at]
    counts = np.diff(np.r_[starts, len(t_ms)])
    return pd.DataFrame({"device_id": device[starts],
                         "time": pd.to_datetime(bucket[starts], unit="ms", utc=True),
                         field: sums / counts})


def hourly_series(influx: InfluxClient, measurement: str, field: str, start: datetime, end: datetime,
                  now: datetime, chunk_s: int = 86_400) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`hourly_means` of one field as ``{device_id: (t_ms, values)}`` (bucket starts, epoch ms
    ascending; no NaN), built from the streamed answers without a long frame: a week of 20,000
    bins' means held once as arrays (the frame, its sorted copy and its split took the job's peak
    past 1 GB; bench/analytics_job.py).

    The devices come in :func:`bucket_means_chunked`'s order (by the ``chunk_s`` piece after
    ``start`` that holds their first bucket, then by id), so what is learned from them
    (:func:`analytics.fillpool.learn_profiles`) sees the bins in the order the raw read gave.
    """
    plan = _ready_plan(influx, measurement, field, start, end, now, chunk_s)
    got: dict[str, list[np.ndarray]] = {}
    for rp, where in plan:
        for s in influx.query_chunked(_mean_query(measurement, [field], where, None, rp)):
            if s.values:
                block = np.array(s.values, dtype=float)[:, [s.columns.index("time"), s.columns.index(field)]]
                got.setdefault(s.tags.get(schema.TAG_DEVICE, ""), []).append(block)
    lo, step = to_ms(start), chunk_s * 1000
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for device in sorted(got, key=lambda d: ((int(got[d][0][0, 0]) - (lo - lo % step)) // step, d)):
        arr = np.concatenate(got.pop(device)) if len(got[device]) > 1 else got.pop(device)[0]
        ok = ~np.isnan(arr[:, 1])
        out[device] = (arr[ok, 0].astype(np.int64), np.ascontiguousarray(arr[ok, 1]))
    return out


def window_points(influx: InfluxClient, measurement: str, fields: Sequence[str], start: datetime,
                  end: datetime) -> pd.DataFrame:
    """Raw points of ``fields`` of every device within ``(start, end]``.

    Returns:
        Long frame: ``device_id``, ``time`` and one float column per field (NaN where a point lacks
        it), sorted by device then time.

    Raises:
        StoreUnavailable, StoreRejected: from the client.
    """
    sel = ", ".join(quote_ident(f) for f in fields)
    q = (f"SELECT {sel} FROM {quote_ident(measurement)} WHERE {time_window(start, end)} "
         f"GROUP BY {quote_ident(schema.TAG_DEVICE)}")
    return _frame(influx.query(q), keep=list(fields))


RECENT_FIRST = timedelta(days=1)
"""How far back :func:`runs_began` looks first for a value below the threshold, before the rest of
its look-back."""


def run_began(influx: InfluxClient, measurement: str, field: str, device_id: str, threshold: float,
              before: datetime, lookback: timedelta) -> datetime | None:
    """When the device's newest run of ``field`` values at or above ``threshold`` that reaches ``before``
    began: the first reading after its last value below ``threshold`` within ``(before - lookback,
    before)``. Two queries (``last`` below the threshold, then ``first`` after it); many devices at
    once: :func:`runs_began`.

    Returns:
        The run's first reading (UTC), or None when no value below the threshold is stored in the
        span (the run is longer than it, or the device has no older readings).

    Raises:
        StoreUnavailable, StoreRejected: from the client.
    """
    return runs_began(influx, measurement, field, [(device_id, threshold, before)], lookback)[0]


def runs_began(influx: InfluxClient, measurement: str, field: str,
               asks: Sequence[tuple[str, float, datetime]], lookback: timedelta) -> list[datetime | None]:
    """:func:`run_began` of each ``(device_id, threshold, before)`` in ``asks``, in order, with the
    statements of every device sent many to a request (:meth:`InfluxClient.query_each`), and the last
    value below the threshold looked for in the newest :data:`RECENT_FIRST` of the look-back first
    (then in the rest of it for the devices without one there: the same value, since the newest in the
    whole span is the newest in the part that holds one). The first run of a day of 20,000 bins asked
    two statements for each of 9,500 bins found full, one request each and each over a week, in
    313 s (bench/analytics_job.py).

    Raises:
        StoreUnavailable, StoreRejected: from the client.
    """
    f, m, tag = quote_ident(field), quote_ident(measurement), quote_ident(schema.TAG_DEVICE)

    def last_below(ids: Iterable[int], back: timedelta, upper: Callable[[datetime], str]) -> dict[int, int]:
        """Epoch ms of the last value below the threshold in ``(before - back, upper]`` of each ask."""
        ids = list(ids)
        got = influx.query_each([
            f"SELECT last({f}) FROM {m} WHERE {tag} = {quote_literal(asks[i][0])} AND {f} < {float(asks[i][1])!r} "
            f"AND time > {to_ms(asks[i][2] - back)}ms AND {upper(asks[i][2])}" for i in ids])
        return {i: int(g[0].values[0][0]) for i, g in zip(ids, got, strict=True) if g and g[0].values}

    # the newest day first (a bin full now was mostly below it within the day: one or two shards read, not
    # the whole look-back's), then the rest of the look-back for the bins without a value below in it
    near = min(lookback, RECENT_FIRST)
    found = last_below(range(len(asks)), near, lambda b: f"time < {to_ms(b)}ms")
    if lookback > near:
        found.update(last_below([i for i in range(len(asks)) if i not in found], lookback,
                                lambda b: f"time <= {to_ms(b - near)}ms"))
    ordered = sorted(found.items())
    after = influx.query_each([
        f"SELECT first({f}) FROM {m} WHERE {tag} = {quote_literal(asks[i][0])} AND time > {t_ms}ms "
        f"AND time <= {to_ms(asks[i][2])}ms" for i, t_ms in ordered])
    out: list[datetime | None] = [None] * len(asks)
    for (i, _), got in zip(ordered, after, strict=True):
        if got and got[0].values:
            out[i] = utc_from_ms(int(got[0].values[0][0]))
    return out


def jumps(influx: InfluxClient, measurement: str, field: str, start: datetime, end: datetime,
          min_abs: float) -> pd.DataFrame:
    """Every step between consecutive raw points of ``field`` whose size is at least ``min_abs``.

    InfluxDB computes ``difference`` (after - before), ``moving_average(field, 2)`` ((before +
    after) / 2) and ``elapsed`` (ms since the previous point) per device; an outer query keeps
    the big steps only, so a day of 10-minute readings of 5,000 bins returns a few thousand rows.
    A step whose earlier point is at or before ``start`` is not seen.

    Returns:
        Long frame with ``time`` (the later point), ``delta``, ``before``, ``after`` (field
        units) and ``prev_time`` (time of the earlier point, UTC), sorted by device and time.
    """
    f = quote_ident(field)
    inner = (f"SELECT difference({f}) AS d, moving_average({f}, 2) AS m, elapsed({f}, 1ms) AS e "
             f"FROM {quote_ident(measurement)} WHERE {time_window(start, end)} "
             f"GROUP BY {quote_ident(schema.TAG_DEVICE)}")
    q = f"SELECT d, m, e FROM ({inner}) WHERE d <= {-abs(min_abs)!r} OR d >= {abs(min_abs)!r} " \
        f"GROUP BY {quote_ident(schema.TAG_DEVICE)}"
    raw = _frame(influx.query(q), keep=["d", "m", "e"])
    out = pd.DataFrame({
        "device_id": raw["device_id"], "time": raw["time"], "delta": raw["d"],
        "before": raw["m"] - raw["d"] / 2.0, "after": raw["m"] + raw["d"] / 2.0,
        "prev_time": raw["time"] - pd.to_timedelta(raw["e"], unit="ms"),
    })
    return out.sort_values(["device_id", "time"], kind="stable").reset_index(drop=True)
