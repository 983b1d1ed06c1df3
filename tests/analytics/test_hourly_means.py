"""Hourly means read from the ``hourly`` retention policy (the continuous query's means) are the
means the job computed from raw points before, bucket for bucket; the hours not final yet, and the
partial first and last buckets, still come from the raw points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from analytics.bins import hourly_levels, prefetch_hourly
from analytics.frames import (
    _columns_frame,
    _mean_query,
    _streamed_frame,
    bucket_means,
    bucket_means_chunked,
    hourly_means,
    hourly_plan,
    hourly_series,
    points_hourly_means,
    recent_points,
)
from analytics.rules.base import split_by_device
from lorong.core import schema
from lorong.core.model import to_ms
from lorong.core.settings import InfluxSettings
from lorong.storage import retention
from lorong.storage.influx import InfluxClient, line

TZ = "Asia/Makassar"
START = datetime.combine(datetime.now(UTC).date() - timedelta(days=10), datetime.min.time(), tzinfo=UTC)
"""A UTC midnight within the ``raw`` policy's 90 days (InfluxDB refuses older points)."""
END = START + timedelta(days=3)
FILL = [schema.FIELD_FILL]


def readings() -> list[str]:
    """Three bins, 10-minute readings over three days: B-1 on the hour (points on every bucket
    edge and midnight), B-2 at odd milliseconds, A-9 only from the second day on (a new bin)."""
    rng = np.random.default_rng(3)
    points = []
    for dev, off_ms, first_day in (("B-1", 0, 0), ("B-2", 277_013, 0), ("A-9", 61_500, 1)):
        tags = {schema.TAG_DEVICE: dev, schema.TAG_KECAMATAN: "Tallo", schema.TAG_CITY: "makassar"}
        for k in range(first_day * 144, 3 * 144 + 1):
            at = to_ms(START) + k * 600_000 + off_ms
            points.append(line(schema.MEASUREMENT_BIN, tags, {schema.FIELD_FILL: round(float(rng.random()), 4),
                                                              schema.FIELD_BATTERY: 0.9}, at))
    return points


@pytest.fixture
def laid_out(influx: InfluxClient) -> InfluxClient:
    """The Lorong retention layout, three days of readings in ``raw`` and their means backfilled."""
    retention.apply(influx, InfluxSettings(), TZ, now=END)
    influx.write_lines(readings())
    retention.backfill(influx, TZ, START, END + timedelta(hours=1), now=END)
    return influx


WINDOWS = [  # (start, end, now): on the hour, off it, a window ending before now, a short one
    (START, END, END),
    (START + timedelta(hours=5, minutes=3), END - timedelta(hours=2, minutes=10), END - timedelta(hours=2, minutes=10)),
    (START + timedelta(hours=20), START + timedelta(days=2), END),
    (END - timedelta(hours=24), END - timedelta(minutes=30), END - timedelta(minutes=30)),
    (END - timedelta(hours=5), END, END),
]


@pytest.mark.parametrize(("start", "end", "now"), WINDOWS)
def test_means_from_the_hourly_policy_are_the_raw_means(laid_out: InfluxClient, start: datetime, end: datetime,
                                                        now: datetime) -> None:
    raw = bucket_means(laid_out, schema.MEASUREMENT_BIN, FILL, start, end, "1h")
    got = hourly_means(laid_out, schema.MEASUREMENT_BIN, FILL, start, end, now)
    assert len(raw) > 10
    pd.testing.assert_frame_equal(got, raw, check_exact=True)
    some = ["B-2", "A-9"]
    pd.testing.assert_frame_equal(
        hourly_means(laid_out, schema.MEASUREMENT_BIN, FILL, start, end, now, devices=some),
        bucket_means(laid_out, schema.MEASUREMENT_BIN, FILL, start, end, "1h", devices=some), check_exact=True)


def test_final_hours_come_from_the_means_and_the_last_three_from_raw(laid_out: InfluxClient) -> None:
    """A point written into ``raw`` after the means were made shows only where the plan reads raw
    points: in a final hour the stored mean is read, within the last three hours the raw points."""
    plan, means_end = hourly_plan(START, END, END)
    assert means_end == to_ms(END - timedelta(hours=3))
    assert [rp for rp, _ in plan] == [None, "hourly", "hourly", "hourly", None]
    tags = {schema.TAG_DEVICE: "B-1", schema.TAG_KECAMATAN: "Tallo", schema.TAG_CITY: "makassar"}
    old_hour, new_hour = START + timedelta(days=1, hours=6), END - timedelta(hours=2)
    laid_out.write_lines([line(schema.MEASUREMENT_BIN, tags, {schema.FIELD_FILL: 50.0}, to_ms(h + timedelta(minutes=5)))
                          for h in (old_hour, new_hour)])
    raw = bucket_means(laid_out, schema.MEASUREMENT_BIN, FILL, START, END, "1h").set_index(["device_id", "time"])
    got = hourly_means(laid_out, schema.MEASUREMENT_BIN, FILL, START, END, END).set_index(["device_id", "time"])
    late = ("B-1", pd.Timestamp(old_hour))
    assert raw.at[late, schema.FIELD_FILL] > 5 > got.at[late, schema.FIELD_FILL]  # the stored mean, made before
    recent = ("B-1", pd.Timestamp(new_hour))
    assert got.at[recent, schema.FIELD_FILL] == raw.at[recent, schema.FIELD_FILL] > 5
    pd.testing.assert_frame_equal(got.drop(index=[late]), raw.drop(index=[late]), check_exact=True)


def raw_series(influx: InfluxClient, start: datetime, end: datetime) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """What the fill profiles read before: raw means a day at a time, split by device."""
    frame = bucket_means_chunked(influx, schema.MEASUREMENT_BIN, FILL, start, end, 3600)
    return {d: s.values(schema.FIELD_FILL) for d, s in split_by_device(frame).items()}


def test_profile_read_is_the_day_by_day_raw_read_in_its_order(laid_out: InfluxClient) -> None:
    """The fill profiles' read (means streamed into arrays) gives the series the raw read gave, in
    its order: A-9 starts a day late and so comes after the others, whose id sorts after it."""
    midnight = END - timedelta(hours=8)  # local midnight (UTC+8)
    for start in (midnight - timedelta(days=2), midnight - timedelta(days=2, hours=17)):
        end = start + timedelta(days=2)
        raw = raw_series(laid_out, start, end)
        got = hourly_series(laid_out, schema.MEASUREMENT_BIN, schema.FIELD_FILL, start, end, END)
        assert list(got) == list(raw) == ["B-1", "B-2", "A-9"]
        for device, (t, v) in raw.items():
            assert len(t) > 20
            assert np.array_equal(got[device][0], t) and got[device][0].dtype == t.dtype
            assert np.array_equal(got[device][1], v)


def test_raw_points_when_there_are_no_means(influx: InfluxClient) -> None:
    """No ``hourly`` policy (a database without the layout), or a policy whose means of the loaded
    past were never backfilled: every bucket from the raw points."""
    influx.write_lines(readings())
    raw = bucket_means(influx, schema.MEASUREMENT_BIN, FILL, START, END, "1h")
    pd.testing.assert_frame_equal(hourly_means(influx, schema.MEASUREMENT_BIN, FILL, START, END, END), raw,
                                  check_exact=True)
    influx.command(f'DROP DATABASE "{influx.database}"')
    retention.apply(influx, InfluxSettings(), TZ, now=END)
    influx.write_lines(readings())  # past points: the continuous queries never see them
    pd.testing.assert_frame_equal(hourly_means(influx, schema.MEASUREMENT_BIN, FILL, START, END, END), raw,
                                  check_exact=True)
    with pytest.raises(ValueError):
        hourly_means(influx, schema.MEASUREMENT_BIN, FILL, START, END, END, chunk_s=5400)


def fast_bin(influx: InfluxClient) -> None:
    """F-1 reports every minute over the last five hours of ``END``: 60 values a bucket, more than
    numpy's pairwise sum adds one by one (8), so only InfluxDB's order of addition gives its means."""
    rng = np.random.default_rng(11)
    tags = {schema.TAG_DEVICE: "F-1", schema.TAG_KECAMATAN: "Tallo", schema.TAG_CITY: "makassar"}
    influx.write_lines([line(schema.MEASUREMENT_BIN, tags, {schema.FIELD_FILL: round(float(rng.random()), 4)},
                             to_ms(END - timedelta(hours=5)) + k * 60_000 + 13) for k in range(5 * 60)])


@pytest.mark.parametrize("after", [END - timedelta(hours=5), END - timedelta(hours=4, minutes=17)])
def test_means_of_points_in_hand_are_influxdbs(laid_out: InfluxClient, after: datetime) -> None:
    """The hourly means the job averages from the raw points it read are InfluxDB's, bit for bit,
    the partial first bucket and B-1's points on the bucket edges included."""
    fast_bin(laid_out)
    points = recent_points(laid_out, schema.MEASUREMENT_BIN, END, END - after + timedelta(hours=1))
    want = bucket_means(laid_out, schema.MEASUREMENT_BIN, FILL, after, END, "1h")
    got = points_hourly_means(points, schema.FIELD_FILL, after)
    assert len(want) > 15 and set(want["device_id"]) == {"B-1", "B-2", "A-9", "F-1"}
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    fast = points[points["device_id"] == "F-1"]
    buckets = fast["time"].dt.floor("1h")
    pairwise = fast.groupby(buckets)[schema.FIELD_FILL].apply(lambda v: np.sum(v.to_numpy()) / len(v))
    assert (pairwise.to_numpy() != want[want["device_id"] == "F-1"][schema.FIELD_FILL].to_numpy()).any()
    some = points_hourly_means(points, schema.FIELD_FILL, after, devices=["B-2", "F-1"])
    pd.testing.assert_frame_equal(
        some, want[want["device_id"].isin(["B-2", "F-1"])].reset_index(drop=True), check_exact=True)


@pytest.mark.parametrize(("now", "window"), [
    (END, timedelta(minutes=130)),  # the job's window: 2 h 10 min
    (END, timedelta(hours=2)),  # a window starting on the hour: B-1's point there is not in it
    (END - timedelta(minutes=25), timedelta(hours=3)),
    (END - timedelta(hours=30, minutes=3), timedelta(minutes=130)),  # the means of a day before
])
def test_hourly_levels_from_points_in_hand_are_the_read_ones(laid_out: InfluxClient, now: datetime,
                                                             window: timedelta) -> None:
    """The fill forecast's hourly levels with the newest hours averaged from the job's raw points are
    the levels read from InfluxDB alone, for bins emptied long ago, a few hours ago (read from the hour
    of the pickup) and within the raw window."""
    fast_bin(laid_out)
    points = recent_points(laid_out, schema.MEASUREMENT_BIN, now, window)
    pickups = [{}, {"B-1": now - timedelta(hours=6, minutes=50)},
               {"B-2": now - timedelta(minutes=70), "F-1": now - timedelta(hours=3, minutes=1)},
               {"B-1": now - timedelta(minutes=70)}]  # read from the hour before it: B-1's point there is not
    for last_pickup in pickups:
        ids = ["A-9", "B-1", "B-2", "F-1"]
        want = hourly_levels(laid_out, now, 24, ids, last_pickup)
        got = hourly_levels(laid_out, now, 24, ids, last_pickup, points, now - window)
        assert set(got) == set(want) and len(want) >= 3
        for device, series in want.items():
            t, v = series.values(schema.FIELD_FILL)
            assert len(t) > 1
            assert np.array_equal(got[device].values(schema.FIELD_FILL)[0], t)
            assert np.array_equal(got[device].values(schema.FIELD_FILL)[1], v)


@pytest.mark.parametrize(("now", "window"), [(END, timedelta(minutes=130)),
                                             (END - timedelta(minutes=25), timedelta(hours=3))])
def test_hourly_levels_with_reads_made_before_are_the_same(laid_out: InfluxClient, now: datetime,
                                                           window: timedelta) -> None:
    """:func:`prefetch_hourly`'s answers, made from the pickups known before the raw read, give
    :func:`hourly_levels` the levels it reads itself, whether the run's pickups are those (every answer
    used) or others (a pickup found in the raw points: the reads it changed made again)."""
    fast_bin(laid_out)
    points = recent_points(laid_out, schema.MEASUREMENT_BIN, now, window)
    ids = ["A-9", "B-1", "B-2", "F-1"]
    known = {"B-1": now - timedelta(hours=6, minutes=50)}
    for last_pickup in (known, {**known, "B-2": now - timedelta(hours=3, minutes=5)}, {}):
        want = hourly_levels(laid_out, now, 24, ids, last_pickup, points, now - window)
        for before in (known, last_pickup):
            pre = prefetch_hourly(laid_out, now, 24, ids, before, now - window)
            assert len(pre) == (2 if before else 1)
            got = hourly_levels(laid_out, now, 24, ids, last_pickup, points, now - window, prefetched=pre)
            assert set(got) == set(want) and len(want) >= 3
            for device, series in want.items():
                assert np.array_equal(got[device].t_ms, series.t_ms)
                assert np.array_equal(got[device].values(schema.FIELD_FILL)[1], series.values(schema.FIELD_FILL)[1])
        # the answers are used where their reads are the run's: emptied, the older hours are gone
        blank = {k: v.iloc[:0] for k, v in prefetch_hourly(laid_out, now, 24, ids, last_pickup, now - window).items()}
        short = hourly_levels(laid_out, now, 24, ids, last_pickup, points, now - window, prefetched=blank)
        assert sum(len(s.t_ms) for s in short.values()) < sum(len(s.t_ms) for s in want.values())


@pytest.mark.parametrize("rp", [None, schema.RP_HOURLY])
def test_means_read_as_csv_are_the_json_chunks_frame(laid_out: InfluxClient, rp: str | None) -> None:
    """The hourly means read as CSV into columns (:func:`analytics.frames._columns_frame`, what
    :func:`hourly_means` reads) are the frame of the chunked JSON answer, value for value, for every bin,
    some bins, and a window without means (an empty frame with the field's column)."""
    fields = [schema.FIELD_FILL, schema.FIELD_BATTERY]
    later = START + timedelta(hours=30)
    for where, devices in ((f"time > {to_ms(START)}ms AND time <= {to_ms(END)}ms", None),
                           (f"time >= {to_ms(later)}ms AND time < {to_ms(END)}ms", ["A-9", "B-2"]),
                           (f"time > {to_ms(END + timedelta(days=2))}ms", None)):
        q = _mean_query(schema.MEASUREMENT_BIN, fields, where, devices, rp)
        got, chunks = _columns_frame(laid_out, q, fields), _streamed_frame(laid_out.query_chunked(q), fields)
        pd.testing.assert_frame_equal(got, chunks, check_exact=True)
        assert list(got.columns) == ["device_id", "time", *fields]
    assert len(got) == 0 and len(_columns_frame(laid_out, _mean_query(schema.MEASUREMENT_BIN, fields, (
        f"time > {to_ms(START)}ms AND time <= {to_ms(END)}ms"), None, rp), fields)) > 100
