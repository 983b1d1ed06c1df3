"""Air decisions against the faults the simulated cities showed: a morning stronger than
yesterday's scored as a spike at three stations (a false ``pm25_episode``) while a station had one
day of history (the day-to-day spread comes from DKI Jakarta's daily PM2.5, tests/data); a
station whose sensor grows more with humidity than the configured kappa over-read the ISPU band
at night (each station's kappa is fitted against the network)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from analytics.air import (
    DAY_TO_DAY_REL_SPREAD,
    correct_frame,
    daily_profile,
    profile_spread,
    profiles_from_buckets,
    score_spikes,
    station_profile,
    time_of_day_slots,
)
from analytics.aqi import ISPU_BANDS
from analytics.humidity import DEFAULT_KAPPA, PmSensorModel, get_sensor_model, kappa_correct
from analytics.kappa_fit import FIT_BUCKET, MIN_HOURS, fit_kappas, fitted_models
from lorong.core import schema
from lorong.core.model import to_ms
from lorong.core.settings import AnalyticsSettings
from lorong.storage.influx import InfluxClient, line

WITA = ZoneInfo("Asia/Makassar")
MONDAY = datetime(2026, 3, 2, tzinfo=WITA)  # local midnight
JAKARTA = Path(__file__).resolve().parent.parent / "data" / "jakarta-ispu" / "ispu_dki_all.csv"


def _ispu_to_ugm3(index: float) -> float:
    """PM2.5 sub-index back to ug/m3 (linear within the Permen LHK P.14/2020 band)."""
    for b in ISPU_BANDS["pm25"]:
        if index <= b.index_high:
            return b.conc_low_ugm3 + (index - b.index_low) * (b.conc_high_ugm3 - b.conc_low_ugm3) / (
                b.index_high - b.index_low)
    return float("nan")


def test_day_to_day_spread_is_what_jakarta_measured() -> None:
    """The constant is the median relative change of a station's daily PM2.5 from the day before
    in DKI Jakarta (2010-2025), rounded down."""
    df = pd.read_csv(JAKARTA, parse_dates=["tanggal"]).dropna(subset=["pm25"])
    df["ugm3"] = df["pm25"].map(_ispu_to_ugm3)
    changes = []
    for _, g in df.groupby("stasiun"):
        s = g.set_index("tanggal")["ugm3"].asfreq("D")
        changes.append(((s - s.shift(1)).abs() / s.shift(1)).dropna())
    pooled = pd.concat(changes)
    assert len(pooled) == 938
    assert float(pooled.median()) == pytest.approx(0.209, abs=0.001)
    assert DAY_TO_DAY_REL_SPREAD <= float(pooled.median()) < DAY_TO_DAY_REL_SPREAD + 0.01  # rounded down


def _one_station(morning: tuple[float, ...], days: int, hours: float) -> pd.DataFrame:
    """10-minute PM2.5 of one station from MONDAY for ``days`` days and ``hours`` more: 18 ug/m3
    (+-1) with the morning rise (07:00-08:30 local) of ``morning[day]`` over it."""
    rows = []
    t = MONDAY
    while t < MONDAY + timedelta(days=days, hours=hours):
        v = 18.0 + (t.minute % 3) * 0.5
        if time(7, 0) <= t.time() < time(8, 30):
            v += morning[(t - MONDAY).days]
        rows.append({"device_id": "S", "time": pd.Timestamp(t.astimezone(UTC)), "pm25": v})
        t += timedelta(minutes=10)
    return pd.DataFrame(rows)


def _profile(frame: pd.DataFrame, midnight: datetime, tz: str) -> np.ndarray:
    before = frame[frame["time"] < pd.Timestamp(midnight.astimezone(UTC))]
    slots, x = time_of_day_slots(before["time"], tz), before["pm25"].to_numpy()
    days = before["time"].dt.tz_convert(tz).dt.day.to_numpy()
    level = daily_profile(slots, x)
    return np.vstack([level, profile_spread(slots, days, x, level)])


def test_a_morning_stronger_than_the_only_day_before_is_no_spike() -> None:
    """Tuning city, day 2, 07:00 local: with one day of history (spread 0) a morning of 47.1
    against a profile of 35.7 (MAD 0.3) was z 7.7, a spike at three stations and a false
    ``pm25_episode``. Yesterday's morning is one draw of the weather: today may be 0.2 of the level
    above it without being unusual; a plume of +60 still is."""
    cfg = AnalyticsSettings()
    frame = _one_station((17.7, 29.1), days=1, hours=8)
    now = (MONDAY + timedelta(days=1, hours=8)).astimezone(UTC)
    prof = _profile(frame, MONDAY + timedelta(days=1), cfg.timezone)
    assert prof[0][7 * 6 + 6] == pytest.approx(35.7, abs=1.0)
    # one day measures no spread: the least, 0.2 of the daily level (about 18.5), is used
    assert prof[1][7 * 6 + 6] == pytest.approx(DAY_TO_DAY_REL_SPREAD * np.median(prof[0]))
    scored = score_spikes(frame, now, cfg, profiles={"S": prof})
    assert scored["excess"].iloc[-1] == pytest.approx(11.4, abs=1.5)
    assert not scored["spike"].tail(3).any()
    plume = frame.copy()
    plume.loc[plume["time"] >= pd.Timestamp(now) - pd.Timedelta(minutes=30), "pm25"] += 60.0
    assert score_spikes(plume, now, cfg, profiles={"S": prof})["spike"].tail(3).all()


def _network(kappas: list[float], hours: int, seed: int = 3) -> pd.DataFrame:
    """Hourly means of stations breathing one air mass: a daily PM2.5 cycle (night 0.7, morning
    2.0, midday 1.0 of 20 ug/m3, as Makassar's traffic) and a tropical RH cycle (90 % at night, 60 %
    after noon), a site factor 0.8-1.3 and 4 % noise per station, read through C(RH, kappa)."""
    rng = np.random.default_rng(seed)
    t = pd.date_range("2026-03-01T16:00Z", periods=hours, freq="1h")
    hour = ((t.hour + 8) % 24).to_numpy()
    cycle = 0.7 + 1.3 * np.exp(-0.5 * ((hour - 7.5) / 1.2) ** 2) + 0.3 * np.exp(-0.5 * ((hour - 12.0) / 3) ** 2)
    rh = 0.75 + 0.15 * np.cos((hour - 5.5) / 24 * 2 * np.pi)
    rows = []
    for i, k in enumerate(kappas):
        site = 0.8 + 0.5 * rng.random()
        true = 20.0 * cycle * site * (1 + rng.normal(0, 0.04, hours))
        r = np.clip(rh + rng.normal(0, 0.01, hours), 0.3, 0.95)
        rows.append(pd.DataFrame({"device_id": f"A{i}", "time": t, "relativeHumidity": r,
                                  "pm25": true * (1 + (k / 1.65) / (1 / r - 1))}))
    return pd.concat(rows, ignore_index=True)


def _kappa_models(n: int) -> dict[str, PmSensorModel]:
    return {f"A{i}": get_sensor_model("sds011") for i in range(n)}


def test_a_station_with_a_larger_kappa_is_fitted_and_no_longer_over_reads() -> None:
    """Tuning city, 01:50 local: a station whose sensor grows with kappa 0.39 read 142.2 ug/m3 at
    89.3 % RH; corrected with the configured 0.3 that is 56.5, over the ISPU band (55.4), while
    the air held 46.8: a false ``pm25_high``. Fitted against the other stations, its kappa is
    about 0.4 and the same reading is under the band."""
    kappas = [0.27, 0.30, 0.28, 0.31, 0.26, 0.39]
    fitted = fit_kappas(_network(kappas, 72), _kappa_models(6))
    assert set(fitted) == {f"A{i}" for i in range(6)}
    assert fitted["A5"] == pytest.approx(0.39, abs=0.04)
    assert all(abs(fitted[f"A{i}"] - k) <= 0.04 for i, k in enumerate(kappas))
    assert kappa_correct(142.2, 0.893, DEFAULT_KAPPA) == pytest.approx(56.5, abs=0.1)
    assert kappa_correct(142.2, 0.893, fitted["A5"]) < 50.0


def test_a_reference_monitor_fits_a_city_whose_aerosol_is_not_the_configured_kappa() -> None:
    """Every sensor of the city grows with kappa 0.20-0.24, not the configured 0.3. Against the
    network alone the median is assumed to be 0.3: each station comes out about 0.3 and the whole
    city is over-corrected in the humid morning (a true 60 ug/m3 at 90 % RH reads under the band).
    With a T640 of an ISPU station (a dry reference, A6: its readings are the true PM) each
    station's own kappa is found."""
    kappas = [0.22, 0.20, 0.24, 0.21, 0.23, 0.22]
    net = _network([*kappas, 0.0], 96)  # A6 grows with kappa 0: it reads dry PM
    alone = fit_kappas(net[net["device_id"] != "A6"], _kappa_models(6))
    assert np.median(list(alone.values())) == pytest.approx(0.3, abs=0.03)  # the anchor, not the air
    models = {**_kappa_models(6), "A6": get_sensor_model("t640")}
    fitted = fit_kappas(net, models)
    assert set(fitted) == {f"A{i}" for i in range(6)}  # the reference itself is not fitted
    errors = np.array([fitted[f"A{i}"] - k for i, k in enumerate(kappas)])
    assert abs(errors.mean()) <= 0.03 and np.abs(errors).max() <= 0.06  # each hour: 4 % noise on both
    assert np.mean([alone[f"A{i}"] - k for i, k in enumerate(kappas)]) >= 0.06
    true, rh = 60.0, 0.9  # a typical station of the city (kappa 0.22) in a humid morning
    read = true * (1 + (0.22 / 1.65) / (1 / rh - 1))
    assert kappa_correct(read, rh, float(np.median(list(alone.values())))) < 55.4
    assert kappa_correct(read, rh, float(np.median(list(fitted.values())))) > 55.4
    # a reference with too few hours (a new ISPU station): the network fit, as without it
    short = net[(net["device_id"] != "A6") | (net["time"] < net["time"].min() + pd.Timedelta(hours=MIN_HOURS - 1))]
    assert fit_kappas(short, models) == alone


def _readings(kappas: list[float], days: int, seed: int = 3) -> pd.DataFrame:
    """5-minute readings of stations in one air mass (the daily cycle of :func:`_network`) under a
    tropical RH: 95 % through the night with 2 % between readings, falling after sunrise to 60 % by
    11:00, back up from 17:00."""
    rng = np.random.default_rng(seed)
    t = pd.date_range("2026-03-01T16:00Z", periods=days * 288, freq="5min")
    hour = ((t.hour + 8) % 24 + t.minute / 60).to_numpy()
    cycle = 0.7 + 1.3 * np.exp(-0.5 * ((hour - 7.5) / 1.2) ** 2) + 0.3 * np.exp(-0.5 * ((hour - 12.0) / 3) ** 2)
    rh = np.minimum(0.60 + 0.35 / (1 + np.exp((hour - 8.0) / 0.6)) + 0.35 / (1 + np.exp(-(hour - 19.5) / 0.8)), 0.95)
    rows = []
    for i, k in enumerate(kappas):
        true = 20.0 * cycle * (0.8 + 0.5 * rng.random()) * (1 + rng.normal(0, 0.04, len(t)))
        r = np.clip(rh + rng.normal(0, 0.02, len(t)), 0.3, 0.99)
        rows.append(pd.DataFrame({"device_id": f"A{i}", "time": t, "relativeHumidity": r,
                                  "pm25": true * (1 + (k / 1.65) / (1 / r - 1))}))
    return pd.concat(rows, ignore_index=True)


def test_each_reading_is_dried_at_its_own_rh_before_the_fit(influx: InfluxClient) -> None:
    """Tuning city: fitted against its T640 on hourly means, the stations' kappas came out 0.02-0.05
    too high on the first days, and true hours of 58-63 ug/m3 in the humid morning read 47-51: missed
    ``pm25_high``. Growth is convex in RH: the mean of an hour's readings, scattered 1-2 % around 95 %
    RH at night, is more than the hour's dry mass grown at its mean RH. Fitted from the readings
    themselves (each dried at its own RH, 10-minute buckets) each kappa is found."""
    kappas = [0.22, 0.20, 0.24, 0.21, 0.23, 0.22, 0.0]  # A6 is a T640: dry
    readings = _readings(kappas, 3)
    influx.write_lines([line(schema.MEASUREMENT_AIR, {schema.TAG_DEVICE: d}, {"pm25": round(pm, 2),
                                                                               "relativeHumidity": round(rh, 4)},
                             to_ms(t.to_pydatetime())) for d, t, rh, pm in readings.itertuples(index=False)])
    models = {**_kappa_models(6), "A6": get_sensor_model("t640")}
    now = datetime(2026, 3, 4, 16, 30, tzinfo=UTC)  # 00:30 WITA: the three days are before midnight
    fitted = fitted_models(influx, now, AnalyticsSettings(), models, {d: "LRG-PM1" for d in models})
    errors = np.array([fitted[f"A{i}"].kappa - k for i, k in enumerate(kappas[:6])])  # type: ignore[operator]
    assert np.abs(errors).max() <= 0.015 and abs(errors.mean()) <= 0.01
    assert fitted["A6"] == models["A6"]
    hourly = readings.groupby(["device_id", pd.Grouper(key="time", freq="1h")]).mean().reset_index()
    assert np.mean([v - kappas[int(d[1])] for d, v in fit_kappas(hourly, models).items()]) >= 0.02  # the old fit


def test_a_day_with_a_few_readings_over_rh_max_is_still_a_day_of_hours() -> None:
    """Tuning city, the first day after the start: one 10-minute bucket of a station had both its
    readings over ``rh_max``, 143 buckets were "fewer than a day", the station kept the configured
    kappa (0.3 for a true 0.38) and its humid morning over-read into a false ``pm25_high``. A day is
    24 clock hours with data, not 144 full buckets."""
    kappas = [0.22, 0.20, 0.24, 0.38, 0.23, 0.22, 0.0]
    day = _readings(kappas, 1)
    lost = (day["device_id"] == "A3") & (day["time"] >= "2026-03-02T03:10Z") & (day["time"] < "2026-03-02T03:20Z")
    assert lost.sum() == 2
    models = {**_kappa_models(6), "A6": get_sensor_model("t640")}
    fitted = fit_kappas(day[~lost], models, FIT_BUCKET)
    assert fitted["A3"] == pytest.approx(0.38, abs=0.02)
    fewer = day["time"] >= pd.Timestamp("2026-03-01T16:00Z") + pd.Timedelta(hours=25 - MIN_HOURS)
    assert "A3" not in fit_kappas(day[~lost & fewer], models, FIT_BUCKET)  # MIN_HOURS - 1 clock hours


def test_a_first_day_with_a_shower_is_still_fitted() -> None:
    """Tuning city seed 7, the first local day: a shower held RH over ``rh_max`` for about three
    hours (no corrected reading), the day had fewer than 24 clock hours, and every station kept the
    configured kappa 0.3 through the second day. Here a 4-hour shower, and a station of kappa 0.38
    that would over-read its humid morning: twenty hours hold the humid night and the dry
    afternoon, and the day is fitted."""
    kappas = [0.22, 0.20, 0.24, 0.38, 0.23, 0.22, 0.0]
    day = _readings(kappas, 1)
    shower = (day["time"] >= "2026-03-01T20:00Z") & (day["time"] < "2026-03-02T00:00Z") & (day["device_id"] != "A6")
    day.loc[shower, "relativeHumidity"] = 0.97
    models = {**_kappa_models(6), "A6": get_sensor_model("t640")}
    fitted = fit_kappas(day, models, FIT_BUCKET)
    assert set(fitted) == {f"A{i}" for i in range(6)}
    assert fitted["A3"] == pytest.approx(0.38, abs=0.02)


def test_one_monitors_own_noise_is_not_in_every_kappa() -> None:
    """Tuning city, 20 stations and one T640: fitted against the monitor alone, each station's kappa
    carried the monitor's own wander (its street, its sampling noise) as well as its own, and the
    fitted kappas were 0.022 off on average. Against the median of the monitor and the network
    calibrated by a first pass, the monitor's wander is one series among nine. Here the monitor
    wanders slowly (AR(1), 5 %, 0.9 from one reading to the next) on the first day: the first pass
    alone was 0.013-0.018 off on average on each of these four seeds."""
    kappas = [0.22, 0.35, 0.28, 0.38, 0.25, 0.31, 0.27, 0.33, 0.0]
    models = {**_kappa_models(8), "A8": get_sensor_model("t640")}
    off = []
    for seed in range(1, 5):
        day = _readings(kappas, 1, seed=seed)
        mon = (day["device_id"] == "A8").to_numpy()
        rng = np.random.default_rng(seed)
        wander, x = np.empty(mon.sum()), 0.0
        for k in range(len(wander)):
            x = 0.9 * x + rng.normal(0.0, 0.05 * np.sqrt(1 - 0.9**2))
            wander[k] = x
        day.loc[mon, "pm25"] *= np.exp(wander)
        fitted = fit_kappas(day, models, FIT_BUCKET)
        off.append(np.mean([abs(fitted[f"A{i}"] - k) for i, k in enumerate(kappas[:8])]))
    assert np.mean(off) <= 0.01 and max(off) <= 0.015


def test_without_a_monitor_the_stations_are_fitted_against_their_calibrated_neighbours() -> None:
    """Tuning cities without a reference monitor (banyuwangi-like 1-6): against the plain median of
    the others dried at the configured kappa, the station that is the median changes with the
    humidity (a clean site with a large kappa overtakes a dirty one with a small kappa in the humid
    night), and the fitted kappas were 0.053 off on average; ``pm25_high`` precision 0.875. Against
    the median of the others calibrated by a first pass and brought to one scale, 0.040 and 1.00.
    Without a monitor the level of the whole network is not in the data (the configured kappa sets
    it), so what is asserted is each kappa against the others: its error less the median error.
    The first pass alone was 0.017 off that way on average over these six seeds, 0.041 on one."""
    kappas = [0.21, 0.38, 0.26, 0.34, 0.30, 0.23, 0.36, 0.31]
    off = []
    for seed in range(1, 7):
        fitted = fit_kappas(_readings(kappas, 2, seed=seed), _kappa_models(8), FIT_BUCKET)
        err = np.array([fitted[f"A{i}"] - k for i, k in enumerate(kappas)])
        off.append(float(np.mean(np.abs(err - np.median(err)))))
    assert np.mean(off) <= 0.01 and max(off) <= 0.012


def test_kappa_is_not_fitted_without_enough_data() -> None:
    """Fewer than a day of hours, fewer than four stations or a narrow band of humidity: the
    configured kappa stays."""
    kappas = [0.3, 0.3, 0.3, 0.3, 0.4]
    assert fit_kappas(_network(kappas, MIN_HOURS - 1), _kappa_models(5)) == {}
    assert fit_kappas(_network(kappas[:3], 72), _kappa_models(3)) == {}
    narrow = _network(kappas, 72)
    narrow["relativeHumidity"] = 0.7 + (narrow.index % 3) * 0.01
    assert fit_kappas(narrow, _kappa_models(5)) == {}
    # a station whose model is not kappa-corrected (PurpleAir: the EPA correction) takes no part
    assert set(fit_kappas(_network(kappas, 72), {**_kappa_models(4), "A4": get_sensor_model("purpleair_pa2")})) \
        == {"A0", "A1", "A2", "A3"}


def test_a_station_whose_humid_nights_are_not_corrected_still_has_a_profile() -> None:
    """Standard city, 07:10 local on day 2: a station whose nights were above the correction's
    rh_max (95 % RH: no corrected value) had no daily profile, was scored on raw buckets and its
    ordinary morning rise (47.4 against a 24-hour median of 20.9) was a ``pm25_spike``. Half a
    day known is a profile; the night is interpolated."""
    cfg = AnalyticsSettings()
    frame = _one_station((17.7, 20.0), days=1, hours=8)
    local = frame["time"].dt.tz_convert(cfg.timezone)
    humid = (local.dt.hour >= 21) | (local.dt.hour < 6)
    first_day = local.dt.day == MONDAY.day
    before = frame[first_day & ~humid]
    slots, x = time_of_day_slots(before["time"], cfg.timezone), before["pm25"].to_numpy()
    assert np.isnan(daily_profile(slots, x)).sum() > 0  # the old rule wanted every time of day
    prof = station_profile(slots, local[first_day & ~humid].dt.day.to_numpy(), x)
    assert prof is not None and not np.isnan(prof).any()
    assert prof[0][2 * 6] == pytest.approx(18.5, abs=0.6)  # 02:00, interpolated from 20:00 and 06:00
    now = (MONDAY + timedelta(days=1, hours=8)).astimezone(UTC)
    today = frame[~first_day | ~humid]
    assert score_spikes(today, now, cfg)["spike"].tail(3).all()  # raw: the rise is a spike
    assert not score_spikes(today, now, cfg, profiles={"S": prof})["spike"].tail(3).any()


def test_a_plume_at_the_same_hour_of_one_of_two_days_does_not_hide_the_next() -> None:
    """Tuning city, a station with open burning nearby: no plume at 20:30 local on day 1, one of
    +117 ug/m3 on day 2; the spread of two days at 20:30 (the mean of their two deviations) was
    half that plume, z 1.9, and the plume of day 3 at the same hour was missed. Two days are too
    few to measure a spread: the least one is used."""
    cfg = AnalyticsSettings()
    rows = []
    t = MONDAY
    end = MONDAY + timedelta(days=2, hours=21)
    while t < end:
        v = 18.0 + (t.minute % 3) * 0.5
        if (t - MONDAY).days >= 1 and time(20, 30) <= t.time() < time(21, 40):
            v += 117.0
        rows.append({"device_id": "S", "time": pd.Timestamp(t.astimezone(UTC)), "pm25": v})
        t += timedelta(minutes=10)
    frame = pd.DataFrame(rows)
    prof = _profile(frame, MONDAY + timedelta(days=2), cfg.timezone)
    slot = 20 * 6 + 3
    assert prof[1][slot] == pytest.approx(DAY_TO_DAY_REL_SPREAD * np.median(prof[0]))
    scored = score_spikes(frame, end.astimezone(UTC), cfg, profiles={"S": prof})
    assert scored["spike"].tail(3).all()


def test_a_city_whose_stations_sent_nothing_fits_no_kappa() -> None:
    """Several cities: the hourly means hold another city's stations only (this city's are new or
    silent). The fit keeps the configured kappas, it does not fail (pandas 3 gave the empty frame's
    mapped limits a text dtype: the city's run failed at every tick)."""
    other = _network([0.3, 0.3, 0.3, 0.3, 0.4], 72)
    mine = {f"B{i}": get_sensor_model("sds011") for i in range(5)}
    assert fit_kappas(other, mine) == {}


def test_a_reference_monitors_readings_are_not_corrected() -> None:
    """A T640 reads dry PM: its readings stay as they are, RH or none; the SDS011 beside it is
    corrected (the vectorised path takes both)."""
    frame = pd.DataFrame({"device_id": ["A0", "R", "R"], "pm25": [100.0, 40.0, 41.5],
                          "relativeHumidity": [0.9, np.nan, 0.97]})
    out = correct_frame(frame, {"A0": get_sensor_model("sds011"), "R": get_sensor_model("t640")}, "pm25")
    assert out.tolist() == [pytest.approx(kappa_correct(100.0, 0.9, DEFAULT_KAPPA)), 40.0, 41.5]
    assert AnalyticsSettings().pm_sensor_by_model["T640"] == "t640"


def _city(plumes: dict[str, list[tuple[int, time, time, float]]], rhythm: dict[str, tuple[time, time, float]],
          until: datetime, rhythm_days: tuple[int, ...] = tuple(range(7))) -> pd.DataFrame:
    """10-minute PM2.5 of six stations breathing one air mass, from MONDAY to ``until``: 20 ug/m3 x a
    site factor 0.8-1.3 x the simulated city's traffic cycle (0.7 at night, 1.0 by day, x2 at 07:30,
    firmware_sim/city_air.py ``traffic_factor``) x a day's weather (0.9-1.1), 3 % noise; ``plumes``:
    station -> (day, from, to, +ug/m3); ``rhythm``: station -> (from, to, +ug/m3) on ``rhythm_days``."""
    rng = np.random.default_rng(5)
    t = pd.date_range(MONDAY.astimezone(UTC), until.astimezone(UTC), freq="10min", inclusive="left")
    local = t.tz_convert(WITA)
    hour = (local.hour + local.minute / 60).to_numpy()
    day = np.asarray((local.normalize().tz_localize(None) - pd.Timestamp(MONDAY.date())).days)
    cycle = 0.7 + 0.3 / (1 + np.exp(-(hour - 6) * 3)) / (1 + np.exp((hour - 21) * 3)) \
        + np.exp(-0.5 * ((hour - 7.5) / 1.0) ** 2)
    weather = np.array([1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.1])[day]
    frames = []
    for i, site in enumerate((0.8, 0.9, 1.0, 1.1, 1.2, 1.3)):
        dev = f"A{i}"
        x = 20.0 * site * cycle * weather * (1 + rng.normal(0, 0.03, len(t)))
        clock = local.time
        for d, a, b, plus in plumes.get(dev, []):
            x += np.where((day == d) & (clock >= a) & (clock < b), plus, 0.0)
        if dev in rhythm:
            a, b, plus = rhythm[dev]
            x += np.where(np.isin(day, rhythm_days) & (clock >= a) & (clock < b), plus, 0.0)
        frames.append(pd.DataFrame({"device_id": dev, "time": t, "pm25": x}))
    return pd.concat(frames, ignore_index=True)


def test_a_stations_own_plumes_at_that_hour_do_not_hide_the_next() -> None:
    """Tuning city makassar seed 2: MKS-AIR-10 burned at about 17:30 local on two of the three days
    before (+60-90 ug/m3), so its profile at 17:30 was a plume (the median of three days, two of them
    burning) and its plumes of the next days at that hour (+72 and +47 ug/m3) were missed. The buckets
    where a station stood far above the city at that moment (the rule's own local spike test, against
    the other stations at that moment instead of its own past) stay out of its profile unless they
    are on three days or more and on most days at that time of day. The morning rise (every
    station, every day) and a station whose own daily bump (+25 at 12:00-13:30) the others lack
    still score nothing."""
    cfg = AnalyticsSettings()
    today = MONDAY + timedelta(days=3)
    now = today + timedelta(hours=18)
    frame = _city({"A0": [(0, time(17, 10), time(19, 0), 80.0), (2, time(17, 30), time(19, 20), 60.0),
                          (3, time(17, 30), time(19, 0), 50.0)]},
                  {"A5": (time(12, 0), time(13, 30), 25.0)}, now)
    before = frame[frame["time"] < pd.Timestamp(today.astimezone(UTC))]
    profiles = profiles_from_buckets(before, cfg)
    slot = 17 * 6 + 3
    assert profiles["A0"][0][slot] == pytest.approx(20.0 * 0.8, rel=0.15)  # the city at 17:30, not a plume
    assert profiles["A5"][0][12 * 6 + 3] == pytest.approx(20.0 * 1.3 + 25.0, rel=0.15)  # its bump is its own
    scored = score_spikes(frame, now.astimezone(UTC), cfg, horizon=timedelta(hours=18), profiles=profiles)
    a0 = scored[scored["device_id"] == "A0"]
    assert a0["local_spike"].tail(3).all()
    assert a0["local_excess"].iloc[-1] == pytest.approx(50.0, abs=8.0)
    assert not scored[scored["device_id"] != "A0"]["local_spike"].any()  # mornings, the bump
    assert not a0[a0["time"] < pd.Timestamp((today + timedelta(hours=17)).astimezone(UTC))]["local_spike"].any()


def test_a_bump_on_most_days_is_the_stations_rhythm_and_two_plumes_of_five_days_are_not() -> None:
    """The other side of :func:`analytics.air.slot_windows`: a station with a bump (+30 ug/m3 at
    12:00-13:30) on four of five days (a school, a market: not on the third day) keeps it in its
    profile and does not spike on the sixth day, while two plumes at 17:30 in five days stay out
    of the burning station's profile and its third plume there scores."""
    cfg = AnalyticsSettings()
    today = MONDAY + timedelta(days=5)
    now = today + timedelta(hours=18)
    frame = _city({"A0": [(1, time(17, 20), time(19, 0), 70.0), (3, time(17, 30), time(19, 10), 90.0),
                          (5, time(17, 30), time(19, 0), 50.0)]},
                  {"A5": (time(12, 0), time(13, 30), 30.0)}, now, rhythm_days=(0, 1, 3, 4, 5))
    profiles = profiles_from_buckets(frame[frame["time"] < pd.Timestamp(today.astimezone(UTC))], cfg)
    assert profiles["A5"][0][12 * 6 + 3] == pytest.approx(20.0 * 1.3 + 30.0, rel=0.15)
    assert profiles["A0"][0][17 * 6 + 3] == pytest.approx(20.0 * 0.8, rel=0.15)
    scored = score_spikes(frame, now.astimezone(UTC), cfg, horizon=timedelta(hours=18), profiles=profiles)
    assert not scored[scored["device_id"] != "A0"]["local_spike"].any()
    assert scored[scored["device_id"] == "A0"]["local_spike"].tail(3).all()
