"""The decisions the scenario scores found wrong, each reproduced first: a straight line through the
night, the round "passing" while trucks are still out, a warning per wobble, a pickup made of a bag
at the edge of the window, the morning PM rise taken for a spike, a repeated run that opened an
alert the first run did not."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from analytics.air import DAY_TO_DAY_REL_SPREAD, daily_profile, profile_spread, score_spikes, time_of_day_slots
from analytics.fillprofile import (
    adapt_scale,
    expected_pickup,
    forecast_full_at,
    learn_profile,
    round_end,
    typical_pickup,
    usual_pickup_time,
)
from analytics.jobs import run_once
from analytics.pickups import detect
from devices.registry import DeviceIn, add_device, retire_device
from lorong.core import schema
from lorong.core.model import to_ms
from lorong.core.settings import AnalyticsSettings
from lorong.storage.influx import InfluxClient, line
from lorong.storage.tables import AlertHistoryRow, AlertRow, CollectionRow, DeviceLatestRow

WITA = ZoneInfo("Asia/Makassar")
MONDAY = datetime(2026, 3, 2, tzinfo=WITA)  # local midnight

# a bin that fills 0.05 an hour from 08:00 to 18:00 local and nothing at night
DAY_RATE = np.array([0.05 if 8 <= h < 18 else 0.0 for h in range(24)])


def day_series(days: int, start_level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Hourly means (bucket start ms, level) of a bin emptied every midnight."""
    t, lv = [], []
    for d in range(days):
        level = start_level
        for h in range(24):
            start = MONDAY + timedelta(days=d, hours=h)
            t.append(to_ms(start))
            lv.append(level + DAY_RATE[h] / 2)  # the mean over the hour
            level += DAY_RATE[h]
    return np.array(t, dtype=np.int64), np.array(lv)


def test_profile_learns_the_day_and_does_not_fill_at_night() -> None:
    t, lv = day_series(3)
    prof = learn_profile(t, lv, "Asia/Makassar")
    assert prof is not None and prof.days == 3
    assert prof.rate_at(MONDAY + timedelta(days=3, hours=10)) == pytest.approx(0.05)
    assert prof.rate_at(MONDAY + timedelta(days=3, hours=2)) == pytest.approx(0.0)
    # the difference of two hourly means is the fill between their midpoints: the edges of the day
    # are smeared over the hours either side, evenly (0.0125 at 07:00 and 18:00, 0.0375 at 08:00 and 17:00)
    assert prof.rate_at(MONDAY + timedelta(days=3, hours=8)) == pytest.approx(0.0375)
    assert prof.rate_at(MONDAY + timedelta(days=3, hours=7)) == pytest.approx(0.0125)
    assert prof.rate_at(MONDAY + timedelta(days=3, hours=18)) == pytest.approx(0.0125)
    # Thursday 16:00 at 0.6: 16:00 -> 18:00 adds 0.1 (0.7), the night adds nothing, 08:00 -> 10:00
    # adds 0.1: truly full at 10:00 Friday
    now = MONDAY + timedelta(days=3, hours=16)
    full = forecast_full_at(prof, 0.6, now, 0.8)
    assert full is not None and abs(full - (MONDAY + timedelta(days=4, hours=10))) < timedelta(minutes=5)
    # a straight line at the day's rate would say 20:00 Thursday: 14 hours early
    assert forecast_full_at(prof, 0.85, now, 0.8) == now
    # a bin that filled faster than its profile since 08:00 (0.48 against 0.0375 + 7 x 0.05) is forecast
    # faster, its 8 hours weighed against the 3 days (1.5 of fill) behind the profile:
    # (1.5 + 0.48) / (1.5 + 0.3875) = 1.049 times as fast (tests/analytics/test_fillpool.py)
    history = 3 * prof.daily_fill()
    assert adapt_scale(prof, MONDAY + timedelta(days=3, hours=8), 0.0, now, 0.48) == pytest.approx(
        (history + 0.48) / (history + 0.3875))
    assert adapt_scale(prof, None, None, now, 0.5) == 1.0


def test_a_monday_not_seen_yet_fills_like_the_working_days_seen_not_like_the_weekend() -> None:
    """Town with rounds on Monday, Wednesday and Friday (scenario from a Thursday): an office bin's
    crossing on Monday was forecast a median 16 h late from Sunday. Its profile had Thursday and Friday
    (0.025 an hour, 08:00-18:00) and a quiet weekend (a fifth of it); an unseen Monday took the four
    days' mean. A weekday not seen yet takes the factor of the seen days of its kind (working days
    Monday-Friday, the weekend Saturday-Sunday)."""
    thursday = MONDAY + timedelta(days=3)
    t, lv, level = [], [], 0.0
    for d in range(4):  # Thursday .. Sunday, never emptied
        for h in range(24):
            rate = DAY_RATE[h] * (0.5 if d < 2 else 0.1)
            t.append(to_ms(thursday + timedelta(days=d, hours=h)))
            lv.append(level + rate / 2)
            level += rate
    prof = learn_profile(np.array(t, dtype=np.int64), np.array(lv), "Asia/Makassar")
    assert prof is not None
    monday, saturday = MONDAY + timedelta(days=7, hours=12), MONDAY + timedelta(days=12, hours=12)
    assert prof.rate_at(monday) == pytest.approx(0.025, rel=0.02)  # was 0.6 of it
    assert prof.rate_at(saturday) == pytest.approx(0.005, rel=0.02)  # the weekend seen
    assert prof.rate_at(MONDAY + timedelta(days=3, hours=12)) == pytest.approx(0.025, rel=0.05)  # Thursday seen


def test_profile_skips_pickups_and_clamped_hours() -> None:
    t, lv = day_series(2, start_level=0.3)
    lv = np.minimum(lv, 0.9995)  # the evening stands on the sensor's ceiling
    prof = learn_profile(t, lv, "Asia/Makassar")
    assert prof is not None
    # the fall at midnight (-0.5) is not filling: the hour of day never seen filling takes its
    # neighbours' rate (nothing at 23:00 and 01:00: nothing); the hour after a fall is left out
    # too (its mean mixes two fills), so 01:00 is learned from Monday alone
    assert prof.rate_at(MONDAY + timedelta(days=2, hours=0)) == 0.0
    assert prof.rate_at(MONDAY + timedelta(days=2, hours=1)) == 0.0
    # the clamped evening (>= 0.999) teaches nothing either: the day's rate stands
    assert prof.rate_at(MONDAY + timedelta(days=2, hours=16)) == pytest.approx(0.05)
    assert learn_profile(t[:10], lv[:10], "Asia/Makassar") is None  # too little history


def test_expected_pickup_follows_the_bins_own_truck() -> None:
    # the round starts at 06:00 but this bin's truck comes at about 10:40
    pickups = [datetime(2026, 3, d, 10, 40 + k, tzinfo=WITA).astimezone(UTC) for k, d in enumerate((2, 3, 4))]
    all_days = range(7)
    six = ["06:00"]
    at = lambda d, h, m=0: datetime(2026, 3, d, h, m, tzinfo=WITA)  # noqa: E731
    # Thursday 07:00, round in progress, not emptied yet: today at 10:41
    assert expected_pickup(at(5, 7).astimezone(UTC), pickups, six, all_days, "Asia/Makassar") == at(5, 10, 41)
    # emptied today: tomorrow
    assert expected_pickup(at(4, 12).astimezone(UTC), pickups, six, all_days, "Asia/Makassar") == at(5, 10, 41)
    # Thursday 11:00 and the truck is late: it is coming now
    assert expected_pickup(at(5, 11).astimezone(UTC), pickups, six, all_days, "Asia/Makassar") == at(5, 11)
    # Thursday 12:00, more than an hour late: skipped, tomorrow
    assert expected_pickup(at(5, 12).astimezone(UTC), pickups, six, all_days, "Asia/Makassar") == at(6, 10, 41)
    # no pickup known: the configured round start; only on collection days (Mon, Thu)
    assert expected_pickup(at(3, 7).astimezone(UTC), [], six, [0, 3], "Asia/Makassar") == at(5, 6)
    # no pickup known at 07:00 while the round (06:00, its last bin usually at 09:30) is under way:
    # the truck may still come today, by 09:30 (it was expected tomorrow at 06:00, and a bin full at
    # noon got a warning its truck then made needless at 07:10)
    # and with no bin of the city emptied yet (the first round after the install; mwf-town seed 7: four
    # needless warnings at 06:00 for Monday's truck), now, for a round's shift of 8 h from its start
    assert expected_pickup(at(5, 7).astimezone(UTC), [], six, all_days, "Asia/Makassar") == at(5, 7)
    assert expected_pickup(at(5, 13, 59).astimezone(UTC), [], six, all_days, "Asia/Makassar") == at(5, 13, 59)
    assert expected_pickup(at(5, 14, 1).astimezone(UTC), [], six, all_days, "Asia/Makassar") == at(6, 6)
    assert expected_pickup(at(5, 7).astimezone(UTC), [], six, [0, 4], "Asia/Makassar") == at(6, 6)  # Friday
    assert expected_pickup(at(5, 7).astimezone(UTC), [], six, all_days, "Asia/Makassar", time(9, 30)) == \
        at(5, 9, 30)
    # after the round's last bin by more than an hour: tomorrow's round
    assert expected_pickup(at(5, 10, 31).astimezone(UTC), [], six, all_days, "Asia/Makassar", time(9, 30)) == \
        at(6, 6)
    # within an hour after it, the truck may be late, as it may be for a bin with a usual time: now
    # (small seed 99: at 10:00 a bin never seen emptied was expected tomorrow and warned; its truck
    # had come at 09:57, past the round's usual 09:5x end, and its reading was from before)
    assert expected_pickup(at(5, 10).astimezone(UTC), [], six, all_days, "Asia/Makassar", time(9, 30)) == at(5, 10)
    assert round_end([pickups, [at(2, 9, 30).astimezone(UTC)]], "Asia/Makassar") == time(10, 41)
    assert round_end([[], []], "Asia/Makassar") is None


def test_a_bin_never_emptied_is_expected_when_the_round_usually_comes_not_at_its_last_bin() -> None:
    """Fresh makassar seed 47: three bins whose first-day pickup was too small to see (0.11-0.28 of
    the bin) had no usual time; at 06:00, when the round started, each was expected at the round's
    last bin (10:27), its forecast crossing (09:40-10:15) came before that, and it got a
    ``bin_full_soon`` its truck made needless at 06:31-06:55. A bin with no usual time is expected
    when the round usually comes (the median of the bins' usual times) and, as a bin with a usual
    time, is now while the round may still reach it (until its last bin's time and an hour)."""
    at = lambda d, h, m=0: datetime(2026, 3, d, h, m, tzinfo=WITA)  # noqa: E731
    six, all_days, tz = ["06:00"], range(7), "Asia/Makassar"
    # the city's bins come at 06:40, 08:00 and 10:27
    hist = [[at(d, h, m).astimezone(UTC) for d in (2, 3)] for h, m in ((6, 40), (8, 0), (10, 27))]
    assert typical_pickup(hist, tz, six) == time(8, 0)
    assert round_end(hist, tz, six) == time(10, 27)
    last, usual = time(10, 27), time(8, 0)
    expect = lambda now: expected_pickup(now.astimezone(UTC), [], six, all_days, tz, last, usual)  # noqa: E731
    assert expect(at(5, 5, 50)) == at(5, 8)  # before the round: today, when it usually comes
    assert expect(at(5, 6)) == at(5, 8)  # the round starts: the same (it was 10:27)
    assert expect(at(5, 9)) == at(5, 9)  # past its usual time, the round still out: now
    assert expect(at(5, 11)) == at(5, 11)  # its last bin's time passed by less than an hour: now
    assert expect(at(5, 11, 30)) == at(6, 8)  # more: tomorrow's round
    assert expect(at(5, 20)) == at(6, 8)
    # round days only (Monday, Thursday): Thursday 08:00 from Tuesday
    assert expected_pickup(at(3, 12).astimezone(UTC), [], six, [0, 3], tz, last, usual) == at(5, 8)
    assert typical_pickup([[], []], tz, six) is None


def test_a_crews_evening_emptied_does_not_move_the_bins_truck_time() -> None:
    """Demo city, tried as a new user: a bin emptied by its 06:35 round one day and marked Emptied
    by a crew at 22:29 the next was expected at 14:32 (the median of the two), when no truck comes,
    and got a ``bin_full_soon`` warning at 3 % full (its forecast crossing, 08:08, was before
    14:32 but after the real round). The truck's time is the median of the pickups near the time most
    of them are near; two apart, the one the configured round reaches first."""
    at = lambda d, h, m=0: datetime(2026, 3, d, h, m, tzinfo=WITA)  # noqa: E731
    pickups = [at(2, 6, 35).astimezone(UTC), at(3, 22, 29).astimezone(UTC)]
    six, all_days = ["06:00"], range(7)
    assert usual_pickup_time(pickups, "Asia/Makassar", six) == time(6, 35)
    assert expected_pickup(at(3, 22, 36).astimezone(UTC), pickups, six, all_days, "Asia/Makassar") == at(4, 6, 35)
    # a week of the round at 06:30-06:50 and one evening press: the round's median
    week = [at(d, 6, 30 + 5 * (d % 5)).astimezone(UTC) for d in range(2, 8)] + [at(8, 22, 29).astimezone(UTC)]
    assert usual_pickup_time(week, "Asia/Makassar", six) == time(6, 40)
    # round the clock: a night round at 23:50 and 00:10 comes at midnight, not at noon
    night = [at(2, 23, 50).astimezone(UTC), at(4, 0, 10).astimezone(UTC)]
    assert usual_pickup_time(night, "Asia/Makassar", ["23:30"]) == time(0, 0)


def test_bag_over_the_sensor_at_the_window_edge_is_no_pickup() -> None:
    t0 = pd.Timestamp("2026-03-02T02:00:00Z")
    # the first reading of the window is a bag held over the sensor (0.9), then the real 0.45
    levels = [0.9, 0.45, 0.46, 0.47, 0.48]
    frame = pd.DataFrame({"device_id": "B", "time": [t0 + pd.Timedelta(minutes=10 * k) for k in range(5)],
                          "fillingLevel": levels})
    assert detect(frame, 0.3) == []
    # the same fall with the reading before it in the window is a pickup
    frame2 = pd.DataFrame({"device_id": "B", "time": [t0 + pd.Timedelta(minutes=10 * k) for k in range(6)],
                           "fillingLevel": [0.88, 0.9, 0.05, 0.06, 0.07, 0.08]})
    assert [(p.level_before, p.level_after) for p in detect(frame2, 0.3)] == [(0.9, 0.05)]


def station_frame(days: int, plume: tuple[int, int] | None = None) -> pd.DataFrame:
    """10-minute PM2.5 of one station: 20 ug/m3 with a morning rise to 50 from 06:30 to 08:30 local
    every day, optionally a plume (+60) in the last buckets of the last day from ``plume`` (h, m)."""
    rows = []
    end = MONDAY + timedelta(days=days - 1, hours=8)
    t = MONDAY
    while t < end:
        v = 20.0 + (t.minute % 7) * 0.3
        if time(6, 30) <= t.time() < time(8, 30):
            v += 30.0
        if plume is not None and t.date() == end.date() and t.time() >= time(*plume):
            v += 60.0
        rows.append({"device_id": "S", "time": pd.Timestamp(t.astimezone(UTC)), "pm25": v})
        t += timedelta(minutes=10)
    return pd.DataFrame(rows)


def test_morning_rise_is_judged_against_the_same_hour() -> None:
    cfg = AnalyticsSettings()
    now = (MONDAY + timedelta(days=2, hours=8)).astimezone(UTC)
    frame = station_frame(3)
    before = frame[frame["time"] < pd.Timestamp((MONDAY + timedelta(days=2)).astimezone(UTC))]
    prof = daily_profile(time_of_day_slots(before["time"], cfg.timezone), before["pm25"].to_numpy())
    assert prof[7 * 6] == pytest.approx(50.9, abs=1.0) and prof[12 * 6] == pytest.approx(20.9, abs=1.0)
    scored = score_spikes(frame, now, cfg, profiles={"S": prof})
    assert not scored["spike"].any()  # the daily rise is expected at 07:00-08:00
    # with a plain rolling median (no profile) the same morning is a spike
    assert score_spikes(frame, now, cfg)["spike"].tail(3).all()
    # a real plume on top of the rise is still seen
    plumed = score_spikes(station_frame(3, plume=(7, 20)), now, cfg, profiles={"S": prof})
    assert plumed["spike"].tail(3).all() and plumed["excess"].iloc[-1] == pytest.approx(60.0, abs=2.0)


def add_bin_with_pickups(sessions: Any, now: datetime, hours_ago: tuple[int, ...]) -> None:
    """Register bin ``B`` (1,000 mm) with a pickup each of ``hours_ago`` before ``now``, each emptying it
    from 0.85 (the last from 0.84) to 0."""
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="B", kind="bin", depth_mm=1000, installed_at=now - timedelta(days=30)))
        for k, h in enumerate(hours_ago):
            s.add(CollectionRow(device_id="B", at=now - timedelta(hours=h),
                                level_before=0.84 if k == len(hours_ago) - 1 else 0.85, level_after=0.0))


def test_pickup_that_clears_full_lets_soon_full_see_it_in_the_same_run(sessions: Any, influx: InfluxClient) -> None:
    """A repeated run at the same ``now`` opened ``bin_full_soon`` the first run did not: the rule
    read ``bin_full`` as active although a pickup cleared it earlier in that run."""
    now = datetime(2026, 3, 5, 2, 0, tzinfo=UTC)  # Thursday 10:00 WITA
    pickup = now - timedelta(minutes=20)
    # three earlier cycles of 8, 8, 8 h filling to 0.85 (about 0.1 an hour): full ~8 h after a pickup
    add_bin_with_pickups(sessions, now, (48, 40, 32, 24))
    pts = [(pickup - timedelta(minutes=10 * k), 0.9 - 0.001 * k) for k in range(1, 13)] + \
          [(pickup, 0.02), (pickup + timedelta(minutes=10), 0.03), (now, 0.04)]
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "B"}, {"fillingLevel": v}, to_ms(t))
                        for t, v in pts])
    cfg = AnalyticsSettings(collection_times=["22:00"])  # the truck comes at about 10:00 WITA: tomorrow
    run_once(sessions, influx, cfg, now=pickup - timedelta(minutes=5))  # bin_full opens
    first = run_once(sessions, influx, cfg, now=now)
    assert first.cleared == {"bin_full": 1}
    assert first.opened == {"bin_full_soon": 1}  # seen in the same run, not only in the next
    again = run_once(sessions, influx, cfg, now=now)
    assert again.opened == {} and again.cleared == {}
    with sessions() as s:
        soon = s.scalars(select(AlertRow).where(AlertRow.type == "bin_full_soon")).one()
    assert soon.details["method"] == "history"


def test_smouldering_fire_is_seen_by_its_excess_over_the_other_bins() -> None:
    """A second city's slowly smouldering fire (+1 degC per 10 min, peaking under 60 degC) was missed:
    neither the 60 degC limit nor the 10 degC-in-30-min rise ever fired."""
    from analytics.rules import fire
    from analytics.rules.base import Context, Device
    from lorong.core.model import DeviceKind

    now = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    cfg = AnalyticsSettings()
    rows = []
    curves = {f"B{i}": [30.0 + 0.1 * i] * 12 for i in range(6)}
    curves["SUN"] = [30.0 + min(9.0, 1.5 * k) for k in range(12)]  # a bin in full sun: +9 degC
    curves["SMOULDER"] = [30.0 + 1.3 * k for k in range(12)]  # 44.3 degC after two hours
    for dev, temps in curves.items():
        for k, v in enumerate(temps):
            rows.append({"device_id": dev, "time": pd.Timestamp(now - timedelta(minutes=10 * (11 - k))),
                         "temperature": v})
    frame = pd.DataFrame(rows).sort_values(["device_id", "time"]).reset_index(drop=True)
    devices = {d: Device(d, DeviceKind.BIN, "Wajo", "", 0.8, 600, now - timedelta(days=9)) for d in curves}
    got = {v.device_id: v for v in fire.evaluate(Context(now, cfg, devices, recent=frame))}
    assert set(got) == {"SMOULDER"}
    assert got["SMOULDER"].severity == "major" and got["SMOULDER"].details["excess_c"] == pytest.approx(13.95, abs=0.05)
    # without enough peers there is no median to compare with
    few = {d: devices[d] for d in ("B0", "SMOULDER")}
    assert fire.evaluate(Context(now, cfg, few, recent=frame[frame["device_id"].isin(few)])) == []


def test_jitter_around_the_threshold_opens_no_full_alert(sessions: Any, influx: InfluxClient) -> None:
    """A bin standing just below 0.8 overnight: the EM310-UDL's +-10 mm puts two readings in a row
    above the line now and then, which opened ``bin_full`` hours before the bin was full."""
    now = datetime(2026, 3, 4, 20, 0, tzinfo=UTC)  # Thursday 04:00 WITA
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="B", kind="bin", depth_mm=1000, installed_at=now - timedelta(days=30)))
    # truly 0.795; the sensor reads it 0.786 .. 0.804; the two newest readings are above 0.8
    hover = [0.79, 0.788, 0.796, 0.801, 0.803]
    pts = [(now - timedelta(minutes=10 * (len(hover) - 1 - k)), v) for k, v in enumerate(hover)]
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "B"}, {"fillingLevel": v}, to_ms(t))
                        for t, v in pts])
    cfg = AnalyticsSettings()
    assert run_once(sessions, influx, cfg, now=now).opened.get("bin_full") is None
    # the same readings with the mean of 1 (the old rule: two in a row were enough) open it
    assert run_once(sessions, influx, cfg.model_copy(update={"full_mean_readings": 1}), now=now).opened == \
        {"bin_full": 1}
    # a bag thrown in: 0.812 and 0.815 bring the mean of the newest four to 0.808: full, with the
    # default rule, 20 minutes after the bag
    with sessions.begin() as s:
        s.execute(AlertRow.__table__.delete())
    later = [(now + timedelta(minutes=10), 0.812), (now + timedelta(minutes=20), 0.815)]
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "B"}, {"fillingLevel": v}, to_ms(t))
                        for t, v in later])
    assert run_once(sessions, influx, cfg, now=now + timedelta(minutes=20)).opened == {"bin_full": 1}


def test_a_stronger_morning_everywhere_is_no_spike_but_a_local_plume_is() -> None:
    """The morning rise 15 ug/m3 stronger than usual at every station (the weather, a low mixing
    height) scored as a spike at each: compared with the other stations it is nobody's."""
    cfg = AnalyticsSettings()
    now = (MONDAY + timedelta(days=2, hours=8)).astimezone(UTC)
    last_morning = pd.Timestamp((MONDAY + timedelta(days=2, hours=6, minutes=30)).astimezone(UTC))
    frames, profiles = [], {}
    for k in range(6):
        f = station_frame(3, plume=(7, 20) if k == 0 else None).assign(device_id=f"S{k}")
        f.loc[f["time"] >= last_morning, "pm25"] += 15.0  # every station, the same morning
        before = f[f["time"] < pd.Timestamp((MONDAY + timedelta(days=2)).astimezone(UTC))]
        profiles[f"S{k}"] = daily_profile(time_of_day_slots(before["time"], cfg.timezone), before["pm25"].to_numpy())
        frames.append(f)
    scored = score_spikes(pd.concat(frames, ignore_index=True), now, cfg, profiles=profiles)
    newest = scored[scored["time"] == scored["time"].max()].set_index("device_id")
    # against its own profile every station's morning is 15 above: a spike each (the old rule)
    assert newest["spike"].all() and newest.loc["S3", "excess"] == pytest.approx(15.0, abs=1.0)
    # less the city's common rise (the median excess, 15) only the plume at S0 is left
    assert newest["local_spike"].tolist() == [True, False, False, False, False, False]
    assert newest.loc["S0", "local_excess"] == pytest.approx(60.0, abs=2.0)
    # with fewer than MIN_PEERS stations nothing is taken off
    few = score_spikes(pd.concat(frames[:3], ignore_index=True), now, cfg, profiles=profiles)
    assert few.loc[few["time"] == few["time"].max(), "local_spike"].all()


def test_a_plume_outside_an_episode_is_a_spike_while_the_episode_holds() -> None:
    """Tuning city seed 8: an episode held 12 of 20 stations 40 ug/m3 up for two hours; the
    city's median excess (40) came off every station, so a 48 ug/m3 plume at a station the
    episode never reached read as 8 over its expectation: missed. A rise the city has held for an
    hour comes off a station only as far as that station shared it."""
    cfg = AnalyticsSettings()
    now = (MONDAY + timedelta(days=2, hours=8)).astimezone(UTC)
    episode = pd.Timestamp((MONDAY + timedelta(days=2, hours=5, minutes=30)).astimezone(UTC))
    plume = pd.Timestamp((MONDAY + timedelta(days=2, hours=7, minutes=20)).astimezone(UTC))
    frames, profiles = [], {}
    for k in range(10):
        f = station_frame(3).assign(device_id=f"S{k}")
        if k < 6:
            f.loc[f["time"] >= episode, "pm25"] += 40.0  # the episode's stations
        if k == 9:
            f.loc[f["time"] >= plume, "pm25"] += 48.0  # open burning beside a station outside it
        before = f[f["time"] < pd.Timestamp((MONDAY + timedelta(days=2)).astimezone(UTC))]
        profiles[f"S{k}"] = daily_profile(time_of_day_slots(before["time"], cfg.timezone), before["pm25"].to_numpy())
        frames.append(f)
    scored = score_spikes(pd.concat(frames, ignore_index=True), now, cfg, profiles=profiles)
    newest = scored[scored["time"] == scored["time"].max()].set_index("device_id")
    assert newest.loc["S0", "excess"] == pytest.approx(40.0, abs=1.5)  # the city's median excess
    assert newest.loc["S9", "local_excess"] == pytest.approx(48.0, abs=1.5)
    assert newest["local_spike"].tolist() == [False] * 9 + [True]
    # the same 40 ug/m3 rising at the six stations within the hour is still taken off every station
    sudden = pd.concat(frames, ignore_index=True)
    late = pd.Timestamp((MONDAY + timedelta(days=2, hours=7, minutes=10)).astimezone(UTC))
    sudden.loc[sudden["device_id"].isin([f"S{k}" for k in range(6)]) & (sudden["time"] < late)
               & (sudden["time"] >= episode), "pm25"] -= 40.0
    fresh = score_spikes(sudden, now, cfg, profiles=profiles)
    fresh = fresh[fresh["time"] == fresh["time"].max()].set_index("device_id")
    assert fresh.loc["S9", "local_excess"] == pytest.approx(8.0, abs=1.5) and not fresh["local_spike"].any()


def test_a_morning_within_its_usual_day_to_day_spread_is_no_spike() -> None:
    """The morning rise is 25, 45 and 30 ug/m3 on three days and 48 today: today's morning is 18
    above the profile (the 24-hour baseline's MAD of about 1 made it many sigma); the profile's
    spread at that time of day (the mornings differ from day to day) makes it ordinary."""
    cfg = AnalyticsSettings()
    rows = []
    t = MONDAY
    while t < MONDAY + timedelta(days=3, hours=8):
        v = 20.0 + (t.minute % 7) * 0.3
        if time(6, 30) <= t.time() < time(8, 30):
            v += (25.0, 45.0, 30.0, 48.0)[(t - MONDAY).days]
        rows.append({"device_id": "S", "time": pd.Timestamp(t.astimezone(UTC)), "pm25": v})
        t += timedelta(minutes=10)
    frame = pd.DataFrame(rows)
    now = (MONDAY + timedelta(days=3, hours=8)).astimezone(UTC)
    before = frame[frame["time"] < pd.Timestamp((MONDAY + timedelta(days=3)).astimezone(UTC))]
    slots, x = time_of_day_slots(before["time"], cfg.timezone), before["pm25"].to_numpy()
    days = before["time"].dt.tz_convert(cfg.timezone).dt.day.to_numpy()
    level = daily_profile(slots, x)
    spread = profile_spread(slots, days, x, level)
    assert spread[7 * 6] >= 4.5 > DAY_TO_DAY_REL_SPREAD * np.median(level)  # the mornings differ
    # the afternoons do not: their spread is the least day-to-day spread, a fraction of the daily level
    assert spread[13 * 6] == pytest.approx(DAY_TO_DAY_REL_SPREAD * np.median(level))
    # against the level alone today's morning (48, profile about 35) is a spike
    assert score_spikes(frame, now, cfg, profiles={"S": level})["spike"].tail(3).all()
    scored = score_spikes(frame, now, cfg, profiles={"S": np.vstack([level, spread])})
    assert not scored["spike"].tail(3).any()


def test_a_pickup_just_over_the_minimum_drop_is_seen_through_the_jitter() -> None:
    """A truck took 0.31 of a bin (more than pickup_min_drop, 0.3); the two readings around it,
    each +-1.2 % (EM310-UDL +-10 mm), showed a fall of 0.29: no pickup was recorded."""
    t0 = pd.Timestamp("2026-03-02T02:00:00Z")
    frame = pd.DataFrame({"device_id": "B", "time": [t0 + pd.Timedelta(minutes=10 * k) for k in range(5)],
                          "fillingLevel": [0.30, 0.302, 0.012, 0.015, 0.02]})
    assert [(p.level_before, p.level_after) for p in detect(frame, 0.3)] == [(0.302, 0.012)]
    # a fall of 0.27 is beyond the sensor's tolerance of a 0.3 drop: no pickup
    frame.loc[2, "fillingLevel"] = 0.032
    assert detect(frame, 0.3) == []


def test_a_warning_cleared_by_a_partial_pickup_lets_the_new_cycle_have_its_own_in_the_same_run(
        sessions: Any, influx: InfluxClient) -> None:
    """Fresh jakarta-like seed 29: a repeated run at the same ``now`` opened ``bin_full_soon`` the first
    run did not. The first run cleared the bin's warning (its truck left 0.30 of it at 07:49 WIB) and
    judged nothing more; the repeat judged the new cycle, which fills before tomorrow's truck."""
    now = datetime(2026, 3, 5, 2, 0, tzinfo=UTC)  # Thursday 10:00 WITA
    pickup = now - timedelta(minutes=20)
    # three earlier cycles of 8 h filling to 0.85 (about 0.1 an hour); its truck usually at 14:00 WITA
    add_bin_with_pickups(sessions, now, (44, 36, 28, 20))
    pts = [(pickup - timedelta(minutes=10 * k), round(0.75 - 0.015 * k, 3)) for k in range(12, 0, -1)] + \
          [(pickup, 0.30), (pickup + timedelta(minutes=10), 0.31), (now, 0.32)]
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "B"}, {"fillingLevel": v}, to_ms(t))
                        for t, v in pts])
    cfg = AnalyticsSettings(collection_times=["22:00"])
    # 09:35: full within the hour, its truck at 14:00; it came early (09:40) and left 0.30: tomorrow at 14:00
    assert run_once(sessions, influx, cfg, now=pickup - timedelta(minutes=5)).opened == {"bin_full_soon": 1}
    first = run_once(sessions, influx, cfg, now=now)
    assert first.cleared == {"bin_full_soon": 1}  # emptied
    assert first.opened == {"bin_full_soon": 1}  # the new cycle's, in the same run
    again = run_once(sessions, influx, cfg, now=now)
    assert again.opened == {} and again.cleared == {}
    with sessions() as s:
        rows = s.scalars(select(AlertRow).where(AlertRow.type == "bin_full_soon").order_by(AlertRow.id)).all()
        assert [r.status for r in rows] == ["cleared", "active"]
        assert rows[1].started_at.replace(tzinfo=UTC) == now  # the new cycle's
        assert rows[1].details["fillingLevel"] == pytest.approx(0.32)


def test_a_stored_forecast_from_before_the_pickup_opens_no_warning(sessions: Any, influx: InfluxClient) -> None:
    """The scheduler reuses the stored forecast between its forecast runs: a bin emptied since the
    forecast was made (by its truck or a crew's Emptied) read 0 % with a crossing time already past,
    and got a "full soon" warning right after it was emptied."""
    now = datetime(2026, 3, 5, 2, 0, tzinfo=UTC)  # Thursday 10:00 WITA
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="B", kind="bin", depth_mm=1000, installed_at=now - timedelta(days=30)))
    rising = [(now - timedelta(minutes=10 * k), round(0.75 - 0.01 * k, 3)) for k in range(24, 0, -1)]
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "B"}, {"fillingLevel": v}, to_ms(t))
                        for t, v in rising])
    cfg = AnalyticsSettings(collection_times=["22:00"], soon_horizon_h=24.0)  # the truck comes tomorrow
    # the forecast is stored (0.74 rising 0.06 an hour: full within the hour) and the warning opens
    assert run_once(sessions, influx, cfg, now=now - timedelta(minutes=5)).opened == {"bin_full_soon": 1}
    # emptied by the crew at 10:00; the sensor says 0.02 from 10:10
    with sessions.begin() as s:
        s.add(CollectionRow(device_id="B", at=now, level_before=0.75, level_after=0.02))
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "B"}, {"fillingLevel": 0.02},
                             to_ms(now + timedelta(minutes=10 * k))) for k in range(1, 4)])
    report = run_once(sessions, influx, cfg, now=now + timedelta(minutes=35), forecast=False)
    assert report.cleared == {"bin_full_soon": 1} and report.opened == {}
    # and in the run after, which still reuses the stored forecast, none opens either
    report = run_once(sessions, influx, cfg, now=now + timedelta(minutes=45), forecast=False)
    assert report.opened == {}


def test_a_bin_just_emptied_by_its_crew_is_forecast_from_the_readings_after(sessions: Any,
                                                                            influx: InfluxClient) -> None:
    """A crew pressed Emptied on a full bin; one reading since says 1 %. The current level was the median
    of the newest three readings, two of them from before the pickup (85 %): the bin was "full now",
    and a "full soon" warning at 1 % came back within minutes of every Emptied (a crew's trial on the
    demo city), and before the bin reported again its full readings opened ``bin_full`` again. The
    fill-level rules and the forecast read the readings after the bin's last pickup."""
    now = datetime(2026, 3, 5, 2, 0, tzinfo=UTC)  # Thursday 10:00 WITA
    tap = now - timedelta(minutes=4)
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="B", kind="bin", depth_mm=1000, installed_at=now - timedelta(days=30)))
    pts = []
    for d in range(3, 0, -1):  # three days filling 0.05 an hour 08:00-18:00 WITA, emptied at night
        midnight = MONDAY + timedelta(days=3 - d)
        pts += [(midnight + timedelta(minutes=10 * k), round(0.005 * max(0, min(k, 108) - 48), 4))
                for k in range(144)]
    pts += [(tap - timedelta(minutes=10 * k), round(0.86 - 0.002 * k, 3)) for k in range(1, 13)]  # full
    pts += [(now - timedelta(minutes=1), 0.01)]
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "B"}, {"fillingLevel": v}, to_ms(t))
                        for t, v in pts])
    with sessions.begin() as s:
        s.add(CollectionRow(device_id="B", at=tap, level_before=0.85, level_after=None, source="crew",
                            actor="crew:truk-07"))
    # before the bin reports again, its readings from before the Emptied say nothing about it
    assert run_once(sessions, influx, AnalyticsSettings(), now=tap + timedelta(minutes=1)).opened == {}
    report = run_once(sessions, influx, AnalyticsSettings(), now=now)
    assert report.opened == {}
    with sessions() as s:
        derived = s.get(DeviceLatestRow, "B").derived
    assert derived["fill_rate_method"] == "profile"
    assert datetime.fromisoformat(derived["full_at"]) > now + timedelta(hours=20)  # 0.01 + 0.5 a day


def test_a_bin_still_full_after_an_emptied_is_full_since_the_first_reading_after(sessions: Any,
                                                                               influx: InfluxClient) -> None:
    """Emptied pressed at the wrong bin: it keeps reading 86 %. ``bin_full`` opens again from its readings
    after the press, full since the first of them (not since a time before the press)."""
    now = datetime(2026, 3, 5, 2, 0, tzinfo=UTC)
    tap = now - timedelta(minutes=25)
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="B", kind="bin", depth_mm=1000, installed_at=now - timedelta(days=30)))
        s.add(CollectionRow(device_id="B", at=tap, level_before=0.86, level_after=None, source="crew",
                            actor="crew:truk-07"))
    pts = [(now - timedelta(minutes=10 * k), round(0.86 + 0.001 * (k % 3), 3)) for k in range(12)]
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "B"}, {"fillingLevel": v}, to_ms(t))
                        for t, v in pts])
    assert run_once(sessions, influx, AnalyticsSettings(), now=now).opened == {"bin_full": 1}
    with sessions() as s:
        alert = s.scalars(select(AlertRow).where(AlertRow.type == "bin_full")).one()
    assert (alert.details["since"], alert.details["since_exact"]) == ("2026-03-05T01:40:00+00:00", True)


def test_a_retired_bins_alerts_are_cleared(sessions: Any, influx: InfluxClient) -> None:
    """``lorong devices retire`` left the bin's ``bin_full`` active on the crew page and in ``GET /alerts``,
    and ``lorong cities remove`` then refused the city for it: the next run clears it, once."""
    now = datetime(2026, 3, 5, 2, 0, tzinfo=UTC)
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="B", kind="bin", depth_mm=1000, installed_at=now - timedelta(days=30)))
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "B"}, {"fillingLevel": 0.9 + 0.001 * k},
                             to_ms(now - timedelta(minutes=10 * k))) for k in range(6)])
    assert run_once(sessions, influx, AnalyticsSettings(), now=now).opened == {"bin_full": 1}
    with sessions.begin() as s:
        retire_device(s, "B", now + timedelta(minutes=5))
    report = run_once(sessions, influx, AnalyticsSettings(), now=now + timedelta(minutes=10))
    assert report.cleared == {"bin_full": 1} and report.opened == {}
    with sessions() as s:
        row = s.scalars(select(AlertRow).where(AlertRow.type == "bin_full")).one()
        last = s.scalars(select(AlertHistoryRow).where(AlertHistoryRow.alert_id == row.id)
                         .order_by(AlertHistoryRow.id.desc())).first()
    assert (row.status, row.cleared_by) == ("cleared", "system")
    assert last is not None and (last.action, last.details) == ("cleared", {"reason": "device retired"})
    again = run_once(sessions, influx, AnalyticsSettings(), now=now + timedelta(minutes=10))
    assert again.cleared == {} and again.opened == {}
