"""Normal signals: determinism, daily/weekly cycles, correlations, speed."""

from __future__ import annotations

import time

import numpy as np

from urbanbrain.simulators.city import City
from urbanbrain.simulators.engine import Simulation
from urbanbrain.simulators.incidents import Schedule
from urbanbrain.simulators.record import frames_to_table
from urbanbrain.simulators.signals import SignalModel

MONDAY_LOCAL_MIDNIGHT = 1767567600000  # 2026-01-05T00:00+01:00 (a Monday)
HOUR = 3_600_000


def _sim(city: City, seed: int = 1, interval_s: float = 300.0) -> Simulation:
    return Simulation(city, seed, start_ms=MONDAY_LOCAL_MIDNIGHT, interval_s=interval_s,
                      schedule=Schedule.none(city))


def test_same_seed_same_readings() -> None:
    city = City.generate(3, "small")
    a = [f.values for f in _sim(city, 9).frames(20)]
    b = [f.values for f in _sim(city, 9).frames(20)]
    c = [f.values for f in _sim(city, 10).frames(20)]
    for fa, fb in zip(a, b):
        for k in fa:
            assert np.array_equal(fa[k], fb[k])
    assert any(not np.array_equal(a[-1][k], c[-1][k]) for k in a[-1])


def _city_flow_by_hour(days: int = 7) -> np.ndarray:
    """[day, hour] mean flow_vph over all loops."""
    city = City.generate(4, "small")
    sim = _sim(city, 4, interval_s=900.0)
    out = np.zeros((days, 24))
    for f in sim.frames(until_ms=MONDAY_LOCAL_MIDNIGHT + days * 24 * HOUR):
        k = (f.t_ms - MONDAY_LOCAL_MIDNIGHT) // HOUR
        out[k // 24, k % 24] += f.values["loop"][:, 3].mean() / 4
    return out


def test_rush_hours_and_quiet_weekends() -> None:
    flow = _city_flow_by_hour()
    weekdays, weekend = flow[:5], flow[5:]
    for day in weekdays:
        assert day[8] > 3 * day[3]  # morning rush vs 03:00
        assert day[17] > 3 * day[3]  # evening rush
        assert day[8] > day[11] and day[17] > day[21]
    assert weekend.sum(axis=1).max() < 0.8 * weekdays.sum(axis=1).min()
    assert weekend[:, 8].max() < 0.6 * weekdays[:, 8].min()


def test_no2_follows_traffic_of_its_district() -> None:
    city = City.generate(6, "small")
    sim = _sim(city, 6, interval_s=600.0)
    frames = list(sim.frames(until_ms=MONDAY_LOCAL_MIDNIGHT + 2 * 24 * HOUR))
    district = city.district_ids[1]
    loops = [i for i, s in enumerate(city.of_kind("loop")) if s.district == district]
    stations = [i for i, s in enumerate(city.of_kind("air_quality")) if s.district == district]
    flow = np.array([f.values["loop"][loops, 3].mean() for f in frames])
    no2 = np.array([f.values["air_quality"][stations, 2].mean() for f in frames])
    co = np.array([f.values["air_quality"][stations, 4].mean() for f in frames])
    assert np.corrcoef(flow, no2)[0, 1] > 0.5
    assert np.corrcoef(flow, co)[0, 1] > 0.5


def test_ozone_peaks_in_the_afternoon_and_water_demand_at_night_is_lowest() -> None:
    city = City.generate(8, "tiny")
    sim = _sim(city, 8, interval_s=600.0)
    o3 = np.zeros(24)
    water = np.zeros(24)
    power = np.zeros(24)
    for f in sim.frames(until_ms=MONDAY_LOCAL_MIDNIGHT + 3 * 24 * HOUR):
        h = (f.t_ms - MONDAY_LOCAL_MIDNIGHT) // HOUR % 24
        o3[h] += f.values["air_quality"][:, 3].mean()
        water[h] += f.values["water_main"][:, 1].mean()
        power[h] += f.values["substation"][:, 0].mean()
    assert 12 <= int(np.argmax(o3)) <= 17
    assert 1 <= int(np.argmin(water)) <= 4
    assert water[2:4].mean() < 0.6 * water[7:9].mean()  # night minimum 02:00-04:00
    assert 17 <= int(np.argmax(power)) <= 21


def test_values_respect_the_metric_catalogue() -> None:
    from urbanbrain.metrics import METRICS

    city = City.generate(1, "small")
    df = frames_to_table(city, _sim(city).frames(48))
    for metric, g in df.groupby("metric", observed=True):
        m = METRICS[str(metric)]
        assert g["value"].between(m.low, m.high).all(), metric


def test_a_tick_for_5000_sensors_takes_a_few_ms() -> None:
    city = City.generate(1, "large")
    model = SignalModel(city, 1)
    model.tick(MONDAY_LOCAL_MIDNIGHT)
    t = time.perf_counter()
    for k in range(50):
        model.tick(MONDAY_LOCAL_MIDNIGHT + k * 60_000)
    per_tick = (time.perf_counter() - t) / 50
    assert per_tick < 0.02  # typically ~1 ms; loose on purpose


def test_generate_100k_readings_quickly() -> None:
    city = City.generate(1, "large")
    sim = _sim(city, interval_s=60)
    t = time.perf_counter()
    df = frames_to_table(city, sim.frames(20))
    elapsed = time.perf_counter() - t
    assert df["sensor_id"].nunique() == 5000 and len(df) > 300_000  # 100k readings
    assert elapsed < 5.0  # typically ~0.1 s
