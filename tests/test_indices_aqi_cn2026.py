"""China AQI after HJ 633-2026 (in force from 2026-03-01), against the official text, and
how it differs from HJ 633-2012; the edition switch by event time and by setting, in the
index functions and where the streams build their ``aqi`` points.

The tables below are typed again from the text (Table 3 and notes a-c, Table 1, Table 2 of
HJ 633-2026, MEE, approved 2026-02-14), independently of the module; the expected IAQIs come
from an exact re-implementation here (Fraction arithmetic, Decimal GB/T 8170 rounding).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urbanbrain.streams.aggregates import Stats
from urbanbrain.streams.derive import IndexCalculator
from urbanbrain.streams.indices import (
    advice_cn,
    aqi_cn,
    aqi_cn_report,
    cn_edition,
    cn_edition_for,
    health_effect_cn,
    iaqi_cn,
    iaqi_cn_all,
    over_100_cn,
    primary_pollutants_cn,
    realtime_columns,
    round_gbt8170,
    sensitive_groups_cn,
)
from urbanbrain.streams.indices.aqi_cn import (
    EFFECTIVE_2026_MS,
    LIMITS,
    LIMITS_2012,
    LIMITS_2026,
)
from urbanbrain.streams.processor import WindowStage
from urbanbrain.streams.settings import StreamsSettings
from urbanbrain.streams.state import DictStore

IAQI = [0, 50, 100, 150, 200, 300, 400, 500]

# HJ 633-2026 Table 3, column by column (µg/m³; CO mg/m³). "b"/"c" cells are the notes.
T3: dict[str, list[float]] = {
    "so2_24h": [0, 50, 150, 475, 800, 1600, 2100, 2620],
    "so2_1h": [0, 150, 500, 650, 800],  # note b: above 800 the IAQI counts 200
    "no2_24h": [0, 40, 80, 180, 280, 565, 750, 940],
    "no2_1h": [0, 100, 200, 700, 1200, 2340, 3090, 3840],
    "co_24h": [0, 2, 4, 14, 24, 36, 48, 60],
    "co_1h": [0, 5, 10, 35, 60, 90, 120, 150],
    "o3_8h": [0, 100, 160, 215, 265, 800],  # note c: above 800 the IAQI counts 300
    "o3_1h": [0, 160, 200, 300, 400, 800, 1000, 1200],
    "pm10_24h": [0, 50, 120, 250, 350, 420, 500, 600],
    "pm25_24h": [0, 35, 60, 115, 150, 250, 350, 500],
}
ABOVE_2026 = {"so2_1h": 200, "o3_8h": 300}

T1_EFFECT = [
    "空气质量令人满意，基本无空气污染",
    "空气质量可接受，但某些污染物可能对极少数异常敏感人群健康有较弱影响",
    "敏感人群症状有轻度加剧，健康人群出现刺激症状",
    "进一步加剧敏感人群症状，可能对健康人群心血管系统、呼吸系统有影响",
    "心血管系统和呼吸系统患者症状显著加剧，运动耐受力降低，健康人群普遍出现症状",
    "健康人群运动耐受力降低，有明显强烈症状，提前出现某些疾病",
]
T1_ADVICE = [
    "各类人群可正常活动",
    "极少数异常敏感人群应减少户外活动",
    "青少年儿童、老年人及心血管系统疾病、呼吸系统疾病患者应减少长时间、高强度的户外锻炼",
    "青少年儿童、老年人及心血管系统疾病、呼吸系统疾病患者避免长时间、高强度的户外锻炼，一般人群适量减少户外运动",
    "青少年儿童、老年人和心血管系统疾病、呼吸系统疾病患者应停留在室内，停止户外运动，一般人群减少户外运动",
    "青少年儿童、老年人和病人应当留在室内，避免体力消耗，一般人群应避免户外活动",
]
T2 = {
    "so2": "患有哮喘的人、青少年儿童以及老年人",
    "no2": "患有呼吸系统疾病（如哮喘）的人、青少年儿童以及老年人",
    "co": "患有心血管系统疾病的人",
    "o3": "患有呼吸系统疾病（如哮喘）的人、青少年儿童、户外活动频繁的人以及老年人",
    "pm": "患有心血管系统疾病或呼吸系统疾病（如哮喘）的人、青少年儿童、户外活动频繁的人以及老年人",
}


def ref_iaqi_2026(key: str, c: float) -> float:
    """Exact HJ 633-2026 IAQI: GB/T 8170 rounding of the decimal value (µg/m³ to 1, CO to
    0.1), formula (1) in fractions, rounded up (4.2.6); notes b and c; NaN off the table."""
    q = Decimal("0.1") if key.startswith("co_") else Decimal("1")
    cr = Fraction(Decimal(repr(float(c))).quantize(q, rounding=ROUND_HALF_EVEN))
    bp = T3[key]
    if cr < 0:
        return math.nan
    if cr > bp[-1]:
        return float(ABOVE_2026[key]) if key in ABOVE_2026 else math.nan
    for i in range(1, len(bp)):
        lo, hi = Fraction(str(bp[i - 1])), Fraction(str(bp[i]))
        if cr <= hi:
            return float(math.ceil(IAQI[i - 1] + (IAQI[i] - IAQI[i - 1]) * (cr - lo) / (hi - lo)))
    raise AssertionError("unreachable")


# ======================================================================== the tables ====


def test_module_table_is_hj633_2026_table3() -> None:
    assert {k: list(v) for k, v in LIMITS_2026.items()} == T3
    assert LIMITS is LIMITS_2026  # the edition in force is the default
    assert cn_edition("2026").name == "HJ 633-2026" and cn_edition("hj633-2012").key == "2012"
    with pytest.raises(KeyError):
        cn_edition("2013")


def test_the_editions_tables_differ_only_in_the_pm_columns() -> None:
    """Table 3 (2026) vs Table 1 (2012): PM2.5 IAQI 100 at 60 (was 75), PM10 at 120 (was 150);
    every other cell is the same number."""
    diff = {(k, i): (LIMITS_2012[k][i], LIMITS_2026[k][i])
            for k in LIMITS_2026 for i in range(len(LIMITS_2026[k]))
            if LIMITS_2012[k][i] != LIMITS_2026[k][i]}
    assert diff == {("pm25_24h", 2): (75, 60), ("pm10_24h", 2): (150, 120)}
    assert set(LIMITS_2012) == set(LIMITS_2026)


@pytest.mark.parametrize("key", sorted(T3))
def test_every_hj633_2026_breakpoint_edge(key: str) -> None:
    """Each limit gives exactly its IAQI. Rounding first (GB/T 8170) means a limit + 0.4
    (CO + 0.04) is still the limit, and limit + 0.5 is a half: to the even neighbour. The
    next concentration step is in the next row (IAQI above the limit's). Negative is NaN;
    above the last limit NaN, 200 for SO2 1 h, 300 for O3 8 h (notes b, c)."""
    bp = T3[key]
    np.testing.assert_array_equal(iaqi_cn(key, bp, edition="2026"), IAQI[: len(bp)])
    step = 0.1 if key.startswith("co_") else 1.0
    for i, b in enumerate(bp[:-1]):
        assert iaqi_cn(key, b + 0.4 * step, edition="2026") == IAQI[i]
        nxt = iaqi_cn(key, b + step, edition="2026")
        assert nxt > IAQI[i] and nxt == ref_iaqi_2026(key, b + step)
        half = iaqi_cn(key, b + 0.5 * step, edition="2026")
        assert half == ref_iaqi_2026(key, b + 0.5 * step)
    assert np.isnan(iaqi_cn(key, -step, edition="2026"))
    top = bp[-1]
    above = iaqi_cn(key, [top + step, top * 3], edition="2026")
    if key in ABOVE_2026:
        np.testing.assert_array_equal(above, [ABOVE_2026[key]] * 2)
        # a saturating display changes nothing where the standard defines the value
        assert iaqi_cn(key, top * 3, edition="2026", saturate=True) == ABOVE_2026[key]
    else:
        assert np.isnan(above).all()
        assert iaqi_cn(key, top * 3, edition="2026", saturate=True) == 500


@pytest.mark.parametrize("key", sorted(T3))
def test_whole_table_against_the_exact_reimplementation(key: str) -> None:
    """Every concentration step from 0 to past the top (1 µg/m³; 0.1 mg/m³ for CO), in one
    vectorised call, equals the exact re-implementation."""
    step = 0.1 if key.startswith("co_") else 1.0
    grid = np.round(np.arange(0, T3[key][-1] * 1.1 + step, step), 1)
    got = iaqi_cn(key, grid, edition="2026")
    want = np.array([ref_iaqi_2026(key, c) for c in grid])
    np.testing.assert_array_equal(got, want)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(T3)), st.floats(0, 1.05, allow_nan=False))
def test_any_concentration_matches_the_exact_reimplementation(key: str, a: float) -> None:
    c = round(a * T3[key][-1], 3)
    got = iaqi_cn(key, c, edition="2026")
    want = ref_iaqi_2026(key, c)
    assert (np.isnan(got) and math.isnan(want)) or got == want, (key, c)


def test_gbt8170_rounding() -> None:
    """GB/T 8170: nearest; an exact half goes to the even digit, judged on the decimal value
    (2.675 is a half although binary 2.675 is 2.67499…)."""
    got = round_gbt8170([35.5, 36.5, 60.5, 61.5, 35.49, 2.675, 0.15, 0.25, 0.35, np.nan],
                        [0, 0, 0, 0, 0, 2, 1, 1, 1, 0])
    np.testing.assert_allclose(got[:-1], [36, 36, 60, 62, 35, 2.68, 0.2, 0.2, 0.4])
    assert np.isnan(got[-1])
    # so PM2.5 35.4 is still 优 (50) and 35.5 is 36: 50 + 50 × 1/25 = 52
    np.testing.assert_array_equal(iaqi_cn("pm25_24h", [35.4, 35.5], edition="2026"), [50, 52])
    # and 2012, which has no rounding rule, takes the value as given: 35.5 → 50.625 → 51
    assert iaqi_cn("pm25_24h", 35.5, edition="2012") == 51


# ================================================= the editions differ where the texts do ====


T1_2012_PM = {"pm25_24h": [0, 35, 75, 115, 150, 250, 350, 500],
              "pm10_24h": [0, 50, 150, 250, 350, 420, 500, 600]}


def exact_iaqi(limits: list[float], c: float) -> Fraction:
    """Formula (1) without the final rounding up, in fractions."""
    cf = Fraction(str(c))
    for i in range(1, len(limits)):
        lo, hi = Fraction(str(limits[i - 1])), Fraction(str(limits[i]))
        if cf <= hi:
            return IAQI[i - 1] + (IAQI[i] - IAQI[i - 1]) * (cf - lo) / (hi - lo)
    raise ValueError(c)


@pytest.mark.parametrize("key", sorted(T3))
def test_editions_agree_except_where_the_tables_or_rules_differ(key: str) -> None:
    """On concentrations the rounding leaves alone (whole µg/m³, CO in 0.1 mg/m³) the two
    editions give the same IAQI for every column, except only inside
      PM2.5 24 h 35 < C < 115 and PM10 24 h 50 < C < 250 (the moved IAQI-100 limit),
      SO2 1 h > 800 and O3 8 h > 800 (2026 notes b, c; 2012 has no IAQI of its own there).
    Inside the PM ranges formula (1) differs at every concentration (2026 higher), and the
    reported IAQI is never lower in 2026; only rounding up can make the two equal there
    (PM10 51: 50.5 and 50.7 both give 51)."""
    step = 0.1 if key.startswith("co_") else 1.0
    grid = np.round(np.arange(0, T3[key][-1] * 1.2 + step, step), 1)
    a12 = iaqi_cn(key, grid, edition="2012")
    a26 = iaqi_cn(key, grid, edition="2026")
    same = (a12 == a26) | (np.isnan(a12) & np.isnan(a26))
    zone = {
        "pm25_24h": (grid > 35) & (grid < 115),
        "pm10_24h": (grid > 50) & (grid < 250),
        "so2_1h": grid > 800,
        "o3_8h": grid > 800,
    }.get(key, np.zeros_like(grid, dtype=bool))
    assert same[~zone].all()
    if key in ("so2_1h", "o3_8h"):
        assert not same[zone].any()
    elif key in T1_2012_PM:
        assert (a26[zone] >= a12[zone]).all() and (a26[zone] > a12[zone]).mean() > 0.95
        for c in grid[zone]:
            assert exact_iaqi(T3[key], c) > exact_iaqi(T1_2012_PM[key], c), c


def test_so2_1h_and_o3_8h_above_800_by_edition() -> None:
    """2012 Table 1 notes 2, 3: report the SO2 24 h / O3 1 h IAQI instead. 2026 Table 3
    notes b, c: the IAQI counts 200 / 300, whatever the other averaging period says."""
    concs = {"so2_1h": [900, 2000], "so2_24h": [700, 10], "o3_8h": [900, 801],
             "o3_1h": [900, 100]}
    old = iaqi_cn_all(concs, edition="2012")
    new = iaqi_cn_all(concs, edition="2026")
    # 2012: SO2 24h 700 → 150 + 50 × 225/325 = 184.6 → 185; 24h 10 → 10
    np.testing.assert_array_equal(old["so2_1h"], [185, 10])
    np.testing.assert_array_equal(new["so2_1h"], [200, 200])
    # 2012: O3 1h 900 → 300 + 100 × 100/200 = 350; 1h 100 → 50 × 100/160 = 31.25 → 32
    np.testing.assert_array_equal(old["o3_8h"], [350, 32])
    np.testing.assert_array_equal(new["o3_8h"], [300, 300])
    # without the other period 2012 has nothing, 2026 still its fixed IAQI
    assert np.isnan(iaqi_cn_all({"so2_1h": 801}, edition="2012")["so2_1h"])
    assert iaqi_cn_all({"so2_1h": 801}, edition="2026")["so2_1h"] == 200


# ======================================================================= worked examples ====


def test_published_daily_report_cnemc_taiyuan_2026_09_02() -> None:
    """A daily report published by the China National Environmental Monitoring Centre
    (air.cnemc.cn, GetCityDayAqiHistoryByCondition; Taiyuan, TimePoint 1788278400000 =
    2026-09-02 00:00 UTC+8, quoted in a public client's docstring, see indices/README.md):
    PM2.5 24, PM10 47, SO2 12, NO2 18 µg/m³, CO 0.7 mg/m³, O3 daily max 8 h 178 µg/m³ →
    AQI 117, primary O3_8h, 轻度污染, with Table 1's level-3 texts as its "Measure" and
    "Unheathful". By hand: O3 8 h 100 + 50 × 18/55 = 116.4 → 117; PM2.5 50 × 24/35 = 34.3
    → 35; PM10 47; SO2 12; NO2 50 × 18/40 = 22.5 → 23; CO 50 × 0.7/2 = 17.5 → 18."""
    concs = {"pm25_24h": 24, "pm10_24h": 47, "so2_24h": 12, "no2_24h": 18, "co_24h": 0.7,
             "o3_8h": 178}
    r = aqi_cn_report(concs, edition="2026", lang="zh")
    assert {k: float(v) for k, v in r.sub_indices.items()} == {
        "pm25_24h": 35, "pm10_24h": 47, "so2_24h": 12, "no2_24h": 23, "co_24h": 18,
        "o3_8h": 117}
    assert (r.aqi, r.primary, r.category, r.color) == (117, "o3_8h", "轻度污染", "#FF7E00")
    assert advice_cn(r.aqi, edition="2026") == (
        "青少年儿童、老年人及心血管系统疾病、呼吸系统疾病患者应减少长时间、高强度的户外锻炼")
    assert health_effect_cn(r.aqi, edition="2026") == "敏感人群症状有轻度加剧，健康人群出现刺激症状"
    assert sensitive_groups_cn(r.sub_indices, edition="2026") == T2["o3"]


def test_hand_worked_daily_report_both_editions() -> None:
    """The same day by each edition's daily report (formula (1), IAQI rounded up):

        PM2.5 80: 2012 row 75-115 → 100 + 50 × 5/40 = 106.25 → 107;
                  2026 row 60-115 → 100 + 50 × 20/55 = 118.18 → 119
        PM10 120: 2012 row 50-150 → 50 + 50 × 70/100 = 85; 2026: the limit 120 → 100
        SO2 30 → 30, NO2 60 → 50 + 50 × 20/40 = 75, CO 1.5 → 37.5 → 38 (both)
        O3 8 h 170 → 100 + 50 × 10/55 = 109.1 → 110 (both); O3 1 h max 210 → 105 (2012 only:
        the 2026 daily report has six indicators, 4.2.2)

    2012: AQI 110, primary o3_8h, exceeding pm25_24h;o3_8h;o3_1h.
    2026: AQI 119, primary pm25_24h, Table 2 groups of O3 and PM (IAQI > 100)."""
    base = {"pm25_24h": 80, "pm10_24h": 120, "so2_24h": 30, "no2_24h": 60, "co_24h": 1.5,
            "o3_8h": 170}
    old = aqi_cn_report({**base, "o3_1h": 210}, edition="2012")
    new = aqi_cn_report(base, edition="2026")
    assert {k: float(v) for k, v in old.sub_indices.items()} == {
        "pm25_24h": 107, "pm10_24h": 85, "so2_24h": 30, "no2_24h": 75, "co_24h": 38,
        "o3_8h": 110, "o3_1h": 105}
    assert {k: float(v) for k, v in new.sub_indices.items()} == {
        "pm25_24h": 119, "pm10_24h": 100, "so2_24h": 30, "no2_24h": 75, "co_24h": 38,
        "o3_8h": 110}
    assert (old.aqi, old.primary) == (110, "o3_8h")
    assert (new.aqi, new.primary, new.category) == (119, "pm25_24h", "Lightly Polluted")
    assert over_100_cn(old.sub_indices) == "pm25_24h;o3_8h;o3_1h"
    assert sensitive_groups_cn(new.sub_indices, edition="2026") == T2["o3"] + "；" + T2["pm"]
    assert sensitive_groups_cn(old.sub_indices, edition="2012") == ""  # no Table 2 in 2012
    with pytest.raises(KeyError):  # PM 1-hour columns exist only in 2026
        iaqi_cn_all({"pm25_1h": 80}, edition="2012")


def test_realtime_report_2026_pm_hourly_means_on_the_daily_limits() -> None:
    """4.2.3 and the note to formula (1): the real-time report has the six 1-hour means;
    PM10 and PM2.5 1-hour means use the daily columns. PM2.5 1 h 75 → 100 + 50 × 15/55 =
    113.6 → 114; O3 1 h 170 → 50 + 50 × 10/40 = 62.5 → 63 (no O3 8 h in the 2026 real-time
    report; 2012's had the O3 8 h moving mean: 170 → 110)."""
    means = {"pm25": 75.0, "pm10": 60.0, "o3": 170.0, "no2": 50.0, "co": 0.4, "so2": 5.0}
    cols = realtime_columns(means, edition="2026")
    assert set(cols) == {"pm25_1h", "pm10_1h", "o3_1h", "no2_1h", "co_1h", "so2_1h"}
    r = aqi_cn_report(cols, edition="2026")
    assert r.sub_indices["pm25_1h"] == 114 and r.sub_indices["o3_1h"] == 63
    assert r.aqi == 114 and r.primary == "pm25_1h"
    old_cols = realtime_columns(means, edition="2012")
    assert set(old_cols) == {"pm25_24h", "pm10_24h", "o3_1h", "o3_8h", "no2_1h", "co_1h",
                             "so2_1h"}
    old = aqi_cn_report(old_cols, edition="2012")
    assert old.sub_indices["o3_8h"] == 110 and old.sub_indices["pm25_24h"] == 100
    assert old.aqi == 110 and old.primary == "o3_8h"
    # absent pollutants stay absent (never a primary pollutant)
    assert set(realtime_columns({"pm25": 10.0, "so2": None}, edition="2026")) == {"pm25_1h"}


def test_table1_and_table2_texts() -> None:
    aqi = [0, 50, 51, 100, 101, 150, 151, 200, 201, 300, 301, 500, np.nan]
    levels = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert advice_cn(aqi, edition="2026").tolist() == [T1_ADVICE[i] for i in levels] + [""]
    assert health_effect_cn(aqi, edition="2026").tolist() == [T1_EFFECT[i] for i in levels] + [""]
    en = advice_cn([25, 250], edition="2026", lang="en").tolist()
    assert en[0].startswith("Everyone") and "stay indoors" in en[1]
    # 2012 Table 2 says 儿童 / 心脏病 where 2026 says 青少年儿童 / 心血管系统疾病
    assert advice_cn(120, edition="2012") == (
        "儿童、老年人及心脏病、呼吸系统疾病患者应减少长时间、高强度的户外锻炼")
    assert health_effect_cn(120, edition="2012") == "易感人群症状有轻度加剧，健康人群出现刺激症状"
    iaqis = {"so2_1h": [101, 0, 0, 0, 0, 100], "no2_1h": [0, 101, 0, 0, 0, 0],
             "co_1h": [0, 0, 101, 0, 0, 0], "o3_1h": [0, 0, 0, 101, 0, 0],
             "pm10_1h": [0, 0, 0, 0, 101, 0], "pm25_1h": [0, 0, 0, 0, 101, 0]}
    assert sensitive_groups_cn(iaqis, edition="2026").tolist() == [
        T2["so2"], T2["no2"], T2["co"], T2["o3"], T2["pm"], ""]
    assert "asthma" in str(sensitive_groups_cn({"so2_24h": 150}, edition="2026", lang="en"))


def test_primary_pollutant_rule_is_unchanged() -> None:
    """4.3.1 (2026) as 4.4.2 (2012): only when AQI > 50; ties are all primary."""
    iaqis = iaqi_cn_all({"pm25_24h": [60, 35, 20], "pm10_24h": [120, 10, 40]}, edition="2026")
    assert aqi_cn(iaqis).tolist() == [100, 50, 40]
    assert primary_pollutants_cn(iaqis).tolist() == ["pm25_24h;pm10_24h", "", ""]


# ====================================================== the edition switch by event time ====


def test_edition_by_event_time_and_pinned() -> None:
    """HJ 633-2026 from 2026-03-01 00:00 China Standard Time = 2026-02-28T16:00:00Z."""
    assert EFFECTIVE_2026_MS == 1_772_294_400_000
    t = [EFFECTIVE_2026_MS - 86_400_000, EFFECTIVE_2026_MS - 1, EFFECTIVE_2026_MS,
         EFFECTIVE_2026_MS + 3_600_000, np.nan]
    assert cn_edition_for(t).tolist() == ["2012", "2012", "2026", "2026", "2026"]
    assert cn_edition_for(t, "auto").tolist() == ["2012", "2012", "2026", "2026", "2026"]
    assert cn_edition_for(t, "2012").tolist() == ["2012"] * 5
    assert cn_edition_for(t, "hj633-2026").tolist() == ["2026"] * 5
    assert str(cn_edition_for(None)) == "2026"
    with pytest.raises(KeyError):
        cn_edition_for(t, "2020")


def _env_rows(pm25: float) -> dict[str, dict[str, Stats]]:
    one = Stats(count=1, sum=pm25, sumsq=pm25 * pm25, min=pm25, max=pm25, last_ts=0, last=pm25)
    return {"aq-1": {"pm25_ugm3": one}}


def test_index_points_carry_the_edition_of_their_window() -> None:
    """The streams' IndexCalculator: the China edition follows the window start; the US
    points carry the TAD's; a pinned edition wins; and the China points carry the edition's
    advice. PM2.5 75: 2012 → 100 (良), 2026 → 114 (轻度污染, Table 2 PM groups)."""
    calc = IndexCalculator(None)
    rows = _env_rows(75.0)
    before = {p.tags["standard"]: p for p in calc.compute("environment", rows, 60.0,
                                                          EFFECTIVE_2026_MS - 60_000)}
    after = {p.tags["standard"]: p for p in calc.compute("environment", rows, 60.0,
                                                         EFFECTIVE_2026_MS)}
    assert before["cn"].tags == {"standard": "cn", "edition": "hj633-2012"}
    assert after["cn"].tags == {"standard": "cn", "edition": "hj633-2026"}
    assert before["us"].tags["edition"] == after["us"].tags["edition"] == "epa-2024"
    assert before["cn"].fields["aqi"] == 100.0 and before["cn"].fields["category"] == "Good"
    assert after["cn"].fields["aqi"] == 114.0
    assert after["cn"].fields["category"] == "Lightly Polluted"
    assert after["cn"].fields["primary"] == "pm25_1h"
    assert after["cn"].fields["advice"] == T1_ADVICE[2]
    assert after["cn"].fields["sensitive_groups"] == T2["pm"]
    assert "cardiovascular" in str(after["cn"].fields["sensitive_groups_en"])
    assert before["cn"].fields["advice"].startswith("极少数异常敏感人群")
    assert before["cn"].fields["sensitive_groups"] == ""
    assert "advice" not in before["us"].fields
    pinned = IndexCalculator(None, aqi_cn_edition="2012")
    (cn,) = [p for p in pinned.compute("environment", rows, 60.0, EFFECTIVE_2026_MS)
             if p.tags["standard"] == "cn"]
    assert cn.tags["edition"] == "hj633-2012" and cn.fields["aqi"] == 100.0
    with pytest.raises(KeyError):
        IndexCalculator(None, aqi_cn_edition="2013")


def test_window_stage_tags_aqi_lines_by_window_start() -> None:
    """Through the stage the Faust agent runs: 1-min windows just before and just after the
    switch, and the 5-min hopping window that straddles it (it starts before: HJ 633-2012)."""
    s = StreamsSettings(streams_lateness_s=0)
    stage = WindowStage(s, DictStore(), IndexCalculator(None))
    t = EFFECTIVE_2026_MS

    def rd(ts: int, pm25: float) -> dict:
        return {"sensor_id": "aq-1", "domain": "environment", "kind": "station",
                "district": "d1", "ts": ts, "recv": ts, "metrics": {"pm25_ugm3": pm25}}

    res = stage.process("readings.environment", 0, [
        (0, [rd(t - 30_000, 75.0), rd(t + 30_000, 75.0)]),
        (1, [rd(t + 10 * 60_000, 5.0)]),  # moves the watermark past both minutes
    ])
    out = stage.render("readings.environment", 0, res)
    cn = {(ln.split("window=")[1].split(",")[0].split(" ")[0], int(ln.rsplit(" ", 1)[1])): ln
          for ln in out.lines if ln.startswith("aqi,") and "standard=cn" in ln}
    assert "edition=hj633-2012" in cn[("1m", t - 60_000)] and " aqi=100.0," in cn[("1m", t - 60_000)]
    assert "edition=hj633-2026" in cn[("1m", t)] and " aqi=114.0," in cn[("1m", t)]
    straddling = cn[("5m", t - 4 * 60_000)]  # [t-4m, t+1m) holds both readings
    assert "edition=hj633-2012" in straddling
    assert 'advice="青少年儿童' in cn[("1m", t)]
    us = [ln for ln in out.lines if ln.startswith("aqi,") and "standard=us" in ln]
    assert us and all("edition=epa-2024" in ln for ln in us)
