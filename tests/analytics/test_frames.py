"""The recent raw points as the rules read them: the fields only (no tags, no receive times),
NaN where a point lacks a field or holds a string, nothing for a measurement never written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from analytics.frames import (
    RECENT_FIRST,
    _frame,
    bucket_means,
    bucket_means_chunked,
    field_keys,
    recent_points,
    run_began,
    runs_began,
)
from lorong.core import schema
from lorong.core.errors import StoreRejected
from lorong.core.model import to_ms
from lorong.storage.influx import InfluxClient, line

NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def test_recent_points_are_the_fields_of_the_window(influx: InfluxClient) -> None:
    tags = {schema.TAG_DEVICE: "B-1", schema.TAG_KECAMATAN: "Ujung Pandang", schema.TAG_CITY: "makassar"}
    influx.write_lines([
        line(schema.MEASUREMENT_BIN, tags, {schema.FIELD_FILL: 0.5, schema.FIELD_RX: 1.0, "distance": 700},
             to_ms(NOW - timedelta(minutes=20))),
        line(schema.MEASUREMENT_BIN, tags, {schema.FIELD_FILL: 0.25, "firmware": "v1"},
             to_ms(NOW - timedelta(minutes=10))),
        line(schema.MEASUREMENT_BIN, {**tags, schema.TAG_DEVICE: "B-2"}, {schema.FIELD_FILL: 0.75},
             to_ms(NOW - timedelta(minutes=5))),
        line(schema.MEASUREMENT_BIN, tags, {schema.FIELD_FILL: 0.1}, to_ms(NOW - timedelta(hours=3))),  # too old
    ])
    assert field_keys(influx, schema.MEASUREMENT_BIN) == ["distance", "fillingLevel", "firmware", "rx_ms"]
    frame = recent_points(influx, schema.MEASUREMENT_BIN, NOW, timedelta(hours=2))
    assert list(frame.columns) == ["device_id", "time", "distance", "fillingLevel", "firmware"]
    assert frame["device_id"].tolist() == ["B-1", "B-1", "B-2"]
    assert frame["time"].tolist() == [NOW - timedelta(minutes=k) for k in (20, 10, 5)]
    assert frame["fillingLevel"].tolist() == [0.5, 0.25, 0.75]
    assert frame["distance"].tolist()[0] == 700.0 and np.isnan(frame["distance"].tolist()[1:]).all()
    assert np.isnan(frame["firmware"].to_numpy()).all()  # a string is not a number
    numbers_only = recent_points(influx, schema.MEASUREMENT_BIN, NOW - timedelta(minutes=15), timedelta(minutes=10))
    assert numbers_only["fillingLevel"].tolist() == [0.5] and numbers_only["distance"].tolist() == [700.0]
    assert recent_points(influx, schema.MEASUREMENT_AIR, NOW, timedelta(hours=2)).empty


def test_a_packed_answer_holds_the_json_answer(influx: InfluxClient) -> None:
    """InfluxDB's MessagePack answer (``packed``, what :func:`recent_points` reads) has the JSON answer's
    series, tags, columns and values: floats, whole-number floats (as floats, where JSON gives ints),
    strings, booleans, nulls; and an error in it is read as the error's text."""
    influx.write_lines([
        line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: dev}, fields, to_ms(NOW - timedelta(minutes=m)))
        for dev, fields, m in (("B-1", {schema.FIELD_FILL: 0.125, "distance": 700.0}, 20),
                               ("B-1", {schema.FIELD_FILL: 0.5, "firmware": "v1", "lid": True}, 10),
                               ("B-2", {"distance": 612.5}, 5))])
    q = f'SELECT * FROM "{schema.MEASUREMENT_BIN}" GROUP BY "device_id"'
    packed, plain = influx.query(q, packed=True), influx.query(q)
    assert [(s.tags, s.columns, s.values) for s in packed] == [(s.tags, s.columns, s.values) for s in plain]
    assert [s.tags["device_id"] for s in packed] == ["B-1", "B-2"]
    assert packed[0].values[0][packed[0].columns.index("distance")] == 700.0
    assert type(packed[0].values[0][packed[0].columns.index("distance")]) is float  # MessagePack, not JSON
    assert type(plain[0].values[0][plain[0].columns.index("distance")]) is int
    assert packed[0].values[1][packed[0].columns.index("firmware")] == "v1"
    assert packed[0].values[1][packed[0].columns.index("lid")] is True
    assert packed[0].values[0][packed[0].columns.index("lid")] is None
    with pytest.raises(StoreRejected, match="error parsing query"):
        influx.query("SELEC 1", packed=True)


def test_means_read_a_day_at_a_time_are_the_one_query_means(influx: InfluxClient) -> None:
    """Points on the cuts (UTC midnights), on the window's open start and on its closed end land in the
    same buckets as in one query over the whole window."""
    start, end = datetime(2026, 3, 1, 0, 0, tzinfo=UTC), datetime(2026, 3, 4, 0, 0, tzinfo=UTC)
    points = []
    for dev, off in (("B-1", 0), ("B-2", 7)):
        for k in range(0, 3 * 24 * 60 + 1, 20):  # every 20 minutes, on the hour and the midnights too
            at = start + timedelta(minutes=k + off)
            points.append(line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: dev}, {schema.FIELD_FILL: (k % 97) / 97},
                               to_ms(at)))
    influx.write_lines(points)
    for lo, hi in ((start, end), (start + timedelta(hours=5, minutes=3), end - timedelta(hours=2))):
        one = bucket_means(influx, schema.MEASUREMENT_BIN, [schema.FIELD_FILL], lo, hi, "1h")
        days = bucket_means_chunked(influx, schema.MEASUREMENT_BIN, [schema.FIELD_FILL], lo, hi, 3600)
        assert len(one) > 100
        assert one.equals(days), (one.compare(days) if one.shape == days.shape else (one.shape, days.shape))
    with pytest.raises(ValueError):
        bucket_means_chunked(influx, schema.MEASUREMENT_BIN, [schema.FIELD_FILL], start, end, 3600, chunk_s=5400)


def test_runs_of_many_bins_began_as_each_alone(influx: InfluxClient) -> None:
    """:func:`runs_began` sends every bin's two statements in a few requests; each bin gets the first
    reading after its last one below its threshold, as :func:`run_began` of that bin alone: a bin whose
    id needs quoting, a bin never below in the span (None), a bin without readings (None), and
    requests of two statements each (the batches' results keep their order)."""
    t0 = NOW - timedelta(hours=6)
    levels = {"A": [0.5, 0.6, 0.9, 0.95, 0.97], "O'Hara 1": [0.2, 0.85, 0.7, 0.9, 0.9],
              "FULL": [0.9, 0.9, 0.95, 0.9, 0.92]}
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: dev}, {schema.FIELD_FILL: v},
                             to_ms(t0 + timedelta(minutes=10 * k)))
                        for dev, vs in levels.items() for k, v in enumerate(vs)])
    # below the threshold only before the newest day (RECENT_FIRST) of the look-back, once exactly at its start
    for dev, low_at in (("OLD", NOW - timedelta(days=2)), ("EDGE", NOW - RECENT_FIRST)):
        influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: dev}, {schema.FIELD_FILL: v},
                                 to_ms(low_at + timedelta(minutes=10 * k))) for k, v in enumerate([0.3, 0.9, 0.95])])
    asks = [("A", 0.8, NOW), ("O'Hara 1", 0.8, NOW), ("O'Hara 1", 0.6, NOW), ("FULL", 0.8, NOW),
            ("NONE", 0.8, NOW), ("A", 0.8, t0 + timedelta(minutes=25)), ("OLD", 0.8, NOW), ("EDGE", 0.8, NOW)]
    want = [t0 + timedelta(minutes=20), t0 + timedelta(minutes=30), t0 + timedelta(minutes=10), None, None,
            t0 + timedelta(minutes=20), NOW - timedelta(days=2) + timedelta(minutes=10),
            NOW - RECENT_FIRST + timedelta(minutes=10)]
    got = runs_began(influx, schema.MEASUREMENT_BIN, schema.FIELD_FILL, asks, timedelta(days=3))
    assert got == want
    alone = [run_began(influx, schema.MEASUREMENT_BIN, schema.FIELD_FILL, d, thr, before, timedelta(days=3))
             for d, thr, before in asks]
    assert alone == want
    short = runs_began(influx, schema.MEASUREMENT_BIN, schema.FIELD_FILL, asks[-2:], timedelta(days=1))
    assert short == [None, None]  # the look-back holds no value below: OLD's is older, EDGE's at its open end
    two_a_request = influx.query_each([f'SELECT last("fillingLevel") FROM "{schema.MEASUREMENT_BIN}" '
                                       f"WHERE \"device_id\" = '{d}'" for d in ("A", "NONE", "FULL")], batch=2)
    assert [[s.values[0][1] for s in got] for got in two_a_request] == [[0.97], [], [0.92]]
    with pytest.raises(StoreRejected, match="no_such_function"):
        influx.query_each(['SELECT last("fillingLevel") FROM "waste_container"', 'SELECT no_such_function(x) FROM y'])


def test_recent_points_read_as_csv_are_the_packed_rows_frame(influx: InfluxClient) -> None:
    """:func:`recent_points` reads InfluxDB's CSV answer into columns: the frame the MessagePack rows gave
    (:func:`analytics.frames._frame`), value for value to the last bit, for device ids with the characters
    line protocol escapes in tags (space, comma, equals), a quote and a non-ASCII letter, whole-number
    floats, floats that need 17 digits, extremes, a point lacking a field, and the newest point per device."""
    ids = ["B-1", "bin 2", "bin,3", "bin=4", 'bin"5', "tempé-6"]
    values = [0.1 + 0.2, 971.0, 1e300, 5e-324, -0.0, 2.0 / 3.0, 123456789.123456789, 0.0345]
    points = []
    for i, dev in enumerate(ids):
        tags = {schema.TAG_DEVICE: dev, schema.TAG_KECAMATAN: "Tallo", schema.TAG_CITY: "makassar"}
        for k in range(6):
            fields: dict[str, float] = {schema.FIELD_FILL: values[(i + k) % len(values)],
                                        "distance": float(900 + 7 * k + i), schema.FIELD_RX: 1.0}
            if (i + k) % 4 == 0:
                fields[schema.FIELD_BATTERY] = 0.95 - k / 100
            points.append(line(schema.MEASUREMENT_BIN, tags, fields, to_ms(NOW - timedelta(minutes=10 * k + i))))
    influx.write_lines(points)
    q = ('SELECT "batteryLevel", "distance", "fillingLevel" FROM "waste_container" '
         f'WHERE time > {to_ms(NOW - timedelta(hours=2))}ms AND time <= {to_ms(NOW)}ms GROUP BY "device_id"')
    rows = _frame(influx.query(q, packed=True))
    got = recent_points(influx, schema.MEASUREMENT_BIN, NOW, timedelta(hours=2))
    assert sorted(set(got["device_id"])) == sorted(ids) and len(got) == 36
    assert np.isnan(got[schema.FIELD_BATTERY]).sum() == 27
    pd.testing.assert_frame_equal(got, rows, check_exact=True)
    assert (got[schema.FIELD_FILL].to_numpy().view(np.int64) == rows[schema.FIELD_FILL].to_numpy().view(np.int64)).all()
    newest = recent_points(influx, schema.MEASUREMENT_BIN, NOW, timedelta(days=1), limit=1, devices=["bin,3", 'bin"5'])
    assert newest["device_id"].tolist() == ['bin"5', "bin,3"]  # InfluxDB's order of the series: by tag value
    assert newest["time"].tolist() == [NOW - timedelta(minutes=4), NOW - timedelta(minutes=2)]


def test_query_csv_answers(influx: InfluxClient) -> None:
    """:meth:`InfluxClient.query_csv`: a table of the answer, an empty one for no rows, None when a column
    asked as floats holds a string, and InfluxDB's error raised."""
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "B-1"}, {"firmware": "v1", "n": 3.5},
                             to_ms(NOW))])
    q = f'SELECT "n", "firmware" FROM "waste_container" WHERE time <= {to_ms(NOW)}ms GROUP BY "device_id"'
    table = influx.query_csv(q, ["n"])
    assert not isinstance(table, list) and table is not None
    assert table.column_names == ["name", "tags", "time", "n", "firmware"]
    assert table.to_pylist() == [{"name": "waste_container", "tags": "device_id=B-1", "time": to_ms(NOW), "n": 3.5,
                                  "firmware": "v1"}]
    assert influx.query_csv(q, ["n", "firmware"]) is None
    empty = influx.query_csv(q.replace("<=", "<"), ["n"])
    assert not isinstance(empty, list) and empty is not None and empty.num_rows == 0
    with pytest.raises(StoreRejected):
        influx.query_csv('SELECT "n" FROM "waste_container" WHERE time > now() GROUP', ["n"])


def test_a_clone_reads_the_same_database_on_its_own_connections(influx: InfluxClient) -> None:
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "B-1"}, {schema.FIELD_FILL: 0.5}, to_ms(NOW))])
    q = f'SELECT "fillingLevel" FROM "waste_container" WHERE time <= {to_ms(NOW)}ms GROUP BY "device_id"'
    with influx.clone() as own:
        assert (own.url, own.database) == (influx.url, influx.database)
        assert own.query(q) == influx.query(q) and own.query(q)[0].values == [[to_ms(NOW), 0.5]]
    assert influx.query(q)[0].values == [[to_ms(NOW), 0.5]]  # the original's pool is its own, still open
