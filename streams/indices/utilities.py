"""Water and power indices from window aggregates (numpy; pandas for the local-time windows).

Sources: minimum night flow as a leakage indicator — IWA Water Loss Task Force / UK Water
Industry Research "Managing Leakage" Report E (1994), and Farley & Trow, *Losses in Water
Distribution Networks* (IWA, 2003): at night legitimate demand is lowest, so the flow into a
district metered area is mostly leakage; we take the mean flow of the 02:00-04:00 local window.
Power: EN 50160 expresses supply voltage and frequency variations as deviations from nominal
(voltage in % of nominal, frequency in Hz from 50 Hz); load factor = average / peak load.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ._common import FloatArray, as_float

# --- water ---------------------------------------------------------------------------------


def pressure_stats(pressure_kpa: ArrayLike, axis: int = -1) -> dict[str, FloatArray]:
    """min, mean, max and (population, ddof=0) std of pressure along ``axis``, NaN-aware.

    Why: a burst shows as a pressure drop (min, mean), surges and a failing PRV as spread
    (max, std). All-NaN slices give NaN, never a warning.
    """
    p = as_float(pressure_kpa)
    ok = np.isfinite(p)
    n = ok.sum(axis=axis)
    filled0 = np.where(ok, p, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, filled0.sum(axis=axis) / n, np.nan)
        dev = np.where(ok, p - np.expand_dims(mean, axis), 0.0)
        std = np.where(n > 0, np.sqrt((dev**2).sum(axis=axis) / n), np.nan)
    mn = np.where(n > 0, np.where(ok, p, np.inf).min(axis=axis), np.nan)
    mx = np.where(n > 0, np.where(ok, p, -np.inf).max(axis=axis), np.nan)
    return {"min": mn, "mean": mean, "max": mx, "std": std}


def _local_series(ts: ArrayLike, values: ArrayLike, tz: str) -> pd.Series:
    """Values indexed by local time; ``ts`` is epoch ms (ints) or datetime-like (naive = UTC)."""
    t = np.asarray(ts)
    if np.issubdtype(t.dtype, np.number):
        idx = pd.to_datetime(t.astype(np.int64), unit="ms", utc=True)
    else:
        idx = pd.to_datetime(t, utc=True)
    s = pd.Series(as_float(values).ravel(), index=idx.tz_convert(tz))
    return s[np.isfinite(s.to_numpy())]


def minimum_night_flow(
    ts: ArrayLike,
    flow: ArrayLike,
    tz: str = "UTC",
    start_hour: int = 2,
    end_hour: int = 4,
) -> pd.Series:
    """Minimum night flow (MNF) per local night: mean flow in [start_hour, end_hour) local.

    Returns a Series indexed by local calendar date (named ``date``); nights without samples
    are absent. Why local time: demand follows the clock on the wall, so 02:00-04:00 must be
    local, DST included (on a spring-forward night the window may be one hour shorter).
    Assumes evenly spaced samples (the mean of samples stands for the time average).
    """
    s = _local_series(ts, flow, tz)
    hours = s.index.hour
    night = s[(hours >= start_hour) & (hours < end_hour)]
    out = night.groupby(night.index.date).mean()
    out.index.name = "date"
    return out.rename("mnf")


def daily_mean_flow(ts: ArrayLike, flow: ArrayLike, tz: str = "UTC") -> pd.Series:
    """Mean flow per local calendar date (Series indexed by ``date``)."""
    s = _local_series(ts, flow, tz)
    out = s.groupby(s.index.date).mean()
    out.index.name = "date"
    return out.rename("daily_mean")


def night_flow_ratio(
    ts: ArrayLike,
    flow: ArrayLike,
    tz: str = "UTC",
    start_hour: int = 2,
    end_hour: int = 4,
) -> pd.Series:
    """MNF / daily mean flow per local date: a leak indicator independent of the area's size.

    A healthy district sits well below 1 (night demand is small); a rising ratio means flow
    that does not sleep, i.e. leakage. NaN where the daily mean is not positive; dates
    without a night window are absent.
    """
    mnf = minimum_night_flow(ts, flow, tz, start_hour, end_hour)
    daily = daily_mean_flow(ts, flow, tz).reindex(mnf.index)
    ratio = mnf / daily.where(daily > 0)
    return ratio.rename("night_flow_ratio")


# --- power ---------------------------------------------------------------------------------


def voltage_deviation_pct(
    voltage_kv: ArrayLike | None = None,
    nominal_kv: ArrayLike | None = None,
    *,
    voltage_pu: ArrayLike | None = None,
) -> FloatArray:
    """Voltage deviation from nominal in % (EN 50160 style): 100 · (V - V_n) / V_n.

    Give either ``voltage_kv`` with the sensor's ``nominal_kv`` (broadcast, e.g. one per
    sensor) or ``voltage_pu`` (per unit, nominal = 1). Where both kV and p.u. are given, the
    kV value wins where it is computable. NaN for a missing or non-positive nominal.
    """
    pu_dev = 100.0 * (as_float(voltage_pu) - 1.0)
    if voltage_kv is None:
        return np.asarray(pu_dev)
    v, vn = as_float(voltage_kv), as_float(nominal_kv)
    with np.errstate(invalid="ignore", divide="ignore"):
        kv_dev = np.where(vn > 0, 100.0 * (v - vn) / vn, np.nan)
    return np.where(np.isfinite(kv_dev), kv_dev, pu_dev)


def frequency_deviation_hz(frequency_hz: ArrayLike, nominal_hz: float = 50.0) -> FloatArray:
    """Frequency deviation f - f_n in Hz (nominal 50 Hz; pass 60.0 for 60 Hz grids).

    Why: balance between generation and load shows directly as frequency deviation
    (EN 50160: ±1 % for 99.5 % of a year on interconnected systems).
    """
    return as_float(frequency_hz) - float(nominal_hz)


def load_factor(load_mw: ArrayLike, axis: int = -1) -> FloatArray:
    """Load factor = mean load / peak load along ``axis`` (NaN-aware), in 0..1.

    Why: a low load factor means a peaky demand that the network must be sized for. NaN
    where the peak is not positive (no consumption, or an exporting feeder).
    """
    p = as_float(load_mw)
    ok = np.isfinite(p)
    n = ok.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(ok, p, 0.0).sum(axis=axis) / n, np.nan)
        peak = np.where(n > 0, np.where(ok, p, -np.inf).max(axis=axis), np.nan)
        return np.where(peak > 0, mean / peak, np.nan)
