"""China AQI after HJ 633 《环境空气质量指数（AQI）技术规定》, both editions, vectorised.

Two editions are in this module, each exactly as its official text has it (README.md in this
folder cites the texts and reproduces every table):

* **HJ 633-2026** 《环境空气质量指数（AQI）技术规定》, Ministry of Ecology and Environment,
  approved 2026-02-14, in force from **2026-03-01** (it replaces HJ 633-2012). Table 1 (levels,
  health effects, advice), Table 2 (sensitive groups per pollutant), Table 3 (IAQI limits),
  4.2.2-4.2.6 (report indicators, rounding), formulas (1) and (2), 4.3.1 (primary pollutant).
* **HJ 633-2012** 《环境空气质量指数（AQI）技术规定（试行）》: Table 1 (IAQI limits), Table 2
  (levels, health effects, advice), formulas (1) and (2), 4.4.2 and 6.2. It indexes data from
  before 2026-03-01 (backfills, replays, backtests of old data).

What differs between the editions (and nothing else does):

* Table 3 (2026) vs Table 1 (2012): PM2.5 24 h IAQI 100 at 60 µg/m³ (was 75), PM10 24 h IAQI
  100 at 120 µg/m³ (was 150); every other limit is the same number.
* SO2 1 h above 800 µg/m³: 2026 counts IAQI 200 (Table 3 note b); 2012 reports the SO2 24 h
  IAQI instead (Table 1 note 2).
* O3 8 h above 800 µg/m³: 2026 counts IAQI 300 (note c); 2012 reports the O3 1 h IAQI instead
  (note 3).
* 2026 rounds the concentrations first, per GB/T 8170 (round half to even on the decimal
  value): µg/m³ to an integer, CO mg/m³ to one decimal (4.2.2, 4.2.3). 2012 has no such rule.
* Real-time report: 2026 uses the six 1-hour means, PM10 and PM2.5 1-hour means on the daily
  columns (4.2.3 and the note to formula (1)); 2012 uses nine indicators (1-hour means, O3
  8-hour moving mean, PM 24-hour moving means). Daily report: 2026 has six indicators (O3 only
  as the daily maximum 8-hour mean); 2012 seven (also the O3 daily maximum 1-hour mean).
* 2026 deleted "exceeding pollutants" (超标污染物) and added Table 2, the sensitive groups of
  each pollutant whose IAQI is above 100. Table 1's advice names 青少年儿童 and 心血管系统疾病
  where 2012 said 儿童 and 心脏病.

Rules both share: IAQI_P = (IAQI_Hi - IAQI_Lo) / (BP_Hi - BP_Lo) × (C_P - BP_Lo) + IAQI_Lo on
rows that share their end points (so the function is continuous), IAQI and AQI rounded *up*
to an integer (进位取整数), AQI = max IAQI, primary pollutant(s) only when AQI > 50 (ties all
reported), the six levels and Annex A colours.

Which edition: :func:`cn_edition_for` picks by the data's event time (2026 from 2026-03-01 00:00
China Standard Time, UTC+8) unless a configured edition pins one; every function here takes
``edition=`` and defaults to the edition in force, HJ 633-2026.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from ._common import (
    AqiReport,
    FloatArray,
    StrArray,
    as_float,
    broadcast_all,
    names_where,
    nanmax_of,
    pick,
)

EditionKey = Literal["2012", "2026"]

IAQI_LEVELS: tuple[int, ...] = (0, 50, 100, 150, 200, 300, 400, 500)
"""The IAQI column of HJ 633-2012 Table 1 and HJ 633-2026 Table 3."""

EFFECTIVE_2026_MS: int = 1_772_294_400_000
"""2026-03-01T00:00:00+08:00 (= 2026-02-28T16:00:00Z) in ms: HJ 633-2026 applies from then.

Why UTC+8: the standard's days are natural days (自然日) of China Standard Time, and its
implementation date is such a day. An averaging period (a window) whose *start* is at or
after this instant is indexed by HJ 633-2026; one that starts earlier (e.g. the daily report
of 2026-02-28, published on 03-01) by HJ 633-2012.
"""

# --- concentration limits ------------------------------------------------------------------
# Shorter rows end where the standard's table ends for that pollutant (SO2 1-hour and O3
# 8-hour stop at 800); above that the edition's own rule applies (see Edition).

LIMITS_2012: dict[str, tuple[float, ...]] = {
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

LIMITS_2026: dict[str, tuple[float, ...]] = {
    "so2_24h": (0, 50, 150, 475, 800, 1600, 2100, 2620),
    "so2_1h": (0, 150, 500, 650, 800),
    "no2_24h": (0, 40, 80, 180, 280, 565, 750, 940),
    "no2_1h": (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    "pm10_24h": (0, 50, 120, 250, 350, 420, 500, 600),
    "co_24h": (0, 2, 4, 14, 24, 36, 48, 60),  # mg/m³
    "co_1h": (0, 5, 10, 35, 60, 90, 120, 150),  # mg/m³
    "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 160, 215, 265, 800),
    "pm25_24h": (0, 35, 60, 115, 150, 250, 350, 500),
}
"""HJ 633-2026 Table 3, µg/m³ (CO mg/m³), keyed pollutant_averaging."""

# --- levels (2012 Table 2 / 2026 Table 1) and Annex A colours, the same in both -----------

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
"""Annex A (Table A.1) colours of both editions: 绿 (0,228,0), 黄 (255,255,0), 橙 (255,126,0),
红 (255,0,0), 紫 (153,0,76), 褐红 (126,0,35)."""

# --- health information, verbatim from the texts; English renderings are ours -------------

HEALTH_EFFECT_2026_ZH: tuple[str, ...] = (
    "空气质量令人满意，基本无空气污染",
    "空气质量可接受，但某些污染物可能对极少数异常敏感人群健康有较弱影响",
    "敏感人群症状有轻度加剧，健康人群出现刺激症状",
    "进一步加剧敏感人群症状，可能对健康人群心血管系统、呼吸系统有影响",
    "心血管系统和呼吸系统患者症状显著加剧，运动耐受力降低，健康人群普遍出现症状",
    "健康人群运动耐受力降低，有明显强烈症状，提前出现某些疾病",
)
"""HJ 633-2026 Table 1, column 对健康影响情况, levels 1-6."""

ADVICE_2026_ZH: tuple[str, ...] = (
    "各类人群可正常活动",
    "极少数异常敏感人群应减少户外活动",
    "青少年儿童、老年人及心血管系统疾病、呼吸系统疾病患者应减少长时间、高强度的户外锻炼",
    "青少年儿童、老年人及心血管系统疾病、呼吸系统疾病患者避免长时间、高强度的户外锻炼，"
    "一般人群适量减少户外运动",
    "青少年儿童、老年人和心血管系统疾病、呼吸系统疾病患者应停留在室内，停止户外运动，"
    "一般人群减少户外运动",
    "青少年儿童、老年人和病人应当留在室内，避免体力消耗，一般人群应避免户外活动",
)
"""HJ 633-2026 Table 1, column 建议采取的措施, levels 1-6."""

HEALTH_EFFECT_2026_EN: tuple[str, ...] = (
    "Air quality is satisfactory; there is basically no air pollution",
    "Air quality is acceptable, but some pollutants may have a weak effect on the health of "
    "a very small number of unusually sensitive people",
    "Symptoms of sensitive people are slightly aggravated; healthy people show irritation "
    "symptoms",
    "Symptoms of sensitive people are further aggravated; the cardiovascular and respiratory "
    "systems of healthy people may be affected",
    "Symptoms of people with cardiovascular and respiratory disease are markedly aggravated "
    "and exercise tolerance falls; healthy people commonly show symptoms",
    "Exercise tolerance of healthy people falls, with obvious strong symptoms; some diseases "
    "appear earlier",
)
"""Our English rendering of :data:`HEALTH_EFFECT_2026_ZH` (the standard has no English)."""

ADVICE_2026_EN: tuple[str, ...] = (
    "Everyone can carry on normal activities",
    "A very small number of unusually sensitive people should reduce outdoor activities",
    "Children and adolescents, older people and people with cardiovascular or respiratory "
    "disease should reduce prolonged, high-intensity outdoor exercise",
    "Children and adolescents, older people and people with cardiovascular or respiratory "
    "disease avoid prolonged, high-intensity outdoor exercise; everyone else moderately "
    "reduces outdoor exercise",
    "Children and adolescents, older people and people with cardiovascular or respiratory "
    "disease should stay indoors and stop outdoor exercise; everyone else reduces outdoor "
    "exercise",
    "Children and adolescents, older people and the sick should stay indoors and avoid "
    "physical exertion; everyone else should avoid outdoor activities",
)
"""Our English rendering of :data:`ADVICE_2026_ZH`."""

HEALTH_EFFECT_2012_ZH: tuple[str, ...] = (
    "空气质量令人满意，基本无空气污染",
    "空气质量可接受，但某些污染物可能对极少数异常敏感人群健康有较弱影响",
    "易感人群症状有轻度加剧，健康人群出现刺激症状",
    "进一步加剧易感人群症状，可能对健康人群心脏、呼吸系统有影响",
    "心脏病和肺病患者症状显著加剧，运动耐受力降低，健康人群普遍出现症状",
    "健康人群运动耐受力降低，有明显强烈症状，提前出现某些疾病",
)
"""HJ 633-2012 Table 2, column 对健康影响情况, levels 1-6."""

ADVICE_2012_ZH: tuple[str, ...] = (
    "各类人群可正常活动",
    "极少数异常敏感人群应减少户外活动",
    "儿童、老年人及心脏病、呼吸系统疾病患者应减少长时间、高强度的户外锻炼",
    # 锻练 [sic]: the 2012 text has it so in this one cell
    "儿童、老年人及心脏病、呼吸系统疾病患者避免长时间、高强度的户外锻练，一般人群适量减少户外运动",
    "儿童、老年人和心脏病、肺病患者应停留在室内，停止户外运动，一般人群减少户外运动",
    "儿童、老年人和病人应当留在室内，避免体力消耗，一般人群应避免户外活动",
)
"""HJ 633-2012 Table 2, column 建议采取的措施, levels 1-6."""

HEALTH_EFFECT_2012_EN: tuple[str, ...] = (
    HEALTH_EFFECT_2026_EN[0],
    HEALTH_EFFECT_2026_EN[1],
    "Symptoms of susceptible people are slightly aggravated; healthy people show irritation "
    "symptoms",
    "Symptoms of susceptible people are further aggravated; the heart and respiratory system "
    "of healthy people may be affected",
    "Symptoms of people with heart or lung disease are markedly aggravated and exercise "
    "tolerance falls; healthy people commonly show symptoms",
    HEALTH_EFFECT_2026_EN[5],
)
"""Our English rendering of :data:`HEALTH_EFFECT_2012_ZH`."""

ADVICE_2012_EN: tuple[str, ...] = (
    ADVICE_2026_EN[0],
    ADVICE_2026_EN[1],
    "Children, older people and people with heart or respiratory disease should reduce "
    "prolonged, high-intensity outdoor exercise",
    "Children, older people and people with heart or respiratory disease avoid prolonged, "
    "high-intensity outdoor exercise; everyone else moderately reduces outdoor exercise",
    "Children, older people and people with heart or lung disease should stay indoors and "
    "stop outdoor exercise; everyone else reduces outdoor exercise",
    "Children, older people and the sick should stay indoors and avoid physical exertion; "
    "everyone else should avoid outdoor activities",
)
"""Our English rendering of :data:`ADVICE_2012_ZH`."""

SENSITIVE_GROUPS_2026_ZH: dict[str, str] = {
    "so2": "患有哮喘的人、青少年儿童以及老年人",
    "no2": "患有呼吸系统疾病（如哮喘）的人、青少年儿童以及老年人",
    "co": "患有心血管系统疾病的人",
    "o3": "患有呼吸系统疾病（如哮喘）的人、青少年儿童、户外活动频繁的人以及老年人",
    "pm": "患有心血管系统疾病或呼吸系统疾病（如哮喘）的人、青少年儿童、户外活动频繁的人以及老年人",
}
"""HJ 633-2026 Table 2 空气污染物的敏感人群: the people advice is for, per pollutant whose IAQI
is above 100 (PM10 and PM2.5 share one row)."""

SENSITIVE_GROUPS_2026_EN: dict[str, str] = {
    "so2": "people with asthma, children and adolescents, and older people",
    "no2": "people with respiratory disease (such as asthma), children and adolescents, and "
           "older people",
    "co": "people with cardiovascular disease",
    "o3": "people with respiratory disease (such as asthma), children and adolescents, people "
          "often active outdoors, and older people",
    "pm": "people with cardiovascular or respiratory disease (such as asthma), children and "
          "adolescents, people often active outdoors, and older people",
}
"""Our English rendering of :data:`SENSITIVE_GROUPS_2026_ZH`."""

SENSITIVE_ORDER: tuple[str, ...] = ("so2", "no2", "co", "o3", "pm")
"""Table 2's row order, which the joined text follows."""


@dataclass(frozen=True)
class Edition:
    """One edition of HJ 633: its table and the rules that differ between editions.

    ``aliases`` are report columns that use another column's limits (2026: the PM 1-hour
    means on the daily columns); ``above`` gives an IAQI for concentrations above a short
    column (2026 notes b and c); ``substitute`` names the column whose IAQI replaces a short
    column's above its last limit (2012 notes 2 and 3); ``rounds`` says concentrations are
    rounded per GB/T 8170 first (2026 4.2.2).
    """

    key: EditionKey
    name: str
    tag: str
    limits: Mapping[str, tuple[float, ...]]
    aliases: Mapping[str, str] = field(default_factory=dict)
    above: Mapping[str, float] = field(default_factory=dict)
    substitute: Mapping[str, str] = field(default_factory=dict)
    rounds: bool = False
    health_effect: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    advice: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sensitive: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    realtime: Mapping[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> frozenset[str]:
        """Every report column this edition accepts (table columns and aliases)."""
        return frozenset(self.limits) | frozenset(self.aliases)


EDITIONS: dict[str, Edition] = {
    "2012": Edition(
        key="2012", name="HJ 633-2012", tag="hj633-2012", limits=LIMITS_2012,
        substitute={"so2_1h": "so2_24h", "o3_8h": "o3_1h"},
        health_effect={"zh": HEALTH_EFFECT_2012_ZH, "en": HEALTH_EFFECT_2012_EN},
        advice={"zh": ADVICE_2012_ZH, "en": ADVICE_2012_EN},
        # 5.1.3: 1-hour SO2, NO2, O3, CO; O3 8-hour moving mean; PM 24-hour moving means
        realtime={"pm25": "pm25_24h", "pm10": "pm10_24h", "o3": "o3_1h", "o3_8h": "o3_8h",
                  "co": "co_1h", "so2": "so2_1h", "no2": "no2_1h"},
    ),
    "2026": Edition(
        key="2026", name="HJ 633-2026", tag="hj633-2026", limits=LIMITS_2026,
        aliases={"pm25_1h": "pm25_24h", "pm10_1h": "pm10_24h"},
        above={"so2_1h": 200.0, "o3_8h": 300.0}, rounds=True,
        health_effect={"zh": HEALTH_EFFECT_2026_ZH, "en": HEALTH_EFFECT_2026_EN},
        advice={"zh": ADVICE_2026_ZH, "en": ADVICE_2026_EN},
        sensitive={"zh": SENSITIVE_GROUPS_2026_ZH, "en": SENSITIVE_GROUPS_2026_EN},
        # 4.2.3: the six 1-hour means, PM on the daily columns
        realtime={"pm25": "pm25_1h", "pm10": "pm10_1h", "o3": "o3_1h", "co": "co_1h",
                  "so2": "so2_1h", "no2": "no2_1h"},
    ),
}
"""The editions by key; :data:`DEFAULT_EDITION` is the one in force."""

DEFAULT_EDITION: EditionKey = "2026"
LIMITS = LIMITS_2026
"""The table of the edition in force (HJ 633-2026 Table 3)."""

_EPS = 1e-9  # so that 50.000000000001 (binary noise) does not round up to 51


def cn_edition(key: str | Edition = DEFAULT_EDITION) -> Edition:
    """The :class:`Edition` for ``"2012"``/``"2026"`` (its name or tag also do)."""
    if isinstance(key, Edition):
        return key
    for ed in EDITIONS.values():
        if key in (ed.key, ed.name, ed.tag):
            return ed
    raise KeyError(f"unknown HJ 633 edition {key!r}; known: {sorted(EDITIONS)}")


def cn_edition_for(event_ms: ArrayLike | None, pinned: str | None = None) -> np.ndarray:
    """The edition key in force at each event time (ms since the epoch, UTC), element-wise.

    ``pinned`` (``"2012"``/``"2026"``, e.g. from a city's configuration) wins over the date;
    ``None``/``"auto"`` chooses by date, with :data:`DEFAULT_EDITION` where the time is
    missing (NaN/None): data without a date is indexed by the standard in force.
    """
    if pinned not in (None, "auto"):
        key = cn_edition(pinned).key
        return np.full(np.shape(as_float(event_ms)), key, dtype="<U4")
    t = as_float(event_ms)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(t) & (t < EFFECTIVE_2026_MS), "2012", DEFAULT_EDITION)


def round_gbt8170(conc: ArrayLike, decimals: ArrayLike = 0) -> FloatArray:
    """Round to ``decimals`` as GB/T 8170 says: nearest, and an exact half to the even digit.

    Why not ``np.round``: the half is judged on the *decimal* value the monitor reported, so
    2.675 (binary 2.67499999…) is a half and goes to 2.68; a tolerance of 1e-9 of the last
    kept digit treats binary noise as the half it stands for.
    """
    scale = np.power(10.0, as_float(decimals))
    s = as_float(conc) * scale
    with np.errstate(invalid="ignore"):
        f = np.floor(s)
        frac = s - f
        half = np.abs(frac - 0.5) < 1e-9
        up = np.where(half, np.mod(f, 2.0) == 1.0, frac > 0.5)
    return (f + up) / scale


def _decimals(column: str) -> int:
    return 1 if column.startswith("co_") else 0  # CO mg/m³ to 0.1, the rest µg/m³ to 1


def iaqi_cn(key: str, conc: ArrayLike, *, edition: str | Edition = DEFAULT_EDITION,
            saturate: bool = False) -> FloatArray:
    """IAQI of one report column, rounded up; NaN if missing or off-table.

    The edition decides the table, whether the concentration is rounded first (2026), and the
    IAQI above a short column (2026: SO2 1-hour > 800 → 200, O3 8-hour > 800 → 300; 2012:
    NaN here, :func:`iaqi_cn_all` substitutes). Off-table otherwise means negative or above
    the column's last limit; with ``saturate`` values above the last limit of a 500-topped
    column report 500, as Chinese monitoring displays do (neither edition defines IAQI above
    500).
    """
    ed = cn_edition(edition)
    if key not in ed.columns:
        raise KeyError(f"unknown {ed.name} column {key!r}; known: {sorted(ed.columns)}")
    column = ed.aliases.get(key, key)
    bp = np.array(ed.limits[column], dtype=np.float64)
    levels = np.array(IAQI_LEVELS[: len(bp)], dtype=np.float64)
    c = as_float(conc)
    if ed.rounds:
        c = round_gbt8170(c, _decimals(column))
    with np.errstate(invalid="ignore"):
        row = np.clip(np.searchsorted(bp, c, side="left") - 1, 0, len(bp) - 2)
        lo, hi = bp[row], bp[row + 1]
        raw = levels[row] + (levels[row + 1] - levels[row]) * (c - lo) / (hi - lo)
        out = np.ceil(raw - _EPS) + 0.0  # + 0.0 turns ceil's -0.0 into 0.0
        valid = np.isfinite(c) & (c >= 0) & (c <= bp[-1])
        result = np.where(valid, out, np.nan)
        over = np.isfinite(c) & (c > bp[-1])
        if column in ed.above:
            result = np.where(over, ed.above[column], result)
        elif saturate and levels[-1] == 500:
            result = np.where(over, 500.0, result)
    return result


def iaqi_cn_all(concs: Mapping[str, ArrayLike | None], *,
                edition: str | Edition = DEFAULT_EDITION,
                saturate: bool = False) -> dict[str, FloatArray]:
    """IAQI for every report column given (None entries skipped), with the edition's rules.

    HJ 633-2012: SO2 1-hour > 800 takes the SO2 24-hour IAQI, O3 8-hour > 800 takes the O3
    1-hour IAQI (NaN when that other value was not given). HJ 633-2026: those count 200 and
    300 (in :func:`iaqi_cn`).

    Pass the columns of the report being made. 2026 daily: ``so2_24h``, ``no2_24h``,
    ``co_24h``, ``pm10_24h``, ``pm25_24h`` and ``o3_8h`` (daily maximum); 2026 real-time:
    ``so2_1h``, ``no2_1h``, ``co_1h``, ``o3_1h``, ``pm10_1h``, ``pm25_1h``. 2012 daily: the
    ``*_24h`` columns plus ``o3_1h`` and ``o3_8h`` maxima; 2012 real-time: the ``*_1h``
    columns plus ``o3_8h`` (moving) and the PM ``*_24h`` (moving) values.
    """
    ed = cn_edition(edition)
    given = {k: v for k, v in concs.items() if v is not None}
    unknown = set(given) - ed.columns
    if unknown:
        raise KeyError(f"unknown {ed.name} columns {sorted(unknown)}")
    out = {k: iaqi_cn(k, v, edition=ed, saturate=saturate) for k, v in given.items()}
    for key, other in ed.substitute.items():
        if key in out:
            c = as_float(given[key])
            cap = ed.limits[key][-1]
            alt = out.get(other, np.full(np.shape(c), np.nan))
            c, alt, own = np.broadcast_arrays(c, alt, out[key])
            with np.errstate(invalid="ignore"):
                out[key] = np.where(c > cap, alt, own)
    return out


def aqi_cn(iaqis: Mapping[str, ArrayLike]) -> FloatArray:
    """AQI = max(IAQI_1, ..., IAQI_n) (formula (2) of both editions); NaN where none is known."""
    return nanmax_of(iaqis)


def primary_pollutants_cn(iaqis: Mapping[str, ArrayLike]) -> StrArray:
    """首要污染物: the column(s) with the largest IAQI, ';'-joined, only where AQI > 50."""
    aqi = aqi_cn(iaqis)
    with np.errstate(invalid="ignore"):
        target = np.where(aqi > 50, aqi, np.nan)
    return names_where(iaqis, target)


def over_100_cn(iaqis: Mapping[str, ArrayLike]) -> StrArray:
    """Every column whose IAQI is above 100, ';'-joined ('' if none).

    HJ 633-2012 calls them exceeding pollutants (超标污染物); HJ 633-2026 deleted that term
    but keys its Table 2 (sensitive groups) on the same set, "IAQI 超过 100 的污染物".
    """
    b = broadcast_all(iaqis)
    shape = np.broadcast_shapes(*(v.shape for v in b.values()))
    out = np.full(shape, "", dtype=object)
    for name, v in b.items():
        with np.errstate(invalid="ignore"):
            hit = np.broadcast_to(v, shape) > 100
        out = np.where(hit, np.where(out == "", name, out + ";" + name), out)
    return out.astype(str)


exceeding_pollutants_cn = over_100_cn
"""超标污染物 (HJ 633-2012 4.4.2): IAQI > 100. HJ 633-2026 has no such term."""


# --- levels (2012 Table 2 / 2026 Table 1) --------------------------------------------------

_UPPER = np.array([50, 100, 150, 200, 300])


def aqi_level_cn(aqi: ArrayLike) -> FloatArray:
    """Level 1..6 (一级..六级) for an AQI: 0-50, 51-100, 101-150, 151-200, 201-300, >300.

    HJ 633-2026 writes the first level 1-50 (4.1.1: AQI 1-500); an AQI of 0 (every
    concentration zero) is still level 1 here.
    """
    a = as_float(aqi)
    lvl = np.searchsorted(_UPPER, np.where(np.isfinite(a), a, 0), side="left") + 1.0
    return np.where(np.isfinite(a) & (a >= 0), lvl, np.nan)


def aqi_category_cn(aqi: ArrayLike, lang: str = "zh") -> StrArray:
    """Category name (优 ... 严重污染, or the English names with lang='en'); '' for NaN."""
    names = {"zh": CATEGORIES_ZH, "en": CATEGORIES_EN}[lang]
    return pick(aqi_level_cn(aqi) - 1, names)


def aqi_color_cn(aqi: ArrayLike) -> StrArray:
    """Annex A colour as hex '#RRGGBB' ('' for NaN)."""
    return pick(aqi_level_cn(aqi) - 1, COLORS)


def health_effect_cn(aqi: ArrayLike, *, edition: str | Edition = DEFAULT_EDITION,
                     lang: str = "zh") -> StrArray:
    """对健康影响情况 of the AQI's level (2026 Table 1 / 2012 Table 2); '' for NaN."""
    ed = cn_edition(edition)
    return pick(aqi_level_cn(aqi) - 1, ed.health_effect[lang])


def advice_cn(aqi: ArrayLike, *, edition: str | Edition = DEFAULT_EDITION,
              lang: str = "zh") -> StrArray:
    """建议采取的措施 of the AQI's level (2026 Table 1 / 2012 Table 2); '' for NaN."""
    ed = cn_edition(edition)
    return pick(aqi_level_cn(aqi) - 1, ed.advice[lang])


def _pollutant(column: str) -> str:
    p = column.split("_", 1)[0]
    return "pm" if p in ("pm25", "pm10") else p


def sensitive_groups_cn(iaqis: Mapping[str, ArrayLike], *,
                        edition: str | Edition = DEFAULT_EDITION,
                        lang: str = "zh") -> StrArray:
    """HJ 633-2026 Table 2: the sensitive groups of every pollutant whose IAQI is above 100.

    Rows in the table's order, joined with '；' (zh) or '; ' (en); '' where no pollutant is
    above 100, and always '' for HJ 633-2012, which has no such table.
    """
    ed = cn_edition(edition)
    b = broadcast_all(iaqis) if iaqis else {}
    shape = np.broadcast_shapes(*(v.shape for v in b.values())) if b else ()
    if not ed.sensitive:
        return np.full(shape, "", dtype=str)
    # one bit per Table 2 row, then one look-up in the 32 possible joined texts
    code = np.zeros(shape, dtype=np.int64)
    for name, v in b.items():
        with np.errstate(invalid="ignore"):
            hit = np.broadcast_to(v, shape) > 100
        code |= hit.astype(np.int64) << SENSITIVE_ORDER.index(_pollutant(name))
    return np.asarray(_sensitive_table(ed.key, lang)[code])


_SENSITIVE_TABLES: dict[tuple[str, str], np.ndarray] = {}


def _sensitive_table(key: str, lang: str) -> np.ndarray:
    """All 2**5 joins of Table 2 rows (bit i = row i of SENSITIVE_ORDER), cached."""
    table = _SENSITIVE_TABLES.get((key, lang))
    if table is None:
        texts, sep = EDITIONS[key].sensitive[lang], ("；" if lang == "zh" else "; ")
        table = np.array([sep.join(texts[p] for i, p in enumerate(SENSITIVE_ORDER)
                                   if code >> i & 1) for code in range(1 << len(SENSITIVE_ORDER))])
        _SENSITIVE_TABLES[(key, lang)] = table
    return table


def aqi_cn_report(
    concs: Mapping[str, ArrayLike | None], *, edition: str | Edition = DEFAULT_EDITION,
    lang: str = "en", saturate: bool = False,
) -> AqiReport:
    """One call for a Faust agent: AQI, primary pollutant(s), category and colour."""
    iaqis = iaqi_cn_all(concs, edition=edition, saturate=saturate)
    if not iaqis:
        raise ValueError("no pollutant given")
    aqi = aqi_cn(iaqis)
    return AqiReport(
        aqi, primary_pollutants_cn(iaqis), aqi_category_cn(aqi, lang), aqi_color_cn(aqi), iaqis
    )


def realtime_columns(means: Mapping[str, ArrayLike | None], *,
                     edition: str | Edition = DEFAULT_EDITION) -> dict[str, ArrayLike | None]:
    """The edition's real-time report columns filled from one set of means.

    ``means`` is keyed by pollutant (``pm25``, ``pm10``, ``o3``, ``co`` (mg/m³), ``so2``,
    ``no2``); each mean stands in for every averaging period the edition's real-time report
    asks for (2026: the six 1-hour means; 2012: also the O3 8-hour and PM 24-hour moving
    means). Why one helper: the streams' window means and the tests that check them must pick
    the same columns.
    """
    ed = cn_edition(edition)
    out: dict[str, ArrayLike | None] = {}
    for src, column in ed.realtime.items():
        pollutant = src.split("_", 1)[0]
        if means.get(pollutant) is not None:
            out[column] = means[pollutant]
    return out
