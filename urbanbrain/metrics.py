"""The canonical metric catalogue: one name per quantity, with its unit baked into the name.

Every decoder converts to these names and units, every rule and dashboard refers to them,
and validation checks readings against the plausible physical ranges given here. A value
outside its range is not "an extreme reading", it is a broken sensor or a unit mix-up, and
goes to the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    domain: str
    unit: str
    low: float
    high: float
    description: str


_CATALOGUE: tuple[Metric, ...] = (
    # traffic: loop detectors and intersection counters
    Metric("vehicle_count", "traffic", "veh", 0, 10_000, "vehicles counted in the interval"),
    Metric("flow_vph", "traffic", "veh/h", 0, 12_000, "vehicle flow"),
    Metric("occupancy_pct", "traffic", "%", 0, 100, "share of time the loop is occupied"),
    Metric("speed_kmh", "traffic", "km/h", 0, 250, "mean vehicle speed"),
    # environment: air quality, noise, weather
    Metric("pm25_ugm3", "environment", "µg/m³", 0, 2_000, "PM2.5 mass concentration"),
    Metric("pm10_ugm3", "environment", "µg/m³", 0, 5_000, "PM10 mass concentration"),
    Metric("no2_ugm3", "environment", "µg/m³", 0, 5_000, "NO2 concentration"),
    Metric("o3_ugm3", "environment", "µg/m³", 0, 2_000, "O3 concentration"),
    Metric("so2_ugm3", "environment", "µg/m³", 0, 10_000, "SO2 concentration"),
    Metric("co_mgm3", "environment", "mg/m³", 0, 500, "CO concentration"),
    Metric("noise_dba", "environment", "dB(A)", 0, 160, "A-weighted equivalent sound level"),
    Metric("temperature_c", "environment", "°C", -80, 70, "air temperature"),
    Metric("humidity_pct", "environment", "%", 0, 100, "relative humidity"),
    Metric("wind_speed_ms", "environment", "m/s", 0, 120, "wind speed"),
    Metric("rain_mmh", "environment", "mm/h", 0, 500, "precipitation intensity"),
    # water: mains and treatment
    Metric("pressure_kpa", "water", "kPa", 0, 2_500, "main pressure (gauge)"),
    Metric("flow_ls", "water", "L/s", 0, 20_000, "volumetric flow"),
    Metric("chlorine_mgl", "water", "mg/L", 0, 20, "free chlorine"),
    Metric("turbidity_ntu", "water", "NTU", 0, 4_000, "turbidity"),
    Metric("ph", "water", "pH", 0, 14, "acidity"),
    # power: substations and feeders
    Metric("load_mw", "power", "MW", -2_000, 2_000, "active power (negative = export)"),
    Metric("voltage_kv", "power", "kV", 0, 800, "line voltage"),
    Metric("voltage_pu", "power", "p.u.", 0, 2, "voltage relative to nominal"),
    Metric("frequency_hz", "power", "Hz", 40, 70, "grid frequency"),
    Metric("current_a", "power", "A", 0, 100_000, "current"),
)

METRICS: dict[str, Metric] = {m.name: m for m in _CATALOGUE}


def metric(name: str) -> Metric | None:
    """The catalogue entry for ``name``, or None if the name is not canonical."""
    return METRICS.get(name)


def metrics_of(domain: str) -> list[Metric]:
    return [m for m in _CATALOGUE if m.domain == domain]
