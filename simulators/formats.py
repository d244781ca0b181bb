"""Encoders from a :class:`Frame` to MQTT messages: plain JSON, SenML packs, FIWARE NGSI-LD.

Every encoder returns ``(topic, payload, n_readings)`` triples. JSON and SenML are built from
per-sensor ``%``-format templates prepared once (``%r`` of a float is its shortest exact
repr), which is several times faster than building dicts and serialising them, and is
what lets one process offer >100k readings/s. FIWARE builds dicts (it is the slow,
interoperable format). Mapping to the data models is documented in simulators/README.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import numpy as np
import orjson

from urbanbrain.errors import BadValue
from urbanbrain.simulators.city import KIND_ORDER, KINDS, City, Sensor
from urbanbrain.simulators.engine import Frame

Message = tuple[str, bytes, int]

# SenML unit (RFC 8428 / RFC 8798 registry) of a canonical metric, only where the registered
# unit is exactly the metric's unit; metrics without an entry are sent without "u".
SENML_UNITS: dict[str, str] = {
    "vehicle_count": "count",
    "speed_kmh": "km/h",
    "temperature_c": "Cel",
    "humidity_pct": "%RH",
    "wind_speed_ms": "m/s",
    "pressure_kpa": "kPa",
    "flow_ls": "l/s",
    "frequency_hz": "Hz",
}

FORMATS = ("json", "senml", "fiware")


def topic_of(s: Sensor, prefix: str = "city") -> str:
    return f"{prefix}/{s.district}/{s.domain}/{s.kind}/{s.sensor_id}"


def iso_ms(ts_ms: int) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-01-05T08:00:00.000Z."""
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def _has_gaps(frame: Frame) -> bool:
    """True when some value is NaN: a metric the sensor did not measure this tick (a SUMO
    loop no vehicle passed has no speed). Such metrics are left out of the message, never
    sent as a made-up number; checked per frame so the full-frame path stays a template."""
    return any(bool(np.isnan(v).any()) for v in frame.values.values())


def _finite(names: tuple[str, ...], row: list[float]) -> dict[str, float]:
    return {m: v for m, v in zip(names, row) if v == v}


def _rows(city: City, frame: Frame) -> Iterator[tuple[int, list[float], int]]:
    """(global index, values row, ts) of present sensors, in sensor order."""
    present = frame.present
    ts = frame.ts
    all_present = bool(present.all())
    for kind in KIND_ORDER:
        sl = city.kind_slices[kind]
        rows = frame.values[kind].tolist()
        tss = ts[sl].tolist()
        if all_present:
            for li, row in enumerate(rows):
                yield sl.start + li, row, tss[li]
        else:
            pres = present[sl].tolist()
            for li, row in enumerate(rows):
                if pres[li]:
                    yield sl.start + li, row, tss[li]


class JsonEncoder:
    """One reading per message on ``city/<district>/<domain>/<kind>/<sensor_id>``."""

    name = "json"

    def __init__(self, city: City, topic_prefix: str = "city") -> None:
        self.city = city
        self.topics = [topic_of(s, topic_prefix) for s in city.sensors]
        self.templates = [
            '{"sensor_id":"%s","ts":%%d,"metrics":{%s}}' % (
                s.sensor_id, ",".join(f'"{m}":%r' for m in s.metrics))
            for s in city.sensors
        ]

    def encode(self, frame: Frame) -> list[Message]:
        topics, templates = self.topics, self.templates
        if _has_gaps(frame):
            sensors = self.city.sensors
            return [(topics[gi], orjson.dumps({"sensor_id": sensors[gi].sensor_id, "ts": ts,
                                               "metrics": _finite(sensors[gi].metrics, row)}), 1)
                    if any(v != v for v in row) else
                    (topics[gi], (templates[gi] % (ts, *row)).encode(), 1)
                    for gi, row, ts in _rows(self.city, frame)]
        return [(topics[gi], (templates[gi] % (ts, *row)).encode(), 1)
                for gi, row, ts in _rows(self.city, frame)]


class SenMLEncoder:
    """SenML packs per gateway: ``city/<district>/<domain>/pack/<gateway_id>``.

    A gateway serves up to ``pack_size`` sensors of one district and domain. The first
    record carries ``bt`` (seconds); a sensor whose event time differs (clock skew) gets its
    own ``bt`` on its first record and the next sensor restores the pack's.
    """

    name = "senml"

    def __init__(self, city: City, pack_size: int = 50, units: bool = True,
                 topic_prefix: str = "city") -> None:
        self.city = city
        groups: dict[tuple[str, str], list[int]] = {}
        for gi, s in enumerate(city.sensors):
            groups.setdefault((s.district, s.domain), []).append(gi)
        self.gateways: list[tuple[str, list[int]]] = []
        self.gateway_of = [""] * len(city.sensors)
        for (district, domain), members in sorted(groups.items()):
            for k in range(0, len(members), pack_size):
                chunk = members[k:k + pack_size]
                gw = f"gw-{district}-{domain}-{k // pack_size + 1:02d}"
                self.gateways.append((f"{topic_prefix}/{district}/{domain}/pack/{gw}", chunk))
                for gi in chunk:
                    self.gateway_of[gi] = gw
        self.units = units
        self.plain: list[str] = []  # sensor fragment without bt
        self.with_bt: list[str] = []  # sensor fragment with its own bt
        for s in city.sensors:
            recs = []
            for j, m in enumerate(s.metrics):
                u = ""
                if units and m in SENML_UNITS:
                    u = f',"u":"{SENML_UNITS[m]}"'.replace("%", "%%")  # literal in a %-template
                head = f'"bn":"{s.sensor_id}:",' if j == 0 else ""
                recs.append('{%s"n":"%s"%s,"v":%%r}' % (head, m, u))
            frag = ",".join(recs)
            self.plain.append(frag)
            self.with_bt.append(frag.replace('{"bn":"%s:",' % s.sensor_id,
                                             '{"bn":"%s:","bt":%%r,' % s.sensor_id, 1))

    def encode(self, frame: Frame) -> list[Message]:
        city = self.city
        rows: list[list[float] | None] = [None] * len(city.sensors)
        tss: list[int] = frame.ts.tolist()
        for gi, row, _ in _rows(city, frame):
            rows[gi] = row
        out: list[Message] = []
        plain, with_bt = self.plain, self.with_bt
        gaps = _has_gaps(frame)
        for topic, members in self.gateways:
            parts = []
            base = None
            for gi in members:
                row = rows[gi]
                if row is None:
                    continue
                ts = tss[gi]
                if gaps and any(v != v for v in row):
                    frag = self._sparse(gi, row, None if ts == base else ts)
                    if frag:
                        base = ts
                        parts.append(frag)
                elif ts != base:  # first sensor of the pack, or a change of event time
                    base = ts
                    parts.append(with_bt[gi] % (ts / 1000.0, *row))
                else:
                    parts.append(plain[gi] % tuple(row))
            if parts:
                out.append((topic, ("[" + ",".join(parts) + "]").encode(), len(parts)))
        return out


    def _sparse(self, gi: int, row: list[float], ts: int | None) -> str:
        """A sensor's records without its NaN metrics (slow path, rare)."""
        s = self.city.sensors[gi]
        recs: list[dict[str, object]] = []
        for m, v in zip(s.metrics, row):
            if v != v:
                continue
            rec: dict[str, object] = {"n": m, "v": v}
            if self.units and m in SENML_UNITS:
                rec["u"] = SENML_UNITS[m]
            recs.append(rec)
        if not recs:
            return ""
        head: dict[str, object] = {"bn": f"{s.sensor_id}:"}
        if ts is not None:
            head["bt"] = ts / 1000.0
        recs[0] = {**head, **recs[0]}
        return ",".join(orjson.dumps(r).decode() for r in recs)


# FIWARE Smart Data Models (NGSI-LD key-values) per kind: (entity type, @context)
_SDM_CONTEXT = ("https://raw.githubusercontent.com/smart-data-models/dataModel.%s/master/"
                "context.jsonld")
FIWARE_TYPES: dict[str, tuple[str, str]] = {
    "loop": ("TrafficFlowObserved", _SDM_CONTEXT % "Transportation"),
    "air_quality": ("AirQualityObserved", _SDM_CONTEXT % "Environment"),
    "noise": ("NoiseLevelObserved", _SDM_CONTEXT % "Environment"),
    "weather": ("WeatherObserved", _SDM_CONTEXT % "Weather"),
    "water_main": ("WaterQualityObserved", _SDM_CONTEXT % "Environment"),
    "substation": ("ThreePhaseAcMeasurement", _SDM_CONTEXT % "Energy"),
}


def fiware_attributes(kind: str, m: dict[str, float]) -> dict[str, object]:
    """Smart Data Models attributes of one reading (units as the models define them)."""
    if kind == "loop":
        return {"intensity": m["vehicle_count"], "occupancy": round(m["occupancy_pct"] / 100.0, 6),
                "averageVehicleSpeed": m["speed_kmh"]}
    if kind == "air_quality":
        return {"pm25": m["pm25_ugm3"], "pm10": m["pm10_ugm3"], "no2": m["no2_ugm3"],
                "o3": m["o3_ugm3"], "co": m["co_mgm3"]}
    if kind == "noise":
        return {"LAeq": m["noise_dba"]}
    if kind == "weather":
        return {"temperature": m["temperature_c"],
                "relativeHumidity": round(m["humidity_pct"] / 100.0, 6),
                "windSpeed": m["wind_speed_ms"], "precipitation": m["rain_mmh"]}
    if kind == "water_main":
        return {"pressure": m["pressure_kpa"], "flow": m["flow_ls"],
                "freeChlorine": m["chlorine_mgl"], "turbidity": m["turbidity_ntu"]}
    if kind == "substation":
        v = round(m["voltage_kv"] * 1000.0, 3)
        return {"totalActivePower": round(m["load_mw"] * 1e6, 3), "frequency": m["frequency_hz"],
                "phaseToPhaseVoltage": {"L12": v, "L23": v, "L31": v}}
    raise ValueError(kind)


class FiwareEncoder:
    """NGSI-LD key-values entity per reading on ``city/<district>/<domain>/<kind>/<id>``."""

    name = "fiware"

    def __init__(self, city: City, interval_s: float = 60.0, topic_prefix: str = "city",
                 context: bool = True) -> None:
        self.city = city
        self.interval_ms = int(interval_s * 1000)
        self.topics = [topic_of(s, topic_prefix) for s in city.sensors]
        self.context = context

    def entity(self, s: Sensor, ts: int, metrics: dict[str, float]) -> dict[str, object]:
        etype, ctx = FIWARE_TYPES[s.kind]
        e: dict[str, object] = {
            "id": f"urn:ngsi-ld:{etype}:{s.sensor_id}",
            "type": etype,
            "refDevice": f"urn:ngsi-ld:Device:{s.sensor_id}",
            "dateObserved": iso_ms(ts),
            "location": {"type": "Point", "coordinates": [s.lon, s.lat]},
        }
        if s.kind in ("loop", "noise"):
            e["dateObservedFrom"] = iso_ms(ts - self.interval_ms)
            e["dateObservedTo"] = iso_ms(ts)
        e.update((k, v) for k, v in fiware_attributes(s.kind, metrics).items()
                 if not (isinstance(v, float) and v != v))  # NaN: not measured, not sent
        if self.context:
            e["@context"] = [ctx]
        return e

    def encode(self, frame: Frame) -> list[Message]:
        city = self.city
        out: list[Message] = []
        for gi, row, ts in _rows(city, frame):
            s = city.sensors[gi]
            ent = self.entity(s, ts, dict(zip(s.metrics, row)))
            out.append((self.topics[gi], orjson.dumps(ent), 1))
        return out


def make_encoder(fmt: str, city: City, *, interval_s: float = 60.0, pack_size: int = 50,
                 topic_prefix: str = "city") -> JsonEncoder | SenMLEncoder | FiwareEncoder:
    if fmt == "json":
        return JsonEncoder(city, topic_prefix)
    if fmt == "senml":
        return SenMLEncoder(city, pack_size=pack_size, topic_prefix=topic_prefix)
    if fmt == "fiware":
        return FiwareEncoder(city, interval_s=interval_s, topic_prefix=topic_prefix)
    raise BadValue(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "FIWARE_TYPES", "KINDS", "SENML_UNITS", "FiwareEncoder", "JsonEncoder",
           "Message", "SenMLEncoder", "fiware_attributes", "iso_ms", "make_encoder", "topic_of"]
