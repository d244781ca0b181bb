"""SenML (RFC 8428) JSON packs → readings, one per sensor and time (see README.md beside this).

A pack is resolved as RFC 8428 §4.6 says (name = bn + n, time = bt + t, unit = u or bu,
value = bv + v), then every numeric record is turned into (sensor, canonical metric, value):
the name up to its last ``:`` (or ``/``) is the sensor, the part after it names the metric.
Records of one sensor at one time become one reading. Units go through
:mod:`urbanbrain.ingest.units`; anything we cannot map is refused, never guessed.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from urbanbrain.ingest.decoders.base import DecodedReading, Decoder, register
from urbanbrain.ingest.rejects import Reason, Reject
from urbanbrain.ingest.units import Conversion, accepts_identity, conversion, senml_unit
from urbanbrain.metrics import METRICS

#: RFC 8428 §4.1: the version this decoder implements (a pack may say less, never more).
SENML_VERSION = 10
#: RFC 8428 §4.5.3: times below 2**28 s are relative to "now".
RELATIVE_LIMIT = 2**28
#: Absolute times beyond this (year 5138) are not clock values but garbage.
MAX_ABSOLUTE_S = 1e11

LABELS = frozenset(
    {"bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"}
)
_STRING = ("bn", "bu", "n", "u", "vs", "vd")
_NUMBER = ("bt", "bv", "bs", "v", "s", "t", "ut")
_VALUE_FIELDS = ("v", "vs", "vb", "vd")
# RFC 8428 §4.5.1: the characters a resolved name may hold.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*\Z")

# Foreign names → (canonical metric, unit assumed when the record has none). The first
# candidate whose conversion table knows the record's unit wins, so "flow" with "l/s" is
# water and "flow" with "1/h" is traffic. Defaults are the SenML registry's unit for the
# quantity (RFC 8428 §12.1 keeps one unit per quantity), or ours where SenML has none.
NAME_ALIASES: dict[str, tuple[tuple[str, str], ...]] = {}


def _alias(names: str, *candidates: tuple[str, str]) -> None:
    for name in names.split():
        NAME_ALIASES[name] = candidates


_alias("temp temperature airtemperature air_temperature", ("temperature_c", "°C"))
_alias("humidity hum rh relativehumidity relative_humidity", ("humidity_pct", "%RH"))
_alias("pressure press", ("pressure_kpa", "Pa"))
_alias("speed averagespeed avgspeed averagevehiclespeed", ("speed_kmh", "m/s"))
_alias("windspeed wind_speed wind", ("wind_speed_ms", "m/s"))
_alias("current", ("current_a", "A"))
_alias("voltage", ("voltage_kv", "V"))
_alias("power activepower active_power load", ("load_mw", "W"))
_alias("frequency freq", ("frequency_hz", "Hz"))
_alias("flow", ("flow_ls", "m3/s"), ("flow_vph", "veh/h"))
_alias("waterflow water_flow flowrate flow_rate", ("flow_ls", "m3/s"))
_alias("trafficflow traffic_flow vehicleflow", ("flow_vph", "veh/h"))
_alias("count vehicles vehiclecount intensity", ("vehicle_count", "count"))
_alias("occupancy", ("occupancy_pct", "ratio"))
_alias("pm25 pm2.5 pm2_5", ("pm25_ugm3", "µg/m3"))
_alias("pm10", ("pm10_ugm3", "µg/m3"))
_alias("no2", ("no2_ugm3", "µg/m3"))
_alias("o3", ("o3_ugm3", "µg/m3"))
_alias("so2", ("so2_ugm3", "µg/m3"))
_alias("co", ("co_mgm3", "mg/m3"))
_alias("noise laeq sound soundlevel", ("noise_dba", "dB(A)"))
_alias("rain rainrate rain_rate", ("rain_mmh", "mm/h"))
_alias("chlorine freechlorine free_chlorine cl cl2", ("chlorine_mgl", "mg/L"))
_alias("turbidity", ("turbidity_ntu", "NTU"))
_alias("ph", ("ph", "pH"))

# When the name says nothing we know (RFC 8428 §5.1.1: the name *is* the device), a unit
# that belongs to exactly one catalogue quantity identifies the metric on its own.
UNIT_ONLY: dict[str, str] = {
    "°C": "temperature_c", "K": "temperature_c", "°F": "temperature_c",
    "%RH": "humidity_pct",
    "A": "current_a", "mA": "current_a", "kA": "current_a",
    "V": "voltage_kv", "mV": "voltage_kv", "kV": "voltage_kv",
    "W": "load_mw", "kW": "load_mw", "MW": "load_mw",
    "Hz": "frequency_hz",
    "Pa": "pressure_kpa", "hPa": "pressure_kpa", "kPa": "pressure_kpa", "bar": "pressure_kpa",
    "mbar": "pressure_kpa",
    "km/h": "speed_kmh",
    "L/s": "flow_ls", "m3/s": "flow_ls", "m3/h": "flow_ls",
    "veh/h": "flow_vph",
    "pH": "ph", "NTU": "turbidity_ntu", "mm/h": "rain_mmh", "dB(A)": "noise_dba",
}

LOCATION_NAMES = {"lat": "lat", "latitude": "lat", "lon": "lon", "lng": "lon", "long": "lon",
                  "longitude": "lon"}
#: Device housekeeping with a registered SenML unit but no place in our catalogue.
HOUSEKEEPING_UNITS = frozenset({"%EL", "EL"})


@dataclass(slots=True)
class _Group:
    sensor_id: str | None
    ts: int
    metrics: dict[str, float] = field(default_factory=dict)
    lat: float | None = None
    lon: float | None = None
    names: list[str] = field(default_factory=list)


@register
class SenMLDecoder(Decoder):
    name = "senml"
    priority = 20

    def sniff(self, doc: Any) -> bool:
        return (
            isinstance(doc, list)
            and bool(doc)
            and isinstance(doc[0], dict)
            and any(isinstance(k, str) and k in LABELS for k in doc[0])
        )

    def decode(self, doc: Any, topic: str, *, now_ms: int | None = None) -> list[DecodedReading]:
        """Resolve the pack and group it by sensor and time.

        ``now_ms`` is "now" for relative times (RFC 8428 §4.5.3); pass the time the
        message was received. It defaults to the wall clock.
        """
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        if not isinstance(doc, list) or not doc:
            raise Reject(Reason.SCHEMA, "a SenML pack is a non-empty array of records")
        topic_sensor = topic.rsplit("/", 1)[-1] if isinstance(topic, str) and topic else None
        topic_sensor = topic_sensor or None

        bn, bt, bu, bv = "", 0.0, None, 0.0
        version: int | None = None
        groups: dict[tuple[str | None, int], _Group] = {}
        for i, rec in enumerate(doc):
            if not isinstance(rec, dict):
                raise Reject(Reason.SCHEMA, f"record {i} is {type(rec).__name__}, not an object")
            _check_fields(rec, i)
            if "bver" in rec:
                bver = rec["bver"]
                if bver > SENML_VERSION:
                    raise Reject(
                        Reason.SCHEMA, f"SenML version {bver} is newer than {SENML_VERSION}"
                    )
                if version is not None and bver != version:
                    raise Reject(Reason.SCHEMA, f"record {i} changes the pack's version")
                version = bver
            if "bn" in rec:
                bn = rec["bn"]
            if "bt" in rec:
                bt = _num(rec["bt"], "bt", i, Reason.BAD_TIMESTAMP)
            if "bu" in rec:
                bu = rec["bu"]
            if "bv" in rec:
                bv = _num(rec["bv"], "bv", i, Reason.NOT_FINITE)

            if "v" not in rec or "vs" in rec or "vb" in rec or "vd" in rec:
                present = [k for k in _VALUE_FIELDS if k in rec]
                if len(present) > 1:
                    raise Reject(Reason.SCHEMA, f"record {i} has more than one value: {present}")
                # base-only record, sum-only record, or a string/boolean/data value: no reading
                continue
            name = bn + rec.get("n", "")
            value = bv + _num(rec["v"], "v", i, Reason.NOT_FINITE)
            if not math.isfinite(value):
                raise Reject(Reason.NOT_FINITE, f"record {i}: bv + v overflows")
            ts = _time(bt + _num(rec.get("t", 0.0), "t", i, Reason.BAD_TIMESTAMP), now_ms, i)
            unit = rec.get("u", bu)

            sensor, what, conv = _resolve(name, unit, topic_sensor, i)
            if what is None:
                continue
            if conv is None:
                out = _coordinate(what, value, i)
            elif conv.identity:
                out = value
            else:
                out = conv.apply(value)
                if not math.isfinite(out):
                    raise Reject(Reason.NOT_FINITE,
                                 f"record {i}: {what} = {value!r} {unit} is not a finite number")
            key = (sensor, ts)
            g = groups.get(key)
            if g is None:
                g = groups[key] = _Group(sensor, ts)
            if what in ("lat", "lon"):
                setattr(g, what, out)
                continue
            if what in g.metrics:
                raise Reject(
                    Reason.SCHEMA, f"{what} given twice for sensor {sensor!r} at time {ts}"
                )
            g.metrics[what] = out
            g.names.append(name)

        readings = [
            DecodedReading(
                sensor_id=g.sensor_id, metrics=g.metrics, ts=g.ts, lat=g.lat, lon=g.lon,
                extra={"senml_names": g.names},
            )
            for g in sorted(groups.values(), key=lambda g: g.ts)
            if g.metrics
        ]
        if not readings:
            raise Reject(Reason.SCHEMA, "the pack holds no numeric measurement we can use")
        return readings


_EXACT_TYPES: dict[str, tuple[type, ...]] = {
    **{k: (str,) for k in _STRING}, **{k: (int, float) for k in _NUMBER}, "vb": (bool,),
}


def _check_fields(rec: dict, i: int) -> None:
    """Field types per RFC 8428 Table 1; labels ending in '_' must be understood (§4.4).

    Fast path: JSON gives exact types, so one dict lookup and a ``type() in`` per field
    decide the common case; anything else (``bver``, unknown labels, a wrong type) takes
    the full check, which also words the error."""
    for key, val in rec.items():
        want = _EXACT_TYPES.get(key)
        if want is None or type(val) not in want:
            _check_fields_fully(rec, i)
            return


def _check_fields_fully(rec: dict, i: int) -> None:
    for key, val in rec.items():
        if not isinstance(key, str):
            raise Reject(Reason.SCHEMA, f"record {i} has a non-string label")
        if key.endswith("_"):
            raise Reject(Reason.SCHEMA, f"record {i}: must-understand label {key!r} not supported")
        if key in _STRING:
            if not isinstance(val, str):
                raise Reject(Reason.SCHEMA, f"record {i}: {key!r} must be a string")
        elif key in _NUMBER:
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise Reject(Reason.SCHEMA, f"record {i}: {key!r} must be a number")
        elif key == "vb":
            if not isinstance(val, bool):
                raise Reject(Reason.SCHEMA, f"record {i}: 'vb' must be a boolean")
        elif key == "bver":
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise Reject(Reason.SCHEMA, f"record {i}: 'bver' must be a positive integer")


def _num(val: Any, key: str, i: int, reason: Reason) -> float:
    try:
        f = float(val)
    except OverflowError:
        raise Reject(reason, f"record {i}: {key!r} is too large for a double") from None
    if not math.isfinite(f):
        raise Reject(reason, f"record {i}: {key!r} is {val!r}")
    return f


def _time(seconds: float, now_ms: int, i: int) -> int:
    if not math.isfinite(seconds):
        raise Reject(Reason.BAD_TIMESTAMP, f"record {i}: bt + t overflows")
    if seconds >= RELATIVE_LIMIT:
        if seconds > MAX_ABSOLUTE_S:
            raise Reject(Reason.BAD_TIMESTAMP, f"record {i}: time {seconds!r} s is not a date")
        return int(round(seconds * 1000.0))
    if seconds < -RELATIVE_LIMIT:
        raise Reject(Reason.BAD_TIMESTAMP, f"record {i}: relative time {seconds!r} s is absurd")
    return now_ms + int(round(seconds * 1000.0))


def _split(name: str) -> tuple[str | None, str]:
    """Sensor part and metric part: split at the last ':' (or '/', RFC 8428 §5.1.6)."""
    idx = max(name.rfind(":"), name.rfind("/"))
    if idx < 0:
        return None, name
    return name[:idx], name[idx + 1 :]


_Resolved = tuple[str | None, str | None, Conversion | None]
_RESOLVED: dict[tuple[str, str | None, str | None], _Resolved] = {}


def _resolve(name: str, unit: str | None, topic_sensor: str | None, i: int) -> _Resolved:
    """(sensor id, canonical metric | 'lat' | 'lon' | None to skip, conversion or None for
    a coordinate), memoised: a city repeats the same few thousand (name, unit) pairs in
    every pack, and resolving one costs ~20 dict lookups and a regex. Only successful
    resolutions are kept (a Reject is raised again, with this record's index)."""
    key = (name, unit, topic_sensor)
    hit = _RESOLVED.get(key)
    if hit is not None:
        return hit
    if not name:
        raise Reject(Reason.SCHEMA, f"record {i} has neither a name nor a base name")
    if not _NAME_RE.match(name):
        raise Reject(
            Reason.INVALID_ID,
            f"record {i}: name {name[:80]!r} breaks RFC 8428 §4.5.1's character set",
        )
    hit = _classify(name, unit, topic_sensor, i)
    if len(_RESOLVED) < 200_000:
        _RESOLVED[key] = hit
    return hit


def _classify(name: str, unit: str | None, topic_sensor: str | None, i: int) -> _Resolved:
    """(sensor id, canonical metric | 'lat' | 'lon' | None to skip, conversion)."""
    head, tail = _split(name)
    low = tail.lower()
    named = tail in METRICS or low in NAME_ALIASES or low in LOCATION_NAMES
    if named or not tail:
        sensor = head if head else topic_sensor
    else:
        sensor = name  # RFC 8428 §5.1.1/§5.1.3: the whole name identifies the device
    sym = senml_unit(unit) if unit is not None else None

    if unit in ("lat", "lon"):
        return sensor, unit, None
    if unit in HOUSEKEEPING_UNITS:
        return sensor, None, None
    if low in LOCATION_NAMES and unit is None:
        return sensor, LOCATION_NAMES[low], None
    if unit is not None and sym is None:
        raise Reject(Reason.UNKNOWN_METRIC, f"record {i}: unit {unit!r} of {name!r} is unknown")

    if tail in METRICS:
        if not accepts_identity(tail, sym):
            raise Reject(
                Reason.UNKNOWN_METRIC,
                f"record {i}: unit {unit!r} contradicts {tail} (unit {METRICS[tail].unit}); "
                "send the metric's own unit or none",
            )
        return sensor, tail, _checked(tail, None)
    if low in NAME_ALIASES:
        for metric, default in NAME_ALIASES[low]:
            use = sym if sym is not None else default
            if conversion(metric, use) is not None:
                return sensor, metric, _checked(metric, use)
        raise Reject(
            Reason.UNKNOWN_METRIC, f"record {i}: {tail!r} in {unit!r} maps to no catalogue metric"
        )
    if sym is not None and sym in UNIT_ONLY:
        metric = UNIT_ONLY[sym]
        return sensor, metric, _checked(metric, sym)
    raise Reject(
        Reason.UNKNOWN_METRIC,
        f"record {i}: {name!r} (unit {unit!r}) is not a metric we know",
    )


def _checked(metric: str, symbol: str | None) -> Conversion:
    """The conversion :func:`convert` would apply (same Rejects for unknown pairings)."""
    if metric not in METRICS:
        raise Reject(Reason.UNKNOWN_METRIC, f"metric {metric!r} is not in the catalogue")
    conv = conversion(metric, symbol)
    if conv is None:
        raise Reject(Reason.UNKNOWN_METRIC, f"unit {symbol!r} is not a unit of {metric}")
    return conv


def _coordinate(axis: str, value: float, i: int) -> float:
    limit = 90.0 if axis == "lat" else 180.0
    if not -limit <= value <= limit:
        raise Reject(Reason.OUT_OF_RANGE, f"record {i}: {axis} {value!r} out of range")
    return value
