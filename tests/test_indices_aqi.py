"""US EPA AQI (May 2024 TAD) and China HJ 633-2012 AQI: worked examples and every boundary.

HJ 633-2026 (the China edition in force from 2026-03-01) and the edition switch are in
tests/test_indices_aqi_cn2026.py; here every China call names ``edition="2012"``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urbanbrain.streams.indices import (
    aqi_category_cn,
    aqi_category_us,
    aqi_cn,
    aqi_cn_report,
    aqi_color_cn,
    aqi_color_us,
    aqi_level_cn,
    aqi_us,
    aqi_us_report,
    exceeding_pollutants_cn,
    iaqi_cn,
    iaqi_cn_all,
    mgm3_to_ppm,
    primary_pollutant_us,
    primary_pollutants_cn,
    sub_index_us,
    sub_index_us_o3,
    sub_index_us_so2,
    sub_indices_us,
    truncate_us,
    ugm3_to_ppb,
    ugm3_to_ppm,
)
from urbanbrain.streams.indices.aqi_cn import LIMITS_2012
from urbanbrain.streams.indices.aqi_us import TABLES

# ============================================================================ US EPA ====


def test_tad_worked_example_o3_pm25_co() -> None:
    """TAD (EPA-454/B-24-002, May 2024), section IV "Calculating the AQI", subsection "Using
    the table and the equation and concentration data to calculate the AQI" (the same example
    appears in the September 2018 TAD, section II): an 8-hour ozone value of 0.078 ppm, a
    PM2.5 value of 35.9 µg/m³ and a CO value of 8.4 ppm.

        O3:    (150 - 101) / (0.085 - 0.071) × (0.078 - 0.071) + 101 = 125.5 → 126
        PM2.5: (150 - 101) / (55.4 - 35.5)   × (35.9 - 35.5)   + 101 = 101.98 → 102
        CO:    (100 - 51)  / (9.4 - 4.5)     × (8.4 - 4.5)     + 51  = 90

    The AQI is 126, ozone is the pollutant responsible, category Unhealthy for Sensitive
    Groups. (PM2.5 35.5-55.4 is unchanged by the 2024 revision, so the example still holds.)
    """
    subs = sub_indices_us(o3_8h_ppm=0.078, pm25_24h_ugm3=35.9, co_8h_ppm=8.4)
    assert subs["o3"] == 126  # 125.5 rounds half-up, not to even and not down by float noise
    assert subs["pm25"] == 102
    assert subs["co"] == 90
    aqi = aqi_us(subs)
    assert aqi == 126
    assert primary_pollutant_us(subs) == "o3"
    assert aqi_category_us(aqi) == "Unhealthy for Sensitive Groups"
    assert aqi_color_us(aqi) == "#FF7E00"


def test_tad_example_vectorised_over_stations() -> None:
    """The same example as three stations in one array call, plus a missing station."""
    subs = sub_indices_us(
        o3_8h_ppm=[0.078, 0.030, np.nan],
        pm25_24h_ugm3=[35.9, 60.0, np.nan],
        co_8h_ppm=[8.4, 0.5, np.nan],
    )
    aqi = aqi_us(subs)
    # station 2: PM2.5 60.0 -> 151 + 49/69.9*4.5 = 154.15 -> 154; O3 0.030 -> 27.8 -> 28
    np.testing.assert_array_equal(aqi, [126, 154, np.nan])
    assert primary_pollutant_us(subs).tolist() == ["o3", "pm25", ""]
    assert aqi_category_us(aqi).tolist() == ["Unhealthy for Sensitive Groups", "Unhealthy", ""]


def test_truncation_rules() -> None:
    """TAD step 1: truncate (not round) to the table's decimals before looking up a row."""
    assert truncate_us("pm25_24h", 35.99) == pytest.approx(35.9)
    assert truncate_us("o3_8h", 0.0789) == pytest.approx(0.078)
    assert truncate_us("co_8h", 4.49) == pytest.approx(4.4)
    assert truncate_us("pm10_24h", 54.9) == 54
    assert truncate_us("no2_1h", 53.7) == 53
    assert truncate_us("so2_1h", 35.99) == 35
    # values that close the gaps between rows stay in the lower row
    assert sub_index_us("pm25_24h", 9.05) == 50
    assert sub_index_us("pm10_24h", 54.99) == 50
    assert sub_index_us("co_8h", 4.45) == 50
    assert sub_index_us("o3_8h", 0.0549) == 50
    assert sub_index_us("no2_1h", 100.9) == 100
    # binary noise must not truncate a decimal value down a step: 35.9*10 = 358.99999...
    assert truncate_us("pm25_24h", 35.9) == pytest.approx(35.9)
    assert truncate_us("pm25_24h", 0.1 + 0.2) == pytest.approx(0.3)


# Each row (C_lo, C_hi, I_lo, I_hi), typed again from TAD May 2024 Table 6 independently of
# the module's table, so a typo in either shows up.
US_ROWS: dict[str, list[tuple[float, float, int, int]]] = {
    "pm25_24h": [(0.0, 9.0, 0, 50), (9.1, 35.4, 51, 100), (35.5, 55.4, 101, 150),
                 (55.5, 125.4, 151, 200), (125.5, 225.4, 201, 300), (225.5, 325.4, 301, 500)],
    "pm10_24h": [(0, 54, 0, 50), (55, 154, 51, 100), (155, 254, 101, 150),
                 (255, 354, 151, 200), (355, 424, 201, 300), (425, 604, 301, 500)],
    "o3_8h": [(0.000, 0.054, 0, 50), (0.055, 0.070, 51, 100), (0.071, 0.085, 101, 150),
              (0.086, 0.105, 151, 200), (0.106, 0.200, 201, 300)],
    "o3_1h": [(0.125, 0.164, 101, 150), (0.165, 0.204, 151, 200), (0.205, 0.404, 201, 300),
              (0.405, 0.604, 301, 500)],
    "co_8h": [(0.0, 4.4, 0, 50), (4.5, 9.4, 51, 100), (9.5, 12.4, 101, 150),
              (12.5, 15.4, 151, 200), (15.5, 30.4, 201, 300), (30.5, 50.4, 301, 500)],
    "so2_1h": [(0, 35, 0, 50), (36, 75, 51, 100), (76, 185, 101, 150), (186, 304, 151, 200)],
    "so2_24h": [(305, 604, 201, 300), (605, 1004, 301, 500)],
    "no2_1h": [(0, 53, 0, 50), (54, 100, 51, 100), (101, 360, 101, 150), (361, 649, 151, 200),
               (650, 1249, 201, 300), (1250, 2049, 301, 500)],
}


def test_module_tables_match_the_tad() -> None:
    assert {k: [tuple(r) for r in t.rows] for k, t in TABLES.items()} == {
        k: [tuple(r) for r in rows] for k, rows in US_ROWS.items()
    }


@pytest.mark.parametrize("key", sorted(US_ROWS))
def test_every_us_breakpoint_row_boundary(key: str) -> None:
    """Both ends of every row give exactly that row's index values, and the row's midpoint
    gives the equation's value (rounded half-up)."""
    rows = US_ROWS[key]
    step = 10.0 ** -TABLES[key].decimals
    for c_lo, c_hi, i_lo, i_hi in rows:
        assert sub_index_us(key, c_lo) == i_lo, (key, c_lo)
        assert sub_index_us(key, c_hi) == i_hi, (key, c_hi)
        # one truncation step below the upper end stays in the row, below I_hi
        assert sub_index_us(key, c_hi - step) <= i_hi
        mid = round((c_lo + c_hi) / 2 / step) * step
        expected = np.floor((i_hi - i_lo) / (c_hi - c_lo) * (mid - c_lo) + i_lo + 0.5 + 1e-9)
        assert sub_index_us(key, mid) == expected, (key, mid)
    # just above the top of the table: undefined by default
    top = rows[-1][1] + step
    assert np.isnan(sub_index_us(key, top))


@pytest.mark.parametrize(
    ("key", "below"),
    [("o3_1h", 0.124), ("so2_24h", 304)],
)
def test_blank_cells_are_nan(key: str, below: float) -> None:
    """1-hour O3 defines no index below 0.125 ppm; 24-hour SO2 none below 305 ppb."""
    assert np.isnan(sub_index_us(key, below))


def test_missing_and_negative_are_nan() -> None:
    out = sub_index_us("pm25_24h", [np.nan, -0.5, np.inf])
    assert np.isnan(out).all()


def test_beyond_the_aqi_extends_the_hazardous_line() -> None:
    """TAD FAQ: above 500, the Hazardous row's linear relationship continues.
    PM2.5 425.4: 301 + 199/99.9 × (425.4 - 225.5) = 699.2 → 699."""
    assert np.isnan(sub_index_us("pm25_24h", 425.4))
    assert sub_index_us("pm25_24h", 425.4, beyond_aqi=True) == 699
    assert aqi_category_us(699) == "Hazardous"
    # tables without a Hazardous row never extend (8-hour O3 above 0.200 ppm)
    assert np.isnan(sub_index_us("o3_8h", 0.25, beyond_aqi=True))


def test_ozone_8h_and_1h() -> None:
    """TAD Table 6 notes: 8-hour O3 above 0.200 ppm uses the 1-hour value; the larger of the
    two is reported. 1-hour 0.162 ppm: 101 + 49/0.039 × 0.037 = 147.49 → 147."""
    assert sub_index_us_o3(0.078, None) == 126
    assert sub_index_us_o3(0.078, 0.162) == 147  # 1-hour more precautionary
    assert sub_index_us_o3(0.078, 0.100) == 126  # 1-hour blank below 0.125 ppm
    # 8h 0.25 ppm is off the 8h table; 1h 0.35: 201 + 99/0.199 × 0.145 = 273.1 → 273
    assert sub_index_us_o3(0.25, 0.35) == 273
    assert np.isnan(sub_index_us_o3(0.25, None))


def test_so2_1h_and_24h_rule() -> None:
    """TAD "Calculating AQI values for SO2": 1-hour values define AQI up to 200; from 305 ppb
    the 24-hour value decides (24-hour rows if >= 305 ppb, else AQI 200).
    24 h 400 ppb: 201 + 99/299 × 95 = 232.45 → 232."""
    out = sub_index_us_so2([50, 304, 400, 400, 400, np.nan, np.nan],
                           [np.nan, np.nan, 400, 100, np.nan, 700, 100])
    # 50 ppb: 51 + 49/39 × 14 = 68.6 → 69; 304 → 200; 24 h 700: 301 + 199/399 × 95 = 348.4
    np.testing.assert_array_equal(out, [69, 200, 232, 200, 200, 348, np.nan])


def test_so2_24h_above_the_table_is_beyond_the_aqi_not_200() -> None:
    """Issue 19: 1 h 1088.7 ppb with 24 h 1048.5 ppb gave 200, as if the 24-hour value were
    missing. From 305 ppb (1 h) the 24-hour value decides, and 1048 ppb (truncated) is above
    the last row (605-1004 → 301-500): Beyond the AQI, so NaN like every other pollutant
    above its table, or with beyond_aqi the Hazardous line extended:
    301 + 199/399 × (1048 - 605) = 521.94 → 522. Only a missing (or invalid negative) 24-hour
    value keeps the rule's lower bound 200; 1004 itself is still on the table (500)."""
    assert np.isnan(sub_index_us_so2(1088.7, 1048.5))
    assert sub_index_us_so2(1088.7, 1048.5, beyond_aqi=True) == 522
    out = sub_index_us_so2([1088.7, 1088.7, 1088.7, 1088.7, 305, np.nan],
                           [1048.5, 1004.9, np.nan, -3, 1005, 1048.5], beyond_aqi=False)
    np.testing.assert_array_equal(out, [np.nan, 500, 200, 200, np.nan, np.nan])
    # the overall report follows: no AQI from SO2 alone, Hazardous with beyond_aqi
    r = aqi_us_report(so2_1h_ugm3=1088.7 * 64.066 / 24.45, so2_24h_ugm3=1048.5 * 64.066 / 24.45)
    assert np.isnan(r.aqi) and r.category == "" and r.primary == ""
    r = aqi_us_report(so2_1h_ugm3=1088.7 * 64.066 / 24.45, so2_24h_ugm3=1048.5 * 64.066 / 24.45,
                      beyond_aqi=True)
    assert (r.aqi, r.category, r.primary) == (522, "Hazardous", "so2")


def test_conversions_at_25c_1atm() -> None:
    """ppb = µg/m³ × 24.45 / MW; 1 ppb ≈ 1.88 µg/m³ NO2, 1.96 O3, 2.62 SO2; 1 ppm CO ≈ 1.15 mg/m³."""
    assert ugm3_to_ppb(46.0055, "no2") == pytest.approx(24.45)
    assert ugm3_to_ppb(1.8816, "no2") == pytest.approx(1.0, rel=1e-3)
    assert ugm3_to_ppb(1.9631, "o3") == pytest.approx(1.0, rel=1e-3)
    assert ugm3_to_ppb(2.6203, "so2") == pytest.approx(1.0, rel=1e-3)
    assert mgm3_to_ppm(1.1456, "co") == pytest.approx(1.0, rel=1e-3)
    assert ugm3_to_ppm(1963.1, "o3") == pytest.approx(1.0, rel=1e-3)


def test_report_from_canonical_mass_units_reproduces_the_tad_example() -> None:
    """The TAD example fed as mass concentrations: 0.078 ppm O3 = 78 × 47.9982/24.45 µg/m³,
    8.4 ppm CO = 8.4 × 28.010/24.45 mg/m³. The round trip must not truncate 0.078 to 0.077."""
    o3 = 78 * 47.9982 / 24.45
    co = 8.4 * 28.010 / 24.45
    r = aqi_us_report(o3_8h_ugm3=[o3], pm25_24h_ugm3=[35.9], co_8h_mgm3=[co])
    assert r.sub_indices["o3"].tolist() == [126]
    assert r.sub_indices["co"].tolist() == [90]
    assert r.aqi.tolist() == [126]
    assert r.primary.tolist() == ["o3"]
    assert r.category.tolist() == ["Unhealthy for Sensitive Groups"]
    assert r.color.tolist() == ["#FF7E00"]


def test_report_no2_so2_from_mass() -> None:
    """NO2 200 µg/m³ = 106.3 ppb → 106: 101 + 49/259 × 5 = 101.9 → 102.
    SO2 100 µg/m³ = 38.16 ppb → 38: 51 + 49/39 × 2 = 53.51 → 54."""
    r = aqi_us_report(no2_1h_ugm3=200.0, so2_1h_ugm3=100.0)
    assert r.sub_indices["no2"] == 102
    assert r.sub_indices["so2"] == 54
    assert r.aqi == 102 and r.primary == "no2"


def test_us_categories_and_colours_at_every_edge() -> None:
    aqi = [0, 50, 51, 100, 101, 150, 151, 200, 201, 300, 301, 500, 650, np.nan]
    assert aqi_category_us(aqi).tolist() == [
        "Good", "Good", "Moderate", "Moderate",
        "Unhealthy for Sensitive Groups", "Unhealthy for Sensitive Groups",
        "Unhealthy", "Unhealthy", "Very Unhealthy", "Very Unhealthy",
        "Hazardous", "Hazardous", "Hazardous", "",
    ]
    assert aqi_color_us([25, 75, 125, 175, 250, 400]).tolist() == [
        "#00E400", "#FFFF00", "#FF7E00", "#FF0000", "#8F3F97", "#7E0023",
    ]


def test_primary_pollutant_ties_and_absence() -> None:
    subs = {"pm25": np.array([50.0, 80.0, np.nan]), "o3": np.array([50.0, 20.0, np.nan])}
    assert primary_pollutant_us(subs).tolist() == ["pm25;o3", "pm25", ""]
    np.testing.assert_array_equal(aqi_us(subs), [50, 80, np.nan])


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(US_ROWS)), st.floats(0, 1, allow_nan=False),
       st.floats(0, 1, allow_nan=False))
def test_us_sub_index_is_monotone(key: str, a: float, b: float) -> None:
    """Inside the table, more pollution never gives a lower index."""
    lo, hi = US_ROWS[key][0][0], US_ROWS[key][-1][1]
    x, y = sorted((lo + a * (hi - lo), lo + b * (hi - lo)))
    ix, iy = sub_index_us(key, x), sub_index_us(key, y)
    assert np.isfinite(ix) and np.isfinite(iy)
    assert ix <= iy


# ======================================================================= China HJ 633 ====


def test_hj633_worked_example_daily_report() -> None:
    """A daily report computed by hand from HJ 633-2012 formula (1) and Table 1, with IAQI
    rounded up (进位取整数):

        PM2.5 24h  80 µg/m³: row 75-115 → 100-150: 100 + 50 × (80 - 75) / 40     = 106.25 → 107
        PM10  24h 120 µg/m³: row 50-150 →  50-100:  50 + 50 × (120 - 50) / 100   =  85    →  85
        SO2   24h  30 µg/m³: row  0-50  →   0-50:        50 × 30 / 50            =  30    →  30
        NO2   24h  60 µg/m³: row 40-80  →  50-100:  50 + 50 × (60 - 40) / 40     =  75    →  75
        CO    24h 1.5 mg/m³: row  0-2   →   0-50:        50 × 1.5 / 2            =  37.5  →  38
        O3 8h max 170 µg/m³: row 160-215 → 100-150: 100 + 50 × (170 - 160) / 55  = 109.09 → 110
        O3 1h max 210 µg/m³: row 200-300 → 100-150: 100 + 50 × (210 - 200) / 100 = 105   → 105

    AQI = max = 110 → level 3 (三级) 轻度污染 / Lightly Polluted, orange. Primary pollutant
    (AQI > 50): o3_8h. Exceeding (IAQI > 100): pm25_24h, o3_8h, o3_1h.
    """
    concs = {"pm25_24h": 80, "pm10_24h": 120, "so2_24h": 30, "no2_24h": 60, "co_24h": 1.5,
             "o3_8h": 170, "o3_1h": 210}
    iaqis = iaqi_cn_all(concs, edition="2012")
    assert {k: float(v) for k, v in iaqis.items()} == {
        "pm25_24h": 107, "pm10_24h": 85, "so2_24h": 30, "no2_24h": 75, "co_24h": 38,
        "o3_8h": 110, "o3_1h": 105,
    }
    assert aqi_cn(iaqis) == 110
    assert primary_pollutants_cn(iaqis) == "o3_8h"
    assert exceeding_pollutants_cn(iaqis) == "pm25_24h;o3_8h;o3_1h"
    r = aqi_cn_report(concs, edition="2012", lang="zh")
    assert (r.aqi, r.category, r.color, r.primary) == (110, "轻度污染", "#FF7E00", "o3_8h")
    assert aqi_level_cn(110) == 3
    assert aqi_category_cn(110, "en") == "Lightly Polluted"


def test_hj633_no_primary_pollutant_at_or_below_50() -> None:
    """PM2.5 20: 50 × 20/35 = 28.57 → 29; PM10 40 → 40. AQI 40 ≤ 50: 优, no primary pollutant.
    Second station: PM2.5 75 → 100 and PM10 150 → 100 tie: both are primary; AQI 100 良.
    Third: PM2.5 35 → exactly 50, AQI 50 still has no primary pollutant."""
    r = aqi_cn_report({"pm25_24h": [20, 75, 35], "pm10_24h": [40, 150, 10]}, edition="2012",
                      lang="zh")
    assert r.aqi.tolist() == [40, 100, 50]
    assert r.primary.tolist() == ["", "pm25_24h;pm10_24h", ""]
    assert r.category.tolist() == ["优", "良", "优"]
    assert exceeding_pollutants_cn(r.sub_indices).tolist() == ["", "", ""]


def test_hj633_so2_1h_above_800_uses_24h() -> None:
    """Table 1 note (2): SO2 1-hour above 800 µg/m³ has no 1-hour IAQI; the 24-hour IAQI is
    reported. 24h 700: row 475-800 → 150-200: 150 + 50 × 225/325 = 184.6 → 185.
    1h 800 itself is still on the table: IAQI 200. 1h 400: 50 + 50 × 250/350 = 85.7 → 86."""
    iaqis = iaqi_cn_all({"so2_1h": [900, 900, 800, 400], "so2_24h": [700, np.nan, 10, 10]},
                        edition="2012")
    np.testing.assert_array_equal(iaqis["so2_1h"], [185, np.nan, 200, 86])
    # without any 24-hour value the 1-hour IAQI above 800 is simply not defined
    assert np.isnan(iaqi_cn_all({"so2_1h": 801}, edition="2012")["so2_1h"])


def test_hj633_o3_8h_above_800_uses_1h() -> None:
    """Table 1 note (3): O3 8-hour above 800 µg/m³ reports the 1-hour IAQI instead.
    1h 900: row 800-1000 → 300-400: 300 + 100 × 100/200 = 350. 8h 800 itself: IAQI 300."""
    iaqis = iaqi_cn_all({"o3_8h": [900, 800], "o3_1h": [900, 900]}, edition="2012")
    np.testing.assert_array_equal(iaqis["o3_8h"], [350, 300])
    assert aqi_cn(iaqis).tolist() == [350, 350]
    assert aqi_category_cn(350, "en") == "Severely Polluted"


def test_hj633_hourly_report_uses_1h_columns() -> None:
    """Hourly report: NO2 1h 250: row 200-700 → 100-150: 100 + 50 × 50/500 = 105;
    CO 1h 12 mg/m³: row 10-35 → 100-150: 100 + 50 × 2/25 = 104; PM2.5 (24h moving) 40:
    50 + 50 × 5/40 = 56.25 → 57. AQI 105, primary no2_1h."""
    r = aqi_cn_report({"no2_1h": 250, "co_1h": 12, "pm25_24h": 40}, edition="2012")
    assert {k: float(v) for k, v in r.sub_indices.items()} == {
        "no2_1h": 105, "co_1h": 104, "pm25_24h": 57}
    assert r.aqi == 105 and r.primary == "no2_1h" and r.category == "Lightly Polluted"


# Table 1 of HJ 633-2012 typed again, independently of the module.
CN_TABLE: dict[str, list[float]] = {
    "so2_24h": [0, 50, 150, 475, 800, 1600, 2100, 2620],
    "so2_1h": [0, 150, 500, 650, 800],
    "no2_24h": [0, 40, 80, 180, 280, 565, 750, 940],
    "no2_1h": [0, 100, 200, 700, 1200, 2340, 3090, 3840],
    "pm10_24h": [0, 50, 150, 250, 350, 420, 500, 600],
    "co_24h": [0, 2, 4, 14, 24, 36, 48, 60],
    "co_1h": [0, 5, 10, 35, 60, 90, 120, 150],
    "o3_1h": [0, 160, 200, 300, 400, 800, 1000, 1200],
    "o3_8h": [0, 100, 160, 215, 265, 800],
    "pm25_24h": [0, 35, 75, 115, 150, 250, 350, 500],
}
CN_IAQI = [0, 50, 100, 150, 200, 300, 400, 500]


def test_module_limits_match_hj633_table1() -> None:
    assert {k: list(v) for k, v in LIMITS_2012.items()} == CN_TABLE


@pytest.mark.parametrize("key", sorted(CN_TABLE))
def test_every_hj633_boundary_row(key: str) -> None:
    """Each limit gives exactly its IAQI; just above it the next row begins (rounded up, so
    IAQI + 1); above the last limit the IAQI is undefined (NaN), or 500 when saturating."""
    limits = CN_TABLE[key]
    got = iaqi_cn(key, limits, edition="2012")
    np.testing.assert_array_equal(got, CN_IAQI[: len(limits)])
    for bp, iaqi in zip(limits[:-1], CN_IAQI):
        assert iaqi_cn(key, bp + 1e-6, edition="2012") == iaqi + 1  # ceil: any excess rounds up
    assert np.isnan(iaqi_cn(key, limits[-1] * 1.01, edition="2012"))
    assert np.isnan(iaqi_cn(key, -1, edition="2012"))
    if CN_IAQI[len(limits) - 1] == 500:
        assert iaqi_cn(key, limits[-1] * 1.5, edition="2012", saturate=True) == 500


def test_hj633_levels_and_colours() -> None:
    aqi = [0, 50, 51, 100, 101, 150, 151, 200, 201, 300, 301, 500, np.nan]
    assert aqi_level_cn(aqi)[:-1].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert np.isnan(aqi_level_cn(aqi)[-1])
    assert aqi_category_cn([25, 75, 125, 175, 250, 400], "zh").tolist() == [
        "优", "良", "轻度污染", "中度污染", "重度污染", "严重污染"]
    assert aqi_category_cn([25, 75, 125, 175, 250, 400], "en").tolist() == [
        "Excellent", "Good", "Lightly Polluted", "Moderately Polluted", "Heavily Polluted",
        "Severely Polluted"]
    assert aqi_color_cn([25, 75, 125, 175, 250, 400, np.nan]).tolist() == [
        "#00E400", "#FFFF00", "#FF7E00", "#FF0000", "#99004C", "#7E0023", ""]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(CN_TABLE)), st.floats(0, 1, allow_nan=False),
       st.floats(0, 1, allow_nan=False))
def test_hj633_iaqi_is_monotone_and_within_row(key: str, a: float, b: float) -> None:
    top = CN_TABLE[key][-1]
    x, y = sorted((a * top, b * top))
    ix, iy = iaqi_cn(key, x, edition="2012"), iaqi_cn(key, y, edition="2012")
    assert ix <= iy
    # ceil never lifts the value by a whole unit or more above the exact interpolation
    exact = np.interp(x, CN_TABLE[key], CN_IAQI[: len(CN_TABLE[key])])
    assert exact - 1e-6 <= ix < exact + 1
