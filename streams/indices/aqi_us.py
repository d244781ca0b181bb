"""US EPA Air Quality Index (AQI), May 2024 revision, vectorised over numpy arrays.

Source: U.S. EPA, *Technical Assistance Document for the Reporting of Daily Air Quality - the
Air Quality Index (AQI)*, EPA-454/B-24-002, May 2024 ("the TAD"): section IV "Calculating the
AQI" and Table 6 "Breakpoints for the AQI". It implements 40 CFR Part 58 Appendix G as amended
by the PM NAAQS reconsideration (89 FR 16202, 6 March 2024, effective 6 May 2024), which moved
the PM2.5 breakpoints (Good 0.0-9.0 µg/m³, ..., Hazardous 225.5-325.4) and merged the two
Hazardous rows (301-400, 401-500) of every pollutant into one 301-500 row.

The TAD's recipe, which this module follows exactly:
  a. truncate each concentration to the decimals of its table (O3 ppm 3, PM2.5 and CO 1,
     PM10, SO2 and NO2 0); truncation (not rounding) is what makes the tables gap-free;
  b. find the row with BP_lo <= C <= BP_hi;
  c. I = (I_hi - I_lo) / (BP_hi - BP_lo) * (C - BP_lo) + I_lo;
  d. round I to the nearest integer (halves up).
Steps c-d run in exact integer arithmetic on the truncated concentration, so a boundary such
as 0.078 ppm O3 -> 125.5 -> 126 never falls to 125 through binary floating point.

Our canonical inputs are mass concentrations (no2_ugm3, o3_ugm3, so2_ugm3, co_mgm3); the
tables are in ppb/ppm, so they are converted at 25 °C and 1 atm (molar volume 24.45 L/mol),
the reference conditions of the US NAAQS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ._common import AqiReport, FloatArray, StrArray, as_float, names_where, nanmax_of, pick

# --- unit conversion ---------------------------------------------------------------------

MOLAR_VOLUME_L: float = 24.45
"""Molar volume of an ideal gas at 25 °C (298.15 K) and 1 atm (101.325 kPa), L/mol."""

MOLECULAR_WEIGHT: dict[str, float] = {
    "no2": 46.0055,  # g/mol
    "o3": 47.9982,
    "so2": 64.066,
    "co": 28.010,
}
"""Molecular weights (g/mol) used to turn mass concentrations into mixing ratios."""


def ugm3_to_ppb(conc_ugm3: ArrayLike, gas: str) -> FloatArray:
    """µg/m³ -> ppb at 25 °C, 1 atm: ppb = µg/m³ × 24.45 / MW.

    Why: the EPA tables are volume mixing ratios; our sensors report mass concentrations.
    """
    return as_float(conc_ugm3) * MOLAR_VOLUME_L / MOLECULAR_WEIGHT[gas]


def mgm3_to_ppm(conc_mgm3: ArrayLike, gas: str) -> FloatArray:
    """mg/m³ -> ppm at 25 °C, 1 atm (same factor as µg/m³ -> ppb: 24.45 / MW)."""
    return as_float(conc_mgm3) * MOLAR_VOLUME_L / MOLECULAR_WEIGHT[gas]


def ugm3_to_ppm(conc_ugm3: ArrayLike, gas: str) -> FloatArray:
    """µg/m³ -> ppm at 25 °C, 1 atm (ozone's tables are in ppm)."""
    return ugm3_to_ppb(conc_ugm3, gas) / 1000.0


# --- breakpoint tables (TAD May 2024, Table 6) -------------------------------------------


@dataclass(frozen=True)
class Table:
    """One averaging period of one pollutant: rows (C_lo, C_hi, I_lo, I_hi) in table units.

    ``decimals`` is the truncation of step a; ``hazardous_top`` says the last row is the
    301-500 row, whose line the TAD lets us extend for "Beyond the AQI" values.
    """

    key: str
    unit: str
    decimals: int
    rows: tuple[tuple[float, float, int, int], ...]
    hazardous_top: bool

    def int_rows(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Breakpoints in integer units of the truncation step (as exact floats)."""
        f = 10.0**self.decimals
        r = np.array(self.rows, dtype=np.float64)
        return np.round(r[:, 0] * f), np.round(r[:, 1] * f), r[:, 2], r[:, 3]


TABLES: dict[str, Table] = {
    t.key: t
    for t in (
        Table("pm25_24h", "µg/m³", 1, (
            (0.0, 9.0, 0, 50), (9.1, 35.4, 51, 100), (35.5, 55.4, 101, 150),
            (55.5, 125.4, 151, 200), (125.5, 225.4, 201, 300), (225.5, 325.4, 301, 500),
        ), True),
        Table("pm10_24h", "µg/m³", 0, (
            (0, 54, 0, 50), (55, 154, 51, 100), (155, 254, 101, 150),
            (255, 354, 151, 200), (355, 424, 201, 300), (425, 604, 301, 500),
        ), True),
        # 8-hour O3 defines AQI 0-300 only; above 0.200 ppm the 1-hour value is used.
        Table("o3_8h", "ppm", 3, (
            (0.000, 0.054, 0, 50), (0.055, 0.070, 51, 100), (0.071, 0.085, 101, 150),
            (0.086, 0.105, 151, 200), (0.106, 0.200, 201, 300),
        ), False),
        # 1-hour O3 defines AQI 101 and up only (blank cells below 0.125 ppm).
        Table("o3_1h", "ppm", 3, (
            (0.125, 0.164, 101, 150), (0.165, 0.204, 151, 200), (0.205, 0.404, 201, 300),
            (0.405, 0.604, 301, 500),
        ), True),
        Table("co_8h", "ppm", 1, (
            (0.0, 4.4, 0, 50), (4.5, 9.4, 51, 100), (9.5, 12.4, 101, 150),
            (12.5, 15.4, 151, 200), (15.5, 30.4, 201, 300), (30.5, 50.4, 301, 500),
        ), True),
        # 1-hour SO2 defines AQI 0-200 only; from 305 ppb the 24-hour value decides.
        Table("so2_1h", "ppb", 0, (
            (0, 35, 0, 50), (36, 75, 51, 100), (76, 185, 101, 150), (186, 304, 151, 200),
        ), False),
        Table("so2_24h", "ppb", 0, ((305, 604, 201, 300), (605, 1004, 301, 500)), True),
        Table("no2_1h", "ppb", 0, (
            (0, 53, 0, 50), (54, 100, 51, 100), (101, 360, 101, 150), (361, 649, 151, 200),
            (650, 1249, 201, 300), (1250, 2049, 301, 500),
        ), True),
    )
}

_EPS = 1e-9  # in units of the truncation step: absorbs binary noise such as 35.9*10 = 358.99…


def _table(key: str) -> Table:
    try:
        return TABLES[key]
    except KeyError:
        raise KeyError(f"unknown US AQI table {key!r}; known: {sorted(TABLES)}") from None


def _units(table: Table, conc: ArrayLike) -> FloatArray:
    """Concentration truncated (TAD step a) and expressed in integer truncation steps."""
    c = as_float(conc) * 10.0**table.decimals
    with np.errstate(invalid="ignore"):
        return np.floor(c + _EPS)


def truncate_us(key: str, conc: ArrayLike) -> FloatArray:
    """TAD step a: truncate to the table's decimals (O3 0.001 ppm, PM2.5/CO 0.1, others 1)."""
    t = _table(key)
    return _units(t, conc) / 10.0**t.decimals


def sub_index_us(key: str, conc: ArrayLike, *, beyond_aqi: bool = False) -> FloatArray:
    """The AQI sub-index of one table (``key`` in TABLES) for concentrations in its unit.

    NaN where the input is missing or outside the table (negative, in a blank cell such as
    1-hour O3 below 0.125 ppm, or above the top row). With ``beyond_aqi`` the Hazardous row's
    line is extended above its top (AQI > 500, "Beyond the AQI" in the TAD's FAQ) instead.
    """
    t = _table(key)
    c = _units(t, conc)
    lo, hi, ilo, ihi = t.int_rows()
    row = np.searchsorted(lo, c, side="right") - 1
    r = np.clip(row, 0, len(lo) - 1)
    with np.errstate(invalid="ignore"):
        inside = (row >= 0) & (c <= hi[r])
        if beyond_aqi and t.hazardous_top:
            inside |= c > hi[-1]
        valid = np.isfinite(c) & inside
        span = hi[r] - lo[r]
        # round-half-up of I_lo + (I_hi - I_lo) * (C - BP_lo) / span, in integers
        index = ilo[r] + np.floor_divide(2.0 * (ihi[r] - ilo[r]) * (c - lo[r]) + span, 2.0 * span)
    return np.where(valid, index, np.nan)


def sub_index_us_o3(
    o3_8h_ppm: ArrayLike | None, o3_1h_ppm: ArrayLike | None = None, *, beyond_aqi: bool = False
) -> FloatArray:
    """Ozone sub-index: the larger of the 8-hour and the 1-hour index (TAD Table 6 notes).

    8-hour values define AQI 0-300; above 0.200 ppm only the 1-hour value defines the index
    (NaN if it is missing). 1-hour values define AQI 101-500 and are reported where they are
    more precautionary than the 8-hour one.
    """
    i8 = sub_index_us("o3_8h", as_float(o3_8h_ppm))
    i1 = sub_index_us("o3_1h", as_float(o3_1h_ppm), beyond_aqi=beyond_aqi)
    return np.fmax(i8, i1)


def sub_index_us_so2(
    so2_1h_ppb: ArrayLike | None, so2_24h_ppb: ArrayLike | None = None, *, beyond_aqi: bool = False
) -> FloatArray:
    """SO2 sub-index following the TAD's "Calculating AQI values for SO2".

    1-hour values up to 304 ppb use the 1-hour rows (AQI 0-200). From 305 ppb the 24-hour
    average decides: at or above 305 ppb the 24-hour rows (AQI 201-500), below it AQI 200.
    A 24-hour value above the table (> 1004 ppb) is Beyond the AQI like any other pollutant's:
    NaN, or the Hazardous line extended with ``beyond_aqi`` (1048 ppb → 522). Only a *missing*
    (or negative, i.e. invalid) 24-hour value leaves a 1-hour value >= 305 ppb at 200, the
    rule's lower bound. Only a 24-hour value (no 1-hour) gives its 24-hour row, or NaN below
    305 ppb.
    """
    c1 = _units(TABLES["so2_1h"], as_float(so2_1h_ppb))
    c24 = _units(TABLES["so2_24h"], as_float(so2_24h_ppb))
    i1 = sub_index_us("so2_1h", as_float(so2_1h_ppb))
    i24 = sub_index_us("so2_24h", as_float(so2_24h_ppb), beyond_aqi=beyond_aqi)
    c1, c24, i1, i24 = np.broadcast_arrays(c1, c24, i1, i24)
    with np.errstate(invalid="ignore"):
        high = c1 >= 305
        # the 24-hour rows decide wherever the 24-hour value is 305 ppb or more, on the table
        # or beyond it (i24 is then NaN or the extended line); 200 below 305 or when missing
        on_24h = np.isfinite(c24) & (c24 >= 305)
    out = np.where(high, np.where(on_24h, i24, 200.0), i1)
    return np.where(np.isnan(c1), i24, out)


# --- several pollutants ------------------------------------------------------------------


def sub_indices_us(
    *,
    pm25_24h_ugm3: ArrayLike | None = None,
    pm10_24h_ugm3: ArrayLike | None = None,
    o3_8h_ppm: ArrayLike | None = None,
    o3_1h_ppm: ArrayLike | None = None,
    co_8h_ppm: ArrayLike | None = None,
    so2_1h_ppb: ArrayLike | None = None,
    so2_24h_ppb: ArrayLike | None = None,
    no2_1h_ppb: ArrayLike | None = None,
    beyond_aqi: bool = False,
) -> dict[str, FloatArray]:
    """Sub-index per pollutant (keys pm25, pm10, o3, co, so2, no2) for the inputs given.

    Inputs are in the TAD's own units and averaging periods; pollutants left as None are
    absent from the result (not NaN), so they never become a "primary pollutant".
    """
    out: dict[str, FloatArray] = {}
    if pm25_24h_ugm3 is not None:
        out["pm25"] = sub_index_us("pm25_24h", pm25_24h_ugm3, beyond_aqi=beyond_aqi)
    if pm10_24h_ugm3 is not None:
        out["pm10"] = sub_index_us("pm10_24h", pm10_24h_ugm3, beyond_aqi=beyond_aqi)
    if o3_8h_ppm is not None or o3_1h_ppm is not None:
        out["o3"] = sub_index_us_o3(o3_8h_ppm, o3_1h_ppm, beyond_aqi=beyond_aqi)
    if co_8h_ppm is not None:
        out["co"] = sub_index_us("co_8h", co_8h_ppm, beyond_aqi=beyond_aqi)
    if so2_1h_ppb is not None or so2_24h_ppb is not None:
        out["so2"] = sub_index_us_so2(so2_1h_ppb, so2_24h_ppb, beyond_aqi=beyond_aqi)
    if no2_1h_ppb is not None:
        out["no2"] = sub_index_us("no2_1h", no2_1h_ppb, beyond_aqi=beyond_aqi)
    return out


def _opt(
    convert: Callable[[ArrayLike, str], FloatArray], x: ArrayLike | None, gas: str
) -> FloatArray | None:
    """``convert(x, gas)``, keeping an absent input absent."""
    return None if x is None else convert(x, gas)


def sub_indices_us_from_mass(
    *,
    pm25_24h_ugm3: ArrayLike | None = None,
    pm10_24h_ugm3: ArrayLike | None = None,
    o3_8h_ugm3: ArrayLike | None = None,
    o3_1h_ugm3: ArrayLike | None = None,
    co_8h_mgm3: ArrayLike | None = None,
    so2_1h_ugm3: ArrayLike | None = None,
    so2_24h_ugm3: ArrayLike | None = None,
    no2_1h_ugm3: ArrayLike | None = None,
    beyond_aqi: bool = False,
) -> dict[str, FloatArray]:
    """:func:`sub_indices_us` from our canonical mass units (µg/m³; CO in mg/m³)."""
    return sub_indices_us(
        pm25_24h_ugm3=pm25_24h_ugm3,
        pm10_24h_ugm3=pm10_24h_ugm3,
        o3_8h_ppm=_opt(ugm3_to_ppm, o3_8h_ugm3, "o3"),
        o3_1h_ppm=_opt(ugm3_to_ppm, o3_1h_ugm3, "o3"),
        co_8h_ppm=_opt(mgm3_to_ppm, co_8h_mgm3, "co"),
        so2_1h_ppb=_opt(ugm3_to_ppb, so2_1h_ugm3, "so2"),
        so2_24h_ppb=_opt(ugm3_to_ppb, so2_24h_ugm3, "so2"),
        no2_1h_ppb=_opt(ugm3_to_ppb, no2_1h_ugm3, "no2"),
        beyond_aqi=beyond_aqi,
    )


def aqi_us(sub_indices: Mapping[str, ArrayLike]) -> FloatArray:
    """Overall AQI: the maximum sub-index (Appendix G 2.2.1 d), NaN where none is known."""
    return nanmax_of(sub_indices)


def primary_pollutant_us(sub_indices: Mapping[str, ArrayLike]) -> StrArray:
    """The pollutant(s) with the highest sub-index (';'-joined on ties), '' where no AQI."""
    return names_where(sub_indices, aqi_us(sub_indices))


# --- categories ----------------------------------------------------------------------------

CATEGORIES: tuple[str, ...] = (
    "Good",
    "Moderate",
    "Unhealthy for Sensitive Groups",
    "Unhealthy",
    "Very Unhealthy",
    "Hazardous",
)
"""The six category descriptors of Appendix G / TAD Table 1."""

COLORS: tuple[str, ...] = ("#00E400", "#FFFF00", "#FF7E00", "#FF0000", "#8F3F97", "#7E0023")
"""TAD Table 2 standard colours: green (0,228,0), yellow (255,255,0), orange (255,126,0),
red (255,0,0), purple (143,63,151), maroon (126,0,35)."""

_UPPER = np.array([50, 100, 150, 200, 300])


def _level(aqi: ArrayLike) -> FloatArray:
    """Category number 0..5 (Hazardous includes Beyond the AQI), NaN for a missing AQI."""
    a = as_float(aqi)
    lvl = np.searchsorted(_UPPER, np.where(np.isfinite(a), a, 0), side="left").astype(float)
    return np.where(np.isfinite(a) & (a >= 0), lvl, np.nan)


def aqi_category_us(aqi: ArrayLike) -> StrArray:
    """Category descriptor for an AQI value ('' for NaN): 0-50 Good ... 301+ Hazardous."""
    return pick(_level(aqi), CATEGORIES)


def aqi_color_us(aqi: ArrayLike) -> StrArray:
    """Standard category colour as hex '#RRGGBB' ('' for NaN)."""
    return pick(_level(aqi), COLORS)


def aqi_us_report(*, beyond_aqi: bool = False, **mass_concs: ArrayLike | None) -> AqiReport:
    """One call for a Faust agent: AQI, primary pollutant, category and colour from window
    aggregates in canonical mass units (keyword names as :func:`sub_indices_us_from_mass`)."""
    subs = sub_indices_us_from_mass(beyond_aqi=beyond_aqi, **mass_concs)  # type: ignore[arg-type]
    if not subs:
        raise ValueError("no pollutant given")
    aqi = aqi_us(subs)
    return AqiReport(aqi, primary_pollutant_us(subs), aqi_category_us(aqi), aqi_color_us(aqi), subs)
