"""The fill-rate estimate on real collections: City of Edinburgh Enevo smart bins, summer 2016
(tests/data/edinburgh-litter-bins, SOURCES.md section 9, Open Government Licence v3.0).

One row per emptying: the site, the local time (Europe/London, BST in June-August) and the fill
level just before the pickup on Enevo's scale, where 100 % is a bin 80 % physically full. For
each site, every interval between two pickups is predicted from the site's earlier intervals
(at least 5, at most the newest 20) with :func:`analytics.forecast.predict_level` (Theil-Sen
line of level against hours), capped at the scale's top, and compared with what the sensor saw.
Naive baselines: the previous interval's fill rate times the new interval's length, and the
previous level as it was (persistence).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from analytics.forecast import predict_level
from tests.conftest import DATA

CSV = DATA / "edinburgh-litter-bins" / "raw_bin_data_enevo_sheet.csv"
TIME = "Date & Time of bin collection (Europe/London)"
FILL = "Fill level before collection (%) [Nb 100% is actually a bin that's 80% full]"
SCALE_TOP = 0.8
"""Enevo 100 % = 80 % physically full (the column header; SOURCES.md section 9)."""
MIN_PRIOR, MAX_PRIOR = 5, 20


def load() -> pd.DataFrame:
    """Collections with UTC time and physical fill fraction, sorted by site and time."""
    df = pd.read_csv(CSV, usecols=["Site", TIME, FILL])
    df["t"] = pd.to_datetime(df[TIME]).dt.tz_localize("Europe/London").dt.tz_convert("UTC")
    df["fill"] = df[FILL] / 100.0 * SCALE_TOP
    return df.sort_values(["Site", "t"], kind="stable").reset_index(drop=True)


def test_local_time_and_scale() -> None:
    df = load()
    assert len(df) == 10_000 and df["Site"].nunique() == 334
    newest = df.loc[df["t"].idxmax()]
    assert newest["t"].to_pydatetime() == datetime(2016, 8, 9, 14, 46, 34, tzinfo=UTC)  # 15:46:34 BST
    assert df["fill"].max() == pytest.approx(0.8) and df["fill"].min() == 0.0


def test_fill_rate_predicts_next_collection_better_than_naive() -> None:
    df = load()
    df["hours"] = df.groupby("Site")["t"].diff().dt.total_seconds() / 3600.0
    iv = df.dropna(subset=["hours"])
    pred: dict[str, list[float]] = {"theil_sen": [], "last_rate": [], "persistence": []}
    seen: list[float] = []
    for _, g in iv.groupby("Site"):
        hours, fill = g["hours"].to_numpy(), g["fill"].to_numpy()
        for i in range(MIN_PRIOR, len(g)):
            h, f = hours[max(0, i - MAX_PRIOR):i], fill[max(0, i - MAX_PRIOR):i]
            if np.ptp(h) == 0:
                continue
            seen.append(fill[i])
            pred["theil_sen"].append(predict_level(h, f, hours[i], cap=SCALE_TOP))
            pred["last_rate"].append(min(SCALE_TOP, f[-1] / h[-1] * hours[i]))
            pred["persistence"].append(f[-1])
    obs = np.array(seen)
    stats = {}
    print(f"\nEdinburgh Enevo collections: {len(obs)} intervals predicted from each site's earlier ones")
    print(f"{'predictor':12} {'n':>6} {'MAE':>7} {'bias':>8} {'RMSE':>7}  (fill fraction, 0.8 = scale top)")
    for name, values in pred.items():
        err = np.array(values) - obs
        stats[name] = (float(np.abs(err).mean()), float(err.mean()))
        print(f"{name:12} {len(err):6d} {stats[name][0]:7.4f} {stats[name][1]:+8.4f} {np.sqrt((err**2).mean()):7.4f}")
    assert len(obs) > 7_500
    mae, bias = stats["theil_sen"]
    assert mae < stats["last_rate"][0] - 0.02 and mae < stats["persistence"][0] - 0.02
    assert abs(bias) < 0.03
