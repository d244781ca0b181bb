"""China AQI after HJ 633-2012 《环境空气质量指数（AQI）技术规定（试行）》, vectorised.

Source: Ministry of Environmental Protection of the PRC, HJ 633-2012 *Technical Regulation on
Ambient Air Quality Index (on trial)*, Table 1 (IAQI and pollutant concentration limits),
Table 2 (AQI levels, categories and colours), formula (1) for IAQI and section 5 on the
primary pollutant. Concentrations in µg/m³, CO in mg/m³, as our canonical metrics already are.

Rules implemented:
  * IAQI_P = (IAQI_Hi - IAQI_Lo) / (BP_Hi - BP_Lo) × (C_P - BP_Lo) + IAQI_Lo, where rows share
    their end points (BP_Hi of one row is BP_Lo of the next), so the function is continuous;
  * IAQI is rounded *up* to an integer (进位取整数);
  * SO2 1-hour above 800 µg/m³: no 1-hour IAQI, the 24-hour IAQI is reported instead;
  * O3 8-hour above 800 µg/m³: no 8-hour IAQI, the 1-hour IAQI is reported instead;
  * SO2, NO2 and CO 1-hour limits serve real-time (hourly) reports only, the daily report uses
    the 24-hour ones: callers pick the keys of the report they make;
  * AQI = max IAQI; primary pollutant(s) (首要污染物) only when AQI > 50, all tied ones;
    pollutants with IAQI > 100 are "exceeding" (超标污染物).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from ._common import AqiReport, FloatArray, StrArray, as_float, broadcast_all, names_where
from ._common import nanmax_of, pick

IAQI_LEVELS: tuple[int, ...] = (0, 50, 100, 150, 200, 300, 400, 500)
"""The IAQI column of HJ 633-2012 Table 1."""

# Concentration limits per IAQI level (Table 1). Shorter rows end where the standard's table
# ends for that pollutant (SO2 1-hour at 800, O3 8-hour at 800).
LIMITS: dict[str, tuple[float, ...]] = {
    "so2_24h": (0, 50, 150, 475, 800, 1600, 2100, 2620),
    "so2_1h": (0, 150, 500, 650, 800),
    "no2_24h": (0, 40, 80, 180, 280, 565, 750, 940),
    "no2_1h": (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    "pm10_24h": (0, 50, 150, 250, 350, 420, 500, 600),
    "co_24h": (0, 2, 4, 14, 24, 36, 48, 60),  # mg/m³
    "co_1h": (0, 5, 10, 35, 60, 90, 120, 150),  # mg/m³
    "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 160, 215, 265, 800),
    "pm25_24h": (0, 35, 75, 115, 150, 250, 350, 500),
}
"""HJ 633-2012 Table 1, µg/m³ (CO mg/m³), keyed pollutant_averaging."""

_EPS = 1e-9  # so that 50.000000000001 (binary noise) does not round up to 51


def iaqi_cn(key: str, conc: ArrayLike, *, saturate: bool = False) -> FloatArray:
    """Individual AQI (IAQI) of one Table 1 column, rounded up; NaN if missing or off-table.

    Off-table means negative or above the column's last limit. With ``saturate`` values above
    the last limit of a 500-topped column report 500, as Chinese monitoring sites display
    (the standard itself does not define IAQI above 500).
    """
    try:
        bp = np.array(LIMITS[key], dtype=np.float64)
    except KeyError:
        raise KeyError(f"unknown HJ 633 column {key!r}; known: {sorted(LIMITS)}") from None
    levels = np.array(IAQI_LEVELS[: len(bp)], dtype=np.float64)
    c = as_float(conc)
    with np.errstate(invalid="ignore"):
        row = np.clip(np.searchsorted(bp, c, side="left") - 1, 0, len(bp) - 2)
        lo, hi = bp[row], bp[row + 1]
        raw = levels[row] + (levels[row + 1] - levels[row]) * (c - lo) / (hi - lo)
        out = np.ceil(raw - _EPS) + 0.0  # + 0.0 turns ceil's -0.0 into 0.0
        valid = np.isfinite(c) & (c >= 0) & (c <= bp[-1])
        result = np.where(valid, out, np.nan)
        if saturate and levels[-1] == 500:
            result = np.where(np.isfinite(c) & (c > bp[-1]), 500.0, result)
    return result


def iaqi_cn_all(concs: Mapping[str, ArrayLike | None], *, saturate: bool = False) -> dict[str, FloatArray]:
    """IAQI for every Table 1 column given (None entries skipped), with the two rules:
    SO2 1-hour > 800 takes the SO2 24-hour IAQI, O3 8-hour > 800 takes the O3 1-hour IAQI
    (NaN when that other value was not given).

    Pass the columns of the report being made: daily = *_24h plus o3_1h and o3_8h maxima;
    hourly = *_1h plus o3_8h (moving) and the PM 24-hour (moving) values.
    """
    given = {k: v for k, v in concs.items() if v is not None}
    unknown = set(given) - set(LIMITS)
    if unknown:
        raise KeyError(f"unknown HJ 633 columns {sorted(unknown)}")
    out = {k: iaqi_cn(k, v, saturate=saturate) for k, v in given.items()}
    for key, other, cap in (("so2_1h", "so2_24h", 800.0), ("o3_8h", "o3_1h", 800.0)):
        if key in out:
            c = as_float(given[key])
            alt = out.get(other, np.full(np.shape(c), np.nan))
            c, alt, own = np.broadcast_arrays(c, alt, out[key])
            with np.errstate(invalid="ignore"):
                out[key] = np.where(c > cap, alt, own)
    return out


def aqi_cn(iaqis: Mapping[str, ArrayLike]) -> FloatArray:
    """AQI = max(IAQI_1, ..., IAQI_n) (HJ 633-2012 formula (2)); NaN where none is known."""
    return nanmax_of(iaqis)


def primary_pollutants_cn(iaqis: Mapping[str, ArrayLike]) -> StrArray:
    """首要污染物: the column(s) with the largest IAQI, ';'-joined, only where AQI > 50."""
    aqi = aqi_cn(iaqis)
    with np.errstate(invalid="ignore"):
        target = np.where(aqi > 50, aqi, np.nan)
    return names_where(iaqis, target)


def exceeding_pollutants_cn(iaqis: Mapping[str, ArrayLike]) -> StrArray:
    """超标污染物: every column whose IAQI is above 100, ';'-joined ('' if none)."""
    b = broadcast_all(iaqis)
    shape = np.broadcast_shapes(*(v.shape for v in b.values()))
    out = np.full(shape, "", dtype=object)
    for name, v in b.items():
        with np.errstate(invalid="ignore"):
            hit = np.broadcast_to(v, shape) > 100
        out = np.where(hit, np.where(out == "", name, out + ";" + name), out)
    return out.astype(str)


# --- levels (HJ 633-2012 Table 2) --------------------------------------------------------

LEVELS: tuple[str, ...] = ("一级", "二级", "三级", "四级", "五级", "六级")
CATEGORIES_ZH: tuple[str, ...] = ("优", "良", "轻度污染", "中度污染", "重度污染", "严重污染")
CATEGORIES_EN: tuple[str, ...] = (
    "Excellent",
    "Good",
    "Lightly Polluted",
    "Moderately Polluted",
    "Heavily Polluted",
    "Severely Polluted",
)
COLORS: tuple[str, ...] = ("#00E400", "#FFFF00", "#FF7E00", "#FF0000", "#99004C", "#7E0023")
"""Table 2 colours: 绿 (0,228,0), 黄 (255,255,0), 橙 (255,126,0), 红 (255,0,0),
紫 (153,0,76), 褐红 (126,0,35)."""

_UPPER = np.array([50, 100, 150, 200, 300])


def aqi_level_cn(aqi: ArrayLike) -> FloatArray:
    """Level 1..6 (一级..六级) for an AQI: 0-50, 51-100, 101-150, 151-200, 201-300, >300."""
    a = as_float(aqi)
    lvl = np.searchsorted(_UPPER, np.where(np.isfinite(a), a, 0), side="left") + 1.0
    return np.where(np.isfinite(a) & (a >= 0), lvl, np.nan)


def aqi_category_cn(aqi: ArrayLike, lang: str = "zh") -> StrArray:
    """Category name (优 ... 严重污染, or the English names with lang='en'); '' for NaN."""
    names = {"zh": CATEGORIES_ZH, "en": CATEGORIES_EN}[lang]
    return pick(aqi_level_cn(aqi) - 1, names)


def aqi_color_cn(aqi: ArrayLike) -> StrArray:
    """Table 2 colour as hex '#RRGGBB' ('' for NaN)."""
    return pick(aqi_level_cn(aqi) - 1, COLORS)


def aqi_cn_report(
    concs: Mapping[str, ArrayLike | None], *, lang: str = "en", saturate: bool = False
) -> AqiReport:
    """One call for a Faust agent: AQI, primary pollutant(s), category and colour."""
    iaqis = iaqi_cn_all(concs, saturate=saturate)
    if not iaqis:
        raise ValueError("no pollutant given")
    aqi = aqi_cn(iaqis)
    return AqiReport(
        aqi, primary_pollutants_cn(iaqis), aqi_category_cn(aqi, lang), aqi_color_cn(aqi), iaqis
    )
