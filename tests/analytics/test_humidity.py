"""Humidity corrections (Crilley 2018 kappa-Koehler, EPA Barkjohn 2021) and PM sensor QC."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from collections import Counter
from pathlib import Path

import pytest

from analytics.humidity import (
    SENSOR_MODELS,
    Correction,
    PmFlag,
    barkjohn_2021,
    check_ab_channels,
    check_pm_ceiling,
    correct_pm,
    get_sensor_model,
    kappa_correct,
    kappa_growth_factor,
    purpleair_pm25,
)

SDS011_DAY = Path(__file__).resolve().parents[1] / "data" / "sensor-community-abdn" / \
    "2019-03-06_sds011_sensor_15462.csv"


def test_kappa_growth_factor_by_hand() -> None:
    # RH 0.8, kappa 0.4: 1 + (0.4 / 1.65) / (-1 + 1 / 0.8) = 1 + 0.242424 / 0.25 = 3.25 / 1.65
    assert kappa_growth_factor(0.8, 0.4) == pytest.approx(3.25 / 1.65)
    assert kappa_growth_factor(0.8, 0.4) == pytest.approx(1.9696969697)
    # RH 0.5: -1 + 1 / 0.5 = 1, so C = 1 + 0.4 / 1.65 = 2.05 / 1.65
    assert kappa_growth_factor(0.5, 0.4) == pytest.approx(1.2424242424)
    assert kappa_growth_factor(0.0, 0.4) == 1.0
    assert kappa_growth_factor(0.9, 0.0) == 1.0


def test_kappa_correct_by_hand() -> None:
    # 50 ug/m3 at RH 0.8, kappa 0.4: 50 / (3.25 / 1.65) = 82.5 / 3.25
    assert kappa_correct(50.0, 0.8, 0.4) == pytest.approx(25.3846153846)
    # 33 ug/m3 at RH 0.5: 33 * 1.65 / 2.05 = 54.45 / 2.05
    assert kappa_correct(33.0, 0.5, 0.4) == pytest.approx(26.5609756098)
    # RH 0.95 is still answered (= rh_max): 1 + (0.4 / 1.65) / (1 / 0.95 - 1) = 5.6060606
    assert kappa_correct(56.060606, 0.95, 0.4) == pytest.approx(10.0, rel=1e-6)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: kappa_growth_factor(1.0, 0.4), "undefined at RH = 1"),
    (lambda: kappa_growth_factor(80.0, 0.4), "percent given"),
    (lambda: kappa_growth_factor(0.5, -0.1), "kappa must be >= 0"),
    (lambda: kappa_correct(10.0, 0.96, 0.4), "above rh_max 0.95"),
    (lambda: kappa_correct(-1.0, 0.5, 0.4), "pm_ugm3 must be >= 0"),
    (lambda: kappa_correct(math.nan, 0.5, 0.4), "pm_ugm3 must be finite"),
    (lambda: barkjohn_2021(10.0, math.nan), "rh_fraction must be finite"),
    (lambda: check_ab_channels(-1.0, 2.0), "a_ugm3 must be >= 0"),
    (lambda: check_pm_ceiling(SENSOR_MODELS["sds011"], "pm10", math.nan), "finite"),
    (lambda: get_sensor_model("hpma115"), "unknown PM sensor model 'hpma115'; known: sds011, pms5003"),
])
def test_bad_input_raises_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_barkjohn_2021_by_hand() -> None:
    # 0.524 * 20 - 0.0862 * 50 + 5.75 = 10.48 - 4.31 + 5.75
    assert barkjohn_2021(20.0, 0.5) == pytest.approx(11.92)
    # 0.524 * 100 - 0.0862 * 80 + 5.75 = 52.4 - 6.896 + 5.75
    assert barkjohn_2021(100.0, 0.8) == pytest.approx(51.254)
    # 0 - 0.0862 * 90 + 5.75 = -2.008: floored at 0
    assert barkjohn_2021(0.0, 0.9) == 0.0


def test_correct_pm_per_model_configuration() -> None:
    sds011 = get_sensor_model("sds011")
    assert (sds011.correction, sds011.kappa) == (Correction.KAPPA_KOEHLER, 0.3)
    # C = 1 + (0.3 / 1.65) / (1 / 0.9 - 1) = 2.636...; 42 / C
    assert correct_pm(sds011, 42.0, 0.9) == pytest.approx(15.931034, rel=1e-6)
    assert correct_pm(dataclasses.replace(sds011, correction=Correction.NONE), 42.0, 0.9) == 42.0
    assert correct_pm(get_sensor_model("purpleair_pa2"), 20.0, 0.5) == pytest.approx(11.92)
    with pytest.raises(ValueError, match="'sds011' uses kappa_koehler but has no kappa"):
        correct_pm(dataclasses.replace(sds011, kappa=None), 50.0, 0.8)
    tuned = dataclasses.replace(sds011, correction=Correction.KAPPA_KOEHLER, kappa=0.4, rh_max=0.85)
    assert correct_pm(tuned, 50.0, 0.8) == pytest.approx(25.3846153846)
    with pytest.raises(ValueError, match=r"above rh_max 0\.85"):
        correct_pm(tuned, 50.0, 0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tuned.kappa = 0.1  # type: ignore[misc]


@pytest.mark.parametrize(("model", "metric", "value", "flag"), [
    ("sds011", "pm10", 1999.9, PmFlag.SENTINEL),
    ("sds011", "pm25", 999.9, PmFlag.SENTINEL),
    ("sds011", "pm10", 999.9, PmFlag.OK),  # 999.9 clips PM2.5 only; for PM10 it is in range
    ("sds011", "pm10", 1214.83, PmFlag.ABOVE_RANGE),
    ("sds011", "pm25", 12.5, PmFlag.OK),
    ("pms5003", "pm25", 500.0, PmFlag.OK),
    ("pms5003", "pm25", 600.0, PmFlag.ABOVE_EFFECTIVE),
    ("pms5003", "pm25", 1200.0, PmFlag.ABOVE_RANGE),
    ("sps30", "pm10", 1000.0, PmFlag.OK),
    ("sps30", "pm10", 1000.1, PmFlag.ABOVE_RANGE),
])
def test_check_pm_ceiling(model: str, metric: str, value: float, flag: PmFlag) -> None:
    assert check_pm_ceiling(get_sensor_model(model), metric, value) is flag


def test_sds011_real_day_flags() -> None:
    # Sensor.Community SDS011 15462, Aberdeen, 2019-03-06: 11 PM10 values above the datasheet range,
    # one of them the 1999.90 clip value; PM2.5 stays in range all day
    model = get_sensor_model("sds011")
    with SDS011_DAY.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    pm10 = Counter(check_pm_ceiling(model, "pm10", float(r["P1"])) for r in rows)
    pm25 = Counter(check_pm_ceiling(model, "pm25", float(r["P2"])) for r in rows)
    assert len(rows) == 565
    assert pm10 == {PmFlag.OK: 554, PmFlag.ABOVE_RANGE: 10, PmFlag.SENTINEL: 1}
    assert pm25 == {PmFlag.OK: 565}
    print(f"\nSDS011 15462 2019-03-06: PM10 { {k.value: n for k, n in pm10.items()} }, "
          f"PM2.5 { {k.value: n for k, n in pm25.items()} }")


@pytest.mark.parametrize(("a", "b", "rel", "rejected"), [
    (1.0, 3.0, 1.0, False),  # 100 % apart but only 2 ug/m3: noise at low concentration
    (200.0, 220.0, 40 / 420, False),  # 20 ug/m3 apart but 9.5 %: within spec at high concentration
    (2.0, 10.0, 16 / 12, True),  # 8 ug/m3 and 133 %: one channel failing
    (10.0, 16.0, 12 / 26, False),  # 6 ug/m3 but 46 %
    (0.0, 5.0, 2.0, False),  # |A - B| = 5 is not > 5
    (0.0, 5.1, 2.0, True),
    (0.0, 0.0, 0.0, False),
])
def test_ab_channel_rule(a: float, b: float, rel: float, rejected: bool) -> None:
    check = check_ab_channels(a, b)
    assert check.mean_ugm3 == pytest.approx((a + b) / 2)
    assert check.abs_diff_ugm3 == pytest.approx(abs(a - b))
    assert check.rel_diff == pytest.approx(rel)
    assert check.rejected is rejected


def test_ab_rule_thresholds_configurable() -> None:
    assert check_ab_channels(10.0, 16.0, max_rel_diff=0.4).rejected is True
    assert check_ab_channels(2.0, 10.0, max_abs_diff_ugm3=10.0).rejected is False


def test_purpleair_pm25_cleans_then_corrects() -> None:
    assert purpleair_pm25(19.0, 21.0, 0.5) == pytest.approx(11.92)  # mean 20
    assert purpleair_pm25(2.0, 10.0, 0.5) is None
