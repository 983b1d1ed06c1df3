"""ISPU (Permen LHK P.14/2020) and US AQI (EPA 2024): band edges, rounding, errors, CLI, Jakarta data."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from analytics.aqi import (
    AVERAGING_H,
    ISPU_BANDS,
    US_BANDS,
    Standard,
    critical_pollutants,
    ispu_category,
    ispu_sub_index,
    report,
    sub_index,
    us_aqi_category,
    us_aqi_sub_index,
)
from analytics.aqi_cli import aqi

# The table (P.14/2020 Lampiran), upper limits in ug/m3 at ISPU 50/100/200/300/500.
ISPU_TABLE = {
    "pm10": (50, 150, 350, 420, 500),
    "pm25": (15.5, 55.4, 150.4, 250.4, 500),
    "so2": (52, 180, 400, 800, 1200),
    "co": (4000, 8000, 15000, 30000, 45000),
    "o3": (120, 235, 400, 800, 1000),
    "no2": (80, 200, 1130, 2260, 3000),
    "hc": (45, 100, 215, 432, 648),
}
ISPU_POINTS = (50, 100, 200, 300, 500)
ISPU_NAMES = ("Baik", "Sedang", "Tidak Sehat", "Sangat Tidak Sehat", "Berbahaya")
ISPU_EN = ("Good", "Moderate", "Unhealthy", "Very Unhealthy", "Hazardous")
US_TABLE = {  # (low, high) ug/m3 -> AQI (0-50, 51-100, 101-150, 151-200, 201-300, 301-500)
    "pm25": ((0.0, 9.0), (9.1, 35.4), (35.5, 55.4), (55.5, 125.4), (125.5, 225.4), (225.5, 325.4)),
    "pm10": ((0, 54), (55, 154), (155, 254), (255, 354), (355, 424), (425, 604)),
}
US_INDEX = ((0, 50), (51, 100), (101, 150), (151, 200), (201, 300), (301, 500))


@pytest.mark.parametrize(("pollutant", "band"), [(p, i) for p in ISPU_TABLE for i in range(5)])
def test_ispu_band_edges(pollutant: str, band: int) -> None:
    limit = ISPU_TABLE[pollutant][band]
    at = ispu_sub_index(pollutant, limit)
    assert (at.value, at.index) == (ISPU_POINTS[band], ISPU_POINTS[band])
    assert (at.category.name_id, at.category.name_en) == (ISPU_NAMES[band], ISPU_EN[band])
    assert not at.beyond_scale
    above = ispu_sub_index(pollutant, limit + 0.1)
    assert above.index == ISPU_POINTS[band] + 1  # first integer of the next band
    assert above.category.name_id == ISPU_NAMES[min(band + 1, 4)]
    assert above.beyond_scale is (band == 4)


def test_ispu_bands_table_and_zero() -> None:
    assert {p: tuple(b.conc_high_ugm3 for b in bands) for p, bands in ISPU_BANDS.items()} == ISPU_TABLE
    assert [(b.index_low, b.index_high) for b in ISPU_BANDS["so2"]] == [
        (0, 50), (51, 100), (101, 200), (201, 300), (301, 500)]
    assert ISPU_BANDS["pm25"][2].conc_low_ugm3 == 55.4  # lower limit = previous upper limit
    zero = ispu_sub_index("co", 0)
    assert (zero.index, zero.category.key, zero.band.index_low) == (0, "baik", 0)


def test_ispu_interpolation_and_ceiling() -> None:
    # PM2.5 60 ug/m3: 100 + (200 - 100) / (150.4 - 55.4) * (60 - 55.4) = 104.842... -> 105
    s = ispu_sub_index("pm25", 60)
    assert s.value == pytest.approx(104.8421052631579)
    assert (s.index, s.category.name_id) == (105, "Tidak Sehat")
    assert (s.band.index_low, s.band.index_high) == (101, 200)
    # PM10 352.1: 200 + 100 * 2.1 / 70 = 203 exactly, computed as 203.00000000000003; the 1e-6
    # guard keeps float noise from turning it into 204
    s = ispu_sub_index("pm10", 352.1)
    assert s.value == pytest.approx(203.0) and s.value > 203.0 and s.index == 203
    # O3 98.88 ug/m3: 50 * 98.88 / 120 = 41.2 -> 42 (ceiling, where rounding would give 41)
    s = ispu_sub_index("o3", 98.88)
    assert (s.value, s.index) == (pytest.approx(41.2), 42)


def test_ispu_beyond_scale_extrapolates() -> None:
    # PM10 1000 ug/m3: last band line (420, 300) -> (500, 500): 300 + 200 * 580 / 80 = 1750
    s = ispu_sub_index("pm10", 1000)
    assert (s.value, s.index, s.beyond_scale, s.category.name_id) == (1750.0, 1750, True, "Berbahaya")
    assert s.band.index_high == 500
    assert ispu_sub_index("pm10", 500).beyond_scale is False


@pytest.mark.parametrize("pollutant", list(US_TABLE))
def test_us_band_edges(pollutant: str) -> None:
    for i, ((lo, hi), (ilo, ihi)) in enumerate(zip(US_TABLE[pollutant], US_INDEX, strict=True)):
        assert us_aqi_sub_index(pollutant, hi).index == ihi, (pollutant, hi)
        assert us_aqi_sub_index(pollutant, lo).index == ilo, (pollutant, lo)
        if i + 1 < len(US_INDEX):  # just above the upper limit -> next band's first index
            nxt = US_TABLE[pollutant][i + 1][0]
            s = us_aqi_sub_index(pollutant, nxt)
            assert (s.index, s.band.index_low) == (US_INDEX[i + 1][0], US_INDEX[i + 1][0])
    assert [b.category.name_en for b in US_BANDS[pollutant]] == [
        "Good", "Moderate", "Unhealthy for Sensitive Groups", "Unhealthy", "Very Unhealthy", "Hazardous"]


def test_us_truncation_rules() -> None:
    # EPA truncates PM2.5 to 0.1 ug/m3 and PM10 to 1 ug/m3 before looking up the band
    s = us_aqi_sub_index("pm25", 9.09)
    assert (s.used_ugm3, s.index, s.category.name_en) == (9.0, 50, "Good")
    assert us_aqi_sub_index("pm25", 2.3).used_ugm3 == 2.3  # no float floor error (2.29999...)
    s = us_aqi_sub_index("pm10", 54.99)
    assert (s.used_ugm3, s.index) == (54.0, 50)
    # PM2.5 35.9: 101 + (150 - 101) / (55.4 - 35.5) * (35.9 - 35.5) = 101.98 -> 102
    s = us_aqi_sub_index("pm25", 35.96)
    assert s.used_ugm3 == 35.9 and s.value == pytest.approx(101.98492462) and s.index == 102
    # PM10 100: 51 + 49 / 99 * 45 = 73.27 -> 73
    assert us_aqi_sub_index("pm10", 100).index == 73


def test_us_beyond_the_aqi() -> None:
    # PM2.5 400: 301 + 199 / 99.9 * (400 - 225.5) = 648.6 -> 649, Hazardous, flagged
    s = us_aqi_sub_index("pm25", 400)
    assert (s.index, s.beyond_scale, s.category.name_en) == (649, True, "Hazardous")
    assert us_aqi_sub_index("pm25", 325.4).beyond_scale is False
    assert us_aqi_sub_index("pm10", 605).beyond_scale is True


@pytest.mark.parametrize(("index", "ispu", "us"), [
    (0, "Baik", "Good"), (50, "Baik", "Good"), (50.4, "Sedang", "Moderate"), (51, "Sedang", "Moderate"),
    (100, "Sedang", "Moderate"), (101, "Tidak Sehat", "Unhealthy for Sensitive Groups"),
    (150, "Tidak Sehat", "Unhealthy for Sensitive Groups"), (151, "Tidak Sehat", "Unhealthy"),
    (200, "Tidak Sehat", "Unhealthy"), (201, "Sangat Tidak Sehat", "Very Unhealthy"),
    (300, "Sangat Tidak Sehat", "Very Unhealthy"), (301, "Berbahaya", "Hazardous"),
    (1750, "Berbahaya", "Hazardous"),
])
def test_categories(index: float, ispu: str, us: str) -> None:
    assert ispu_category(index).name_id == ispu
    assert us_aqi_category(index).name_en == us


def test_averaging_periods() -> None:
    assert AVERAGING_H[Standard.ISPU] == dict.fromkeys(ISPU_TABLE, 24)
    assert AVERAGING_H[Standard.US] == {"pm25": 24, "pm10": 24}
    assert ispu_sub_index("o3", 10).averaging_h == 24


@pytest.mark.parametrize(("call", "message"), [
    (lambda: ispu_sub_index("pm25", -0.1), "must be >= 0"),
    (lambda: ispu_sub_index("pm25", math.nan), "finite"),
    (lambda: us_aqi_sub_index("pm10", math.inf), "finite"),
    (lambda: ispu_sub_index("pb", 1.0), "unknown pollutant 'pb' for ispu; known: pm10, pm25"),
    (lambda: us_aqi_sub_index("hc", 1.0), "unknown pollutant 'hc' for us; known: pm25, pm10"),
    (lambda: sub_index("eu", "pm25", 1.0), "unknown standard 'eu'; known: ispu, us"),
    (lambda: ispu_sub_index("pm25", True), "must be a number"),
    (lambda: ispu_category(math.nan), "must be a number"),
    (lambda: us_aqi_category(-1), "must be >= 0"),
    (lambda: report("ispu", {}), "no concentrations"),
    (lambda: critical_pollutants({"pm10": math.nan}), "must be >= 0"),
])
def test_bad_input_raises_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_report_critical_and_ties() -> None:
    r = report("ispu", {"co": 100, "o3": 235, "pm10": 150})
    assert (r.index, r.critical, r.category.name_id) == (100, ("pm10", "o3"), "Sedang")
    assert [s.pollutant for s in r.sub_indices] == ["pm10", "co", "o3"]  # table order
    r = report("US", {"pm10": 100, "pm25": 35.96})
    assert (r.standard, r.index, r.critical, r.category.name_en) == (
        Standard.US, 102, ("pm25",), "Unhealthy for Sensitive Groups")
    assert sub_index("ISPU", "PM25", 15.5).index == 50  # names are case-insensitive
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.index = 0  # type: ignore[misc]


# --- lorong aqi -------------------------------------------------------------------------------

def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(aqi)
    return app


def test_cli_prints_index_category_band() -> None:
    result = CliRunner().invoke(_app(), ["--standard", "ispu", "--pollutant", "pm10", "--value", "50.1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "standard   ISPU (Permen LHK P.14/2020), 24 h average",
        "pollutant  pm10 = 50.1 ug/m3",
        "index      51",
        "category   Sedang / Moderate",
        "band       51-100 (50 < c <= 150 ug/m3)",
    ]
    result = CliRunner().invoke(_app(), ["--standard", "us", "--value", "35.96"])
    assert result.exit_code == 0, result.output
    assert "pm25 = 35.96 ug/m3 (truncated to 35.9)" in result.stdout
    assert "index      102" in result.stdout
    assert "category   Tidak Sehat bagi Kelompok Sensitif / Unhealthy for Sensitive Groups" in result.stdout
    assert "band       101-150 (35.5-55.4 ug/m3)" in result.stdout
    result = CliRunner().invoke(_app(), ["--pollutant", "pm10", "--value", "1000"])
    assert "index      1750 (beyond the scale, extrapolated)" in result.stdout
    assert "band       above 500 (> 500 ug/m3)" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--value", "-3"], "error: concentration must be >= 0 ug/m3, got -3.0"),
    (["--value", "nan"], "error: concentration must be finite"),
    (["--pollutant", "pb", "--value", "1"], "error: unknown pollutant 'pb' for ispu"),
    (["--standard", "eu", "--value", "1"], "error: unknown standard 'eu'"),
    (["--standard", "us", "--pollutant", "o3", "--value", "1"], "error: unknown pollutant 'o3' for us"),
])
def test_cli_bad_input_exits_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_cli_missing_value_is_a_usage_error() -> None:
    result = CliRunner().invoke(_app(), ["--pollutant", "pm10"])
    assert result.exit_code == 2
    assert "--value" in result.output


# --- published Jakarta ISPU (tests/data/jakarta-ispu, SOURCES.md section 10) ------------------
# The files hold sub-indices, not concentrations. For every complete row: max(sub-indices) must
# equal the published max, the published critical pollutant must be one holding that max (ties
# allowed), and ispu_category(max) must give the published category. Every row that does not
# is listed below by CSV line number (header = line 1) with its reason; each reason is checked.

ISPU_DIR = Path(__file__).resolve().parents[1] / "data" / "jakarta-ispu"

NO_DATA = "categori TIDAK ADA DATA: sentinel row, no sub-indices, max 0.0 or empty"
KEP45_1997 = ("max 200 published SANGAT TIDAK SEHAT: bands of KEP-45/MENLH/10/1997 (101-199 Tidak Sehat, "
              "200-299 Sangat Tidak Sehat), P.14/2020 puts 200 in Tidak Sehat")
DKI1_DEC_2024 = "DKI1 December 2024: published category one band below the one its own max gives"
PM25_ABSENT = "critical PM25 but this mirror has no PM2.5 column values before 2021 (Sep-Dec 2020 rows)"
CO_IS_O3 = "critical CO while the published max equals the O3 column (Sep-Dec 2020: CO/O3 labels swapped)"
FILLED_IN = ("published max equals the critical pollutant's column but other columns are higher: the "
             "file has no empty cell (gaps of the official series filled in), 2016-2017 only")

DKI_NO_DATA = dict.fromkeys((177, 217, 306, 5022), NO_DATA)
DKI_CATEGORY = {
    **dict.fromkeys((844, 1060, 1591, 1595), KEP45_1997),
    **dict.fromkeys((5450, 5451, 5452, 5453, 5454, 5455, 5456, 5459, 5460, 5461, 5463, 5464, 5465, 5466,
                     5467, 5468, 5469, 5470, 5472, 5477), DKI1_DEC_2024),
}
_PM25_MAX = (3898, 3901, 3905, 3906, 3911, 3915, 3916, 3917, 3928, 3929, 3936, 3937, 3940, 3942, 3945,
             3946, 3947, 3949, 3950, 3955, 3956, 3957, 3989, 3990, 3992, 3994, 3996, 3997, 3998, 3999,
             4001, 4005, 4008, 4010, 4011, 4012, 4013, 4014, 4015, 4016)
DKI_MAX = dict.fromkeys(_PM25_MAX, PM25_ABSENT)
DKI_CRITICAL = {
    **dict.fromkeys((*_PM25_MAX, 3988, 4000, 4009, 4017), PM25_ABSENT),  # +4: max ties an other column
    **dict.fromkeys((3902, 3903, 3904, 3907, 3908, 3912, 3913, 3914, 3918, 3919, 3920, 3923, 3924, 3925,
                     3926, 3959, 3961, 3962, 3963, 3965, 3967, 3968, 3969, 3970, 3972, 3975, 3976, 3977,
                     3982, 3984, 3985, 3986, 3987, 3993), CO_IS_O3),
}
_FILLED = (369, 372, 388, 394, 398, 402, 409, 411, 423, 429, 434, 438, 439, 459, 478, 482, 488, 494, 503,
           511, 654, 714, 761, 778, 781, 787, 794, 797, 870, 905, 906, 914, 919, 924, 929, 936, 944, 1075,
           1094, 1099, 1106, 1142, 1145, 1202, 1212, 1226, 1236, 1253, 1257, 1258, 1333, 1389, 1435, 1536,
           1610, 1705, 1707, 1708, 1709, 1710, 1726, 1782, 1790, 1800, 1814, 1843, 1959, 2012, 2020, 2063,
           2083, 2102, 2107, 2108, 2113, 2162, 2165, 2200, 2232, 2249, 2251, 2272, 2277, 2452, 2459, 2461,
           2469, 2600, 2603, 2609, 2755, 2761, 2771, 2776, 2860, 2868, 2908, 2925, 2947, 2963, 3000, 3040,
           3079, 3097, 3100, 3102, 3107, 3204, 3279, 3303, 3307, 3310, 3386, 3479, 3526, 3552, 3605, 3609,
           3683, 3692, 3701, 3709, 3739, 3766, 3819, 3825, 3909)
OLD_MAX = dict.fromkeys(_FILLED, FILLED_IN)
OLD_CRITICAL = dict.fromkeys(_FILLED, FILLED_IN)

DKI_COLS = {"pm25": "pm25", "pm10": "pm10", "so2": "so2", "co": "co", "o3": "o3", "no2": "no2"}
OLD_COLS = {"pm10": "pm_sepuluh", "so2": "sulfur_dioksida", "co": "karbon_monoksida", "o3": "ozon",
            "no2": "nitrogen_dioksida"}


def _rows(name: str) -> list[tuple[int, dict[str, str]]]:
    with (ISPU_DIR / name).open(newline="", encoding="utf-8") as f:
        return [(i + 2, row) for i, row in enumerate(csv.DictReader(f))]


def _compare(rows, cols: dict[str, str], required, max_col: str, crit_col: str, cat_col: str):
    """Return ({check: {line: row}}, counts) for the three checks over the data rows."""
    bad: dict[str, dict[int, dict[str, str]]] = {"no_data": {}, "category": {}, "max": {}, "critical": {}}
    counts = {"rows": len(rows), "complete": 0, "incomplete": 0, "ties": 0}
    for line, row in rows:
        if row[cat_col] == "TIDAK ADA DATA":
            bad["no_data"][line] = row
            continue
        if ispu_category(float(row[max_col])).name_id.upper() != row[cat_col]:
            bad["category"][line] = row
        present = {p: float(row[c]) for p, c in cols.items() if row[c] != ""}
        if not set(required(row)) <= set(present):
            counts["incomplete"] += 1
            continue
        counts["complete"] += 1
        critical = critical_pollutants(present)
        counts["ties"] += len(critical) > 1
        if max(present.values()) != float(row[max_col]):
            bad["max"][line] = row
        if row[crit_col].lower() not in critical:
            bad["critical"][line] = row
    return bad, counts


def _category_1997(index: float) -> str:
    # KEP-45/MENLH/10/1997 bands: 0-50, 51-100, 101-199, 200-299, >= 300
    return ("BAIK" if index <= 50 else "SEDANG" if index <= 100 else "TIDAK SEHAT" if index < 200
            else "SANGAT TIDAK SEHAT" if index < 300 else "BERBAHAYA")


def test_jakarta_ispu_dki_all_agrees_except_listed_rows() -> None:
    def required(row: dict[str, str]) -> list[str]:
        return list(DKI_COLS) if row["tanggal"] >= "2021-01-01" else [c for c in DKI_COLS if c != "pm25"]

    rows = _rows("ispu_dki_all.csv")
    bad, counts = _compare(rows, DKI_COLS, required, "max", "critical", "categori")
    assert set(bad["no_data"]) == set(DKI_NO_DATA)
    assert set(bad["category"]) == set(DKI_CATEGORY)
    assert set(bad["max"]) == set(DKI_MAX)
    assert set(bad["critical"]) == set(DKI_CRITICAL)
    for row in bad["no_data"].values():
        assert all(row[c] == "" for c in DKI_COLS) and row["max"] in ("0.0", "") and row["critical"] == ""
    order = [n.upper() for n in ISPU_NAMES]
    for line, row in bad["category"].items():
        if DKI_CATEGORY[line] is KEP45_1997:
            assert float(row["max"]) == 200 and _category_1997(200) == row["categori"]
        else:
            ours = ispu_category(float(row["max"])).name_id.upper()
            assert row["stasiun"].startswith("DKI1") and row["tanggal"].startswith("2024-12")
            assert order.index(row["categori"]) == order.index(ours) - 1
    for line, row in bad["critical"].items():
        if DKI_CRITICAL[line] is PM25_ABSENT:
            assert row["critical"] == "PM25" and row["pm25"] == "" and "2020-09" <= row["tanggal"] < "2021"
        else:
            assert row["critical"] == "CO" and float(row["max"]) == float(row["o3"]) != float(row["co"])
    print(f"\nispu_dki_all.csv: {counts['rows']} rows, {len(bad['no_data'])} TIDAK ADA DATA, "
          f"{counts['complete']} complete, {counts['incomplete']} incomplete (skipped), "
          f"{counts['ties']} ties (max held by several pollutants); disagreements: "
          f"category {len(bad['category'])}, max {len(bad['max'])}, critical {len(bad['critical'])}; "
          f"rows without station: {sum(r['stasiun'] == '' for _, r in rows)}")


def test_jakarta_ispu_2015_2019_agrees_except_listed_rows() -> None:
    rows = _rows("ispu_2015-2019.csv")
    bad, counts = _compare(rows, OLD_COLS, lambda row: list(OLD_COLS), "max", "parameter_pencemar_kritis",
                           "kategori")
    assert counts["incomplete"] == 0 and not bad["no_data"]
    assert not bad["category"]
    assert set(bad["max"]) == set(OLD_MAX)
    assert set(bad["critical"]) == set(OLD_CRITICAL)
    for row in bad["max"].values():
        published = int(row["max"])
        assert int(row[OLD_COLS[row["parameter_pencemar_kritis"].lower()]]) == published
        assert any(int(row[c]) > published for c in OLD_COLS.values())
        assert row["tanggal"][:4] in ("2016", "2017")
    dup_ids = len(rows) - len({r["ID"] for _, r in rows})
    print(f"\nispu_2015-2019.csv: {counts['rows']} rows, {counts['complete']} complete, "
          f"{counts['ties']} ties; disagreements: category {len(bad['category'])}, "
          f"max {len(bad['max'])}, critical {len(bad['critical'])}; duplicate IDs: {dup_ids}")
