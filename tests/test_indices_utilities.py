"""Water (pressure stats, minimum night flow, night-flow ratio) and power indices."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from urbanbrain.streams.indices import (
    daily_mean_flow,
    frequency_deviation_hz,
    load_factor,
    minimum_night_flow,
    night_flow_ratio,
    pressure_stats,
    voltage_deviation_pct,
)

# --- water -----------------------------------------------------------------------------


def test_pressure_stats_nan_aware_and_vectorised() -> None:
    p = np.array([[300.0, 310.0, 320.0, np.nan], [np.nan] * 4, [250.0, 250.0, 250.0, 250.0]])
    s = pressure_stats(p)
    np.testing.assert_allclose(s["min"][[0, 2]], [300, 250])
    np.testing.assert_allclose(s["mean"][[0, 2]], [310, 250])
    np.testing.assert_allclose(s["max"][[0, 2]], [320, 250])
    np.testing.assert_allclose(s["std"][[0, 2]], [np.sqrt(200 / 3), 0])  # population std
    assert all(np.isnan(s[k][1]) for k in ("min", "mean", "max", "std"))


def _day_of_flow(local_day: str, tz: str, night: float, day: float) -> tuple[np.ndarray, np.ndarray]:
    """15-minute samples over one local day: ``night`` in 02:00-04:00 local, ``day`` else."""
    idx = pd.date_range(f"{local_day} 00:00", periods=96, freq="15min", tz=tz)
    flow = np.where((idx.hour >= 2) & (idx.hour < 4), night, day)
    ts_ms = idx.tz_convert("UTC").as_unit("ms").asi8  # epoch ms, as readings carry
    return ts_ms, flow


def test_minimum_night_flow_uses_local_time() -> None:
    """Flow 10 L/s at 02:00-04:00 Berlin time (00:00-02:00 UTC in summer), 100 otherwise.
    MNF in Berlin time is 10; the same samples read in UTC put 04:00-06:00 Berlin (100) in
    the window, so the timezone parameter matters."""
    ts, flow = _day_of_flow("2024-06-12", "Europe/Berlin", night=10.0, day=100.0)
    mnf = minimum_night_flow(ts, flow, tz="Europe/Berlin")
    assert mnf.to_dict() == {dt.date(2024, 6, 12): 10.0}
    utc = minimum_night_flow(ts, flow, tz="UTC")
    assert utc[dt.date(2024, 6, 12)] == 100.0


def test_night_flow_ratio() -> None:
    """Daily mean = (8 × 10 + 88 × 100) / 96 = 92.5; ratio = 10 / 92.5."""
    ts, flow = _day_of_flow("2024-06-12", "Europe/Berlin", night=10.0, day=100.0)
    daily = daily_mean_flow(ts, flow, tz="Europe/Berlin")
    assert daily[dt.date(2024, 6, 12)] == pytest.approx(92.5)
    ratio = night_flow_ratio(ts, flow, tz="Europe/Berlin")
    assert ratio[dt.date(2024, 6, 12)] == pytest.approx(10 / 92.5)


def test_leak_raises_night_flow_ratio_over_several_days() -> None:
    """Day 2 has a 30 L/s leak on top of demand: its MNF and ratio rise, day 1 stays put."""
    ts1, f1 = _day_of_flow("2024-06-12", "America/New_York", night=10.0, day=100.0)
    ts2, f2 = _day_of_flow("2024-06-13", "America/New_York", night=10.0, day=100.0)
    ts = np.concatenate([ts1, ts2])
    flow = np.concatenate([f1, f2 + 30.0])
    mnf = minimum_night_flow(ts, flow, tz="America/New_York")
    assert mnf.tolist() == [10.0, 40.0]
    ratio = night_flow_ratio(ts, flow, tz="America/New_York")
    assert ratio.iloc[1] > 3 * ratio.iloc[0]


def test_minimum_night_flow_on_spring_forward_night() -> None:
    """Europe/Berlin 2024-03-31: 02:00-03:00 local does not exist; only 03:00-04:00 counts.
    Flow 5 before 03:00 UTC+1, 20 in 03:00-04:00 local: MNF = 20 (the four 03:xx samples)."""
    idx = pd.date_range("2024-03-31 00:00", "2024-03-31 23:45", freq="15min", tz="Europe/Berlin")
    flow = np.where(idx.hour == 3, 20.0, 5.0)
    ts = idx.tz_convert("UTC").as_unit("ms").asi8
    mnf = minimum_night_flow(ts, flow, tz="Europe/Berlin")
    assert mnf[dt.date(2024, 3, 31)] == 20.0


def test_night_flow_accepts_datetimes_and_skips_nan() -> None:
    """Timestamps may be datetime64 (naive = UTC); NaN flows are ignored."""
    idx = pd.date_range("2024-01-10", periods=96, freq="15min")  # naive UTC
    flow = np.where((idx.hour >= 2) & (idx.hour < 4), 8.0, 50.0)
    flow[9] = np.nan  # 02:15
    mnf = minimum_night_flow(idx.to_numpy(), flow, tz="UTC")
    assert mnf[dt.date(2024, 1, 10)] == 8.0


def test_night_flow_ratio_zero_daily_mean_is_nan() -> None:
    ts, flow = _day_of_flow("2024-06-12", "UTC", night=0.0, day=0.0)
    assert np.isnan(night_flow_ratio(ts, flow, tz="UTC").iloc[0])


# --- power -----------------------------------------------------------------------------


def test_voltage_deviation_from_kv_with_nominal_per_sensor() -> None:
    """11.55 kV on an 11 kV feeder is +5 %; 104.5 kV on 110 kV is -5 %; 0 nominal is NaN."""
    out = voltage_deviation_pct([11.55, 104.5, 10.0], [11.0, 110.0, 0.0])
    np.testing.assert_allclose(out[:2], [5.0, -5.0])
    assert np.isnan(out[2])


def test_voltage_deviation_from_per_unit_and_fallback() -> None:
    np.testing.assert_allclose(voltage_deviation_pct(voltage_pu=[1.0, 0.9, 1.1]), [0, -10, 10])
    # kV without a nominal falls back to the p.u. reading where one exists
    out = voltage_deviation_pct([11.55, np.nan], [11.0, 11.0], voltage_pu=[1.2, 0.95])
    np.testing.assert_allclose(out, [5.0, -5.0])


def test_frequency_deviation() -> None:
    np.testing.assert_allclose(frequency_deviation_hz([50.0, 49.8, 50.2]), [0.0, -0.2, 0.2])
    assert frequency_deviation_hz(59.95, nominal_hz=60.0) == pytest.approx(-0.05)


def test_load_factor() -> None:
    """Mean 50 over peak 100 → 0.5; flat load → 1; NaN ignored; export-only feeder → NaN."""
    loads = np.array([[0.0, 50.0, 100.0, 50.0], [3.0, 3.0, np.nan, 3.0], [-5.0, -2.0, -1.0, -3.0]])
    out = load_factor(loads)
    np.testing.assert_allclose(out[:2], [0.5, 1.0])
    assert np.isnan(out[2])
