"""Traffic indices: flow, space-mean speed, occupancy, density, congestion index, HCM LOS."""

from __future__ import annotations

import numpy as np
import pytest

from urbanbrain.streams.indices import (
    DEFAULT_FREE_FLOW_KMH,
    congestion_index,
    density_vpkm,
    flow_vph,
    free_flow_speed,
    harmonic_mean_speed,
    level_of_service,
    occupancy_pct,
    space_mean_speed,
)


def test_flow_rate_from_counts() -> None:
    """25 vehicles in 30 s is 3000 veh/h; 12 in 60 s is 720 veh/h; a zero interval is NaN."""
    out = flow_vph([25, 12, 5], [30, 60, 0])
    np.testing.assert_allclose(out[:2], [3000, 720])
    assert np.isnan(out[2])


def test_space_mean_speed_is_harmonic() -> None:
    """Two cars at 30 and 90 km/h: time-mean 60, space-mean 2/(1/30 + 1/90) = 45 km/h."""
    assert harmonic_mean_speed([30.0, 90.0]) == pytest.approx(45.0)
    assert space_mean_speed is harmonic_mean_speed


def test_weighted_harmonic_mean_combines_intervals() -> None:
    """10 vehicles at 50 km/h and 30 at 100 km/h: 40 / (10/50 + 30/100) = 80 km/h."""
    assert harmonic_mean_speed([50.0, 100.0], weights=[10, 30]) == pytest.approx(80.0)


def test_harmonic_mean_ignores_invalid_and_is_vectorised() -> None:
    """Zero/negative/NaN speeds are dropped (a 0 would force the mean to 0); rows of a 2-D
    batch are separate sensors; a row with nothing valid gives NaN."""
    out = harmonic_mean_speed(np.array([[60.0, 40.0, 0.0], [np.nan, -5.0, np.nan]]))
    assert out[0] == pytest.approx(48.0)
    assert np.isnan(out[1])
    by_col = harmonic_mean_speed(np.array([[30.0, 10.0], [90.0, 10.0]]), axis=0)
    np.testing.assert_allclose(by_col, [45.0, 10.0])


def test_occupancy() -> None:
    out = occupancy_pct([6.0, 0.0, 70.0, 1.0], [60.0, 60.0, 60.0, 0.0])
    np.testing.assert_allclose(out[:3], [10.0, 0.0, 100.0])  # clipped at 100 %
    assert np.isnan(out[3])


def test_density_is_flow_over_speed() -> None:
    """q = k·v: 1800 veh/h at 60 km/h is 30 veh/km; speed 0 is undefined (use occupancy)."""
    out = density_vpkm([1800.0, 1000.0, 500.0], [60.0, 0.0, np.nan])
    assert out[0] == pytest.approx(30.0)
    assert np.isnan(out[1:]).all()


def test_default_free_flow_speeds() -> None:
    assert DEFAULT_FREE_FLOW_KMH == {"motorway": 100, "arterial": 60, "collector": 50, "local": 30}
    out = free_flow_speed(["motorway", "Arterial", "collector", "local", "alley"])
    np.testing.assert_array_equal(out[:4], [100, 60, 50, 30])
    assert np.isnan(out[4])
    assert free_flow_speed(["local"], overrides={"local": 40})[0] == 40


def test_congestion_index_by_road_class() -> None:
    """max(0, 1 - v/v_ff): arterial 30 of 60 → 0.5; motorway 120 of 100 → 0 (never
    negative); local 0 → 1 (standstill); unknown class or speed → NaN."""
    out = congestion_index(
        [30.0, 120.0, 0.0, 20.0, np.nan],
        road_class=["arterial", "motorway", "local", "unknown", "local"],
    )
    np.testing.assert_allclose(out[:3], [0.5, 0.0, 1.0])
    assert np.isnan(out[3:]).all()


def test_congestion_index_sensor_free_flow_wins_over_class() -> None:
    """The registry's free_flow_kmh (here 80) beats the arterial default 60; NaN or 0 in the
    registry falls back to the class default; overrides change the defaults."""
    out = congestion_index(
        [40.0, 40.0, 40.0],
        free_flow_kmh=[80.0, np.nan, 0.0],
        road_class=["arterial", "arterial", "arterial"],
    )
    np.testing.assert_allclose(out, [0.5, 1 / 3, 1 / 3])
    assert congestion_index(40.0, road_class="arterial", overrides={"arterial": 50}) == \
        pytest.approx(0.2)


def test_level_of_service_thresholds_hcm_exhibit_16_8() -> None:
    """HCM 6th ed. Exhibit 16-8: A > 85 %, B > 67 %, C > 50 %, D > 40 %, E > 30 %, else F.
    Each threshold itself belongs to the worse letter (85 % exactly is B)."""
    ff = 100.0
    speeds = [100, 85.01, 85, 67.01, 67, 50.01, 50, 40.01, 40, 30.01, 30, 0]
    expected = ["A", "A", "B", "B", "C", "C", "D", "D", "E", "E", "F", "F"]
    assert level_of_service(speeds, free_flow_kmh=ff).tolist() == expected


def test_level_of_service_exact_percent_boundaries_with_odd_free_flow() -> None:
    """51 of 60 km/h is exactly 85 % → B, though 51/60*100 in floats is 85.00000000000001."""
    out = level_of_service([51.0, 51.01, 18.0], free_flow_kmh=60.0)
    assert out.tolist() == ["B", "A", "F"]  # 18/60 = 30 % exactly → F


def test_level_of_service_by_class_vc_and_missing() -> None:
    """Road-class defaults apply; v/c > 1.0 is F whatever the speed; unknown is ''."""
    out = level_of_service(
        [95.0, 95.0, 25.0, np.nan, 20.0],
        road_class=["motorway", "motorway", "local", "local", "nowhere"],
        volume_to_capacity=[0.8, 1.05, 0.5, 0.5, 0.5],
    )
    assert out.tolist() == ["A", "F", "B", "", ""]
