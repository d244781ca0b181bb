"""Which attribute of which Smart Data Model becomes which catalogue metric, in which unit.

The table is the decoder's whole knowledge of FIWARE: adding a model is adding an entry.
Attribute names match case-insensitively (the models have renamed ``CO`` to ``co``, ``NO2``
to ``no2`` over the years and both spellings are in the field). ``unit`` is the unit the
model documents for key-values payloads, which carry no ``unitCode``; ``None`` means the
model leaves it open, so the attribute is only used when its ``unitCode`` says what it is.
Units are the internal symbols of :mod:`urbanbrain.ingest.units`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

# How a structured value (ThreePhaseAcMeasurement's {"L1": .., "L2": .., "L3": ..}) is reduced.
SCALAR = "scalar"
SUM = "sum"
MEAN = "mean"

PHASES = ("L1", "L2", "L3")
LINES = ("L12", "L23", "L31")


@dataclass(frozen=True, slots=True)
class Field:
    attrs: tuple[str, ...]  # attribute names (first present wins), case-insensitive
    metric: str  # canonical metric
    unit: str | None  # unit when the payload gives no unitCode; None = unitCode required
    reduce: str = SCALAR
    keys: tuple[str, ...] = ()  # members of a structured value that are reduced
    scale: float = 1.0  # applied after reduction, before the unit conversion


@dataclass(frozen=True, slots=True)
class Model:
    domain: str
    fields: tuple[Field, ...]
    #: attributes kept in DecodedReading.extra (measured, but not in our catalogue)
    extras: tuple[str, ...] = ()
    #: per-entity adjustment: metric → unit to assume instead (or SKIP to drop the field)
    adjust: Callable[[str], dict[str, str]] | None = None
    #: vehicles counted in the observation period → flow_vph when the period is known
    flow_from_count: bool = False


SKIP = "__skip__"

_BOATS = frozenset({"ship", "yacht", "boat", "yatching", "sailboat", "vessel"})
_PEOPLE = frozenset({"people", "person", "pedestrian", "pedestrians"})


def _item_flow(item_type: str) -> dict[str, str]:
    """ItemFlowObserved: speed is km/h for vehicles and people, knots for boats (model
    description of averageSpeed); people are not vehicles, so no vehicle_count for them."""
    t = item_type.lower()
    out: dict[str, str] = {}
    if t in _BOATS:
        out["speed_kmh"] = "kn"
    if t in _PEOPLE:
        out["vehicle_count"] = SKIP
    return out


_POWER = (
    Field(("totalActivePower",), "load_mw", "W"),
    Field(("activePower",), "load_mw", "W", SUM, PHASES),
    Field(("frequency",), "frequency_hz", "Hz"),
    Field(("phaseToPhaseVoltage",), "voltage_kv", "V", MEAN, LINES),
    # line voltage from phase voltage, balanced three-phase system: V_LL = √3 · V_LN
    Field(("phaseVoltage",), "voltage_kv", "V", MEAN, PHASES, math.sqrt(3.0)),
    Field(("current",), "current_a", "A", MEAN, PHASES),
)

MODELS: dict[str, Model] = {
    "TrafficFlowObserved": Model(
        "traffic",
        (
            Field(("intensity",), "vehicle_count", "count"),
            Field(("occupancy",), "occupancy_pct", "ratio"),
            Field(("averageVehicleSpeed",), "speed_kmh", "km/h"),
        ),
        extras=("laneId", "laneDirection"),
        flow_from_count=True,
    ),
    "ItemFlowObserved": Model(
        "traffic",
        (
            Field(("intensity",), "vehicle_count", "count"),
            Field(("occupancy",), "occupancy_pct", "ratio"),
            Field(("averageSpeed",), "speed_kmh", "km/h"),
        ),
        extras=("itemType", "laneId"),
        adjust=_item_flow,
        flow_from_count=True,
    ),
    "AirQualityObserved": Model(
        "environment",
        (
            Field(("pm25", "pm2_5", "pm2.5"), "pm25_ugm3", "µg/m3"),
            Field(("pm10",), "pm10_ugm3", "µg/m3"),
            Field(("no2",), "no2_ugm3", "µg/m3"),
            Field(("o3",), "o3_ugm3", "µg/m3"),
            Field(("so2",), "so2_ugm3", "µg/m3"),
            # the model's own normalized example gives CO in GP (mg/m³); key-values follow it
            Field(("co",), "co_mgm3", "mg/m3"),
            Field(("temperature",), "temperature_c", "°C"),
            Field(("relativeHumidity",), "humidity_pct", "ratio"),  # model: 0..1
            Field(("windSpeed",), "wind_speed_ms", "m/s"),
        ),
        extras=("airQualityIndex",),
    ),
    "NoiseLevelObserved": Model(
        "environment",
        (Field(("LAeq",), "noise_dba", "dB(A)"),),
        # LAmax/LAS are maxima, LAeq_d a day average: not the interval's equivalent level
        extras=("LAmax", "LAS", "LAeq_d"),
    ),
    "WeatherObserved": Model(
        "environment",
        (
            Field(("temperature",), "temperature_c", "°C"),
            Field(("relativeHumidity",), "humidity_pct", "ratio"),  # model: 0..1
            Field(("windSpeed",), "wind_speed_ms", "m/s"),
            # the model says l/m² (an amount); stations report hourly, so l/m² per hour = mm/h
            Field(("precipitation",), "rain_mmh", "mm/h"),
        ),
        # atmospheric pressure is not our (water main) pressure_kpa
        extras=("atmosphericPressure", "windDirection"),
    ),
    "WaterQualityObserved": Model(
        "water",
        (
            Field(("pH",), "ph", "pH"),
            Field(("turbidity",), "turbidity_ntu", "NTU"),
            Field(("freeChlorine", "chlorine", "cl", "cl2"), "chlorine_mgl", "mg/L"),
            # the model fixes no unit for these; key-values are read in urbanbrain's units
            # (what our water-main stations send), a unitCode overrides
            Field(("pressure",), "pressure_kpa", "kPa"),
            Field(("flow",), "flow_ls", "L/s"),
        ),
        # water temperature is not our (air) temperature_c; conductivity has no metric
        extras=("temperature", "conductivity"),
    ),
    "WaterObserved": Model(
        "water",
        (Field(("flow",), "flow_ls", None),),  # the model leaves the unit to unitCode
        extras=("waterLevel", "height"),
    ),
    # EPANET water network entities (dataModel.WaterDistributionManagementEPANET)
    "Junction": Model("water", (Field(("pressure",), "pressure_kpa", None),)),
    "Pipe": Model("water", (Field(("flow",), "flow_ls", None),)),
    "ThreePhaseAcMeasurement": Model("power", _POWER),
    "ACMeasurement": Model("power", _POWER),
}
