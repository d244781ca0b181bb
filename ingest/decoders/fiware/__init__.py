"""FIWARE Smart Data Models → readings (see README.md beside this).

Accepts one entity, an array of entities, an NGSIv2 or NGSI-LD notification (``data``
array) and the NGSI-LD GeoJSON representation (``Feature``/``FeatureCollection``), each in
NGSI-LD normalized (``{"type": "Property", "value": .., "unitCode": .., "observedAt": ..}``),
NGSI-LD key-values, NGSIv2 normalized (``{"value": .., "metadata": {"unitCode": ..}}``) or
NGSIv2 key-values form. What each entity type means is the table in :mod:`.models`.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from urbanbrain.ingest.decoders.base import DecodedReading, Decoder, register
from urbanbrain.ingest.decoders.fiware.models import MODELS, SCALAR, SKIP, SUM, Field, Model
from urbanbrain.ingest.rejects import Reason, Reject
from urbanbrain.ingest.units import convert, unece_unit

DEVICE_PREFIX = "urn:ngsi-ld:Device:"
LD_PREFIX = "urn:ngsi-ld:"
_NOT_NUMBER = object()


@register
class FiwareDecoder(Decoder):
    name = "fiware"
    priority = 30

    def sniff(self, doc: Any) -> bool:
        if isinstance(doc, dict):
            if "metrics" in doc:
                return False
            if isinstance(doc.get("data"), list) and (
                "subscriptionId" in doc or doc.get("type") == "Notification"
            ):
                return True
            if doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
                return True
            return isinstance(doc.get("id"), str) and isinstance(doc.get("type"), (str, list))
        if isinstance(doc, list) and doc:
            first = doc[0]
            return isinstance(first, dict) and isinstance(first.get("id"), str) and "type" in first
        return False

    def decode(self, doc: Any, topic: str, *, now_ms: int | None = None) -> list[DecodedReading]:
        """One reading per entity. ``now_ms`` is accepted for a uniform interface (unused:
        NGSI times are absolute)."""
        entities = _entities(doc)
        if not entities:
            raise Reject(Reason.SCHEMA, "no NGSI entity in the payload")
        topic_sensor = topic.rsplit("/", 1)[-1] if isinstance(topic, str) and topic else None
        return [_decode_entity(e, i, topic_sensor or None) for i, e in enumerate(entities)]


def _entities(doc: Any) -> list[Any]:
    if isinstance(doc, list):
        return doc
    if not isinstance(doc, dict):
        raise Reject(Reason.SCHEMA, "an NGSI payload is an entity object or an array of them")
    if isinstance(doc.get("data"), list) and (
        "subscriptionId" in doc or doc.get("type") == "Notification"
    ):
        return doc["data"]
    if doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
        return doc["features"]
    return [doc]


class _Entity:
    """Attribute access that hides the four NGSI representations."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self.by_lower: dict[str, str] = {}
        for k in doc:
            if isinstance(k, str):
                self.by_lower.setdefault(k.lower(), k)

    def raw(self, name: str) -> Any:
        key = name if name in self.doc else self.by_lower.get(name.lower())
        return None if key is None else self.doc[key]

    def attr(self, name: str) -> tuple[Any, Any, Any] | None:
        """(value, unitCode, observedAt) of attribute ``name``, None if absent."""
        raw = self.raw(name)
        if raw is None:
            return None
        return _unwrap(raw)


def _unwrap(raw: Any) -> tuple[Any, Any, Any]:
    if isinstance(raw, list) and raw and all(isinstance(r, dict) and "type" in r for r in raw):
        # NGSI-LD multi-attribute: the default instance is the one without a datasetId
        raw = next((r for r in raw if "datasetId" not in r), raw[0])
    unit = observed = None
    val = raw
    if isinstance(raw, dict) and (
        "value" in raw or ("object" in raw and raw.get("type") == "Relationship")
    ):
        unit = raw.get("unitCode")
        observed = raw.get("observedAt")
        md = raw.get("metadata")  # NGSIv2 normalized
        if isinstance(md, dict):
            uc = md.get("unitCode")
            if unit is None and uc is not None:
                unit = uc.get("value") if isinstance(uc, dict) else uc
            ts = md.get("timestamp")
            if observed is None and ts is not None:
                observed = ts.get("value") if isinstance(ts, dict) else ts
        val = raw["value"] if "value" in raw else raw.get("object")
        if isinstance(val, dict) and "value" in val and "@value" not in val:
            # EPANET models nest a Property inside the value
            if val.get("unitCode") is not None:
                unit = val.get("unitCode")
            val = val.get("value")
    if isinstance(val, dict) and "@value" in val:  # JSON-LD typed literal
        val = val["@value"]
    return val, unit, observed


def _decode_entity(doc: Any, i: int, topic_sensor: str | None) -> DecodedReading:
    if not isinstance(doc, dict):
        raise Reject(Reason.SCHEMA, f"entity {i} is {type(doc).__name__}, not an object")
    if doc.get("type") == "Feature" and isinstance(doc.get("properties"), dict):
        props = dict(doc["properties"])
        if "id" in doc:
            props.setdefault("id", doc["id"])
        if "location" not in props and "geometry" in doc:
            props["location"] = doc["geometry"]
        doc = props
    etype = _entity_type(doc.get("type"))
    if etype is None:
        raise Reject(Reason.SCHEMA, f"entity {i} has no string 'type'")
    model = MODELS.get(etype)
    if model is None:
        raise Reject(
            Reason.UNKNOWN_METRIC, f"entity type {etype[:80]!r} has no mapping to our catalogue"
        )
    ent = _Entity(doc)
    overrides = _overrides(model, ent)
    metrics: dict[str, float] = {}
    observed: list[int] = []
    unresolved: list[str] = []
    measurands = _measurands(ent)
    for fld in model.fields:
        if fld.metric in metrics or overrides.get(fld.metric) == SKIP:
            continue
        for name in fld.attrs:
            got = ent.attr(name)
            if got is None:
                got = measurands.get(name.lower())
            if got is None:
                continue
            value, unit_code, obs = got
            number = _reduce(fld, value, name, i)
            unit = _unit(fld, unit_code, name, overrides)
            if unit is None:
                unresolved.append(name)
                break
            metrics[fld.metric] = convert(fld.metric, unit, number * fld.scale)
            if obs is not None:
                observed.append(_time_ms(obs, f"{name}.observedAt"))
            break
    if not metrics:
        if unresolved:
            raise Reject(
                Reason.UNKNOWN_METRIC,
                f"{etype}: {', '.join(unresolved)} without unitCode, and the model fixes no unit",
            )
        raise Reject(Reason.SCHEMA, f"{etype} entity {i} carries none of the mapped measurements")

    if model.flow_from_count and "vehicle_count" in metrics and "flow_vph" not in metrics:
        period = _period_s(ent)
        if period:
            per_hour = metrics["vehicle_count"] * 3600.0 / period
            metrics["flow_vph"] = convert("flow_vph", None, per_hour)

    lat, lon = _location(ent)
    extra: dict[str, Any] = {"entity_type": etype}
    if isinstance(doc.get("id"), str):
        extra["entity_id"] = doc["id"]
    for name in model.extras:
        got = ent.attr(name)
        value = None if got is None else got[0]
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            extra[name] = value
    if unresolved:
        extra["unmapped"] = unresolved
    return DecodedReading(
        sensor_id=_sensor_id(ent, topic_sensor),
        metrics=metrics,
        ts=_timestamp(ent, observed),
        domain=model.domain,
        lat=lat,
        lon=lon,
        extra=extra,
    )


def _entity_type(t: Any) -> str | None:
    if isinstance(t, list):  # NGSI-LD multi-typed entity: the first type we know
        names = [_short(x) for x in t if isinstance(x, str)]
        return next((n for n in names if n in MODELS), names[0] if names else None)
    return _short(t) if isinstance(t, str) and t else None


def _short(t: str) -> str:
    """Expanded type IRI → its short name (https://smartdatamodels.org/.../TrafficFlowObserved)."""
    return t.rsplit("/", 1)[-1].rsplit("#", 1)[-1]


def _overrides(model: Model, ent: _Entity) -> dict[str, str]:
    if model.adjust is None:
        return {}
    got = ent.attr("itemType")
    return model.adjust(got[0]) if got is not None and isinstance(got[0], str) else {}


def _measurands(ent: _Entity) -> dict[str, tuple[Any, Any, Any]]:
    """The models' ``measurand`` list: "<name>, <value>, <unitCode>, <description>"."""
    got = ent.attr("measurand")
    if got is None or not isinstance(got[0], list):
        return {}
    out: dict[str, tuple[Any, Any, Any]] = {}
    for item in got[0]:
        if not isinstance(item, str):
            continue
        parts = [p.strip() for p in item.split(",")]
        if len(parts) >= 3 and parts[0]:
            out.setdefault(parts[0].lower(), (parts[1], parts[2], None))
    return out


def _number(value: Any, what: str, i: int) -> float:
    if isinstance(value, bool) or value is None:
        raise Reject(Reason.SCHEMA, f"entity {i}: {what} is {value!r}, not a number")
    if isinstance(value, (int, float)):
        try:
            f = float(value)
        except OverflowError:
            raise Reject(Reason.NOT_FINITE, f"entity {i}: {what} is too large") from None
    elif isinstance(value, str):  # NGSIv2 payloads sometimes quote numbers
        try:
            f = float(value.strip())
        except ValueError:
            raise Reject(
                Reason.SCHEMA, f"entity {i}: {what} = {value[:40]!r} is not a number"
            ) from None
    else:
        raise Reject(Reason.SCHEMA, f"entity {i}: {what} is {type(value).__name__}, not a number")
    if not math.isfinite(f):
        raise Reject(Reason.NOT_FINITE, f"entity {i}: {what} is {value!r}")
    return f


def _reduce(fld: Field, value: Any, name: str, i: int) -> float:
    if fld.reduce == SCALAR:
        return _number(value, name, i)
    if not isinstance(value, dict):
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return _number(value, name, i)  # a total given as a plain number
        raise Reject(Reason.SCHEMA, f"entity {i}: {name} is neither a number nor per-phase object")
    parts = [_number(value[k], f"{name}.{k}", i) for k in fld.keys if k in value]
    if not parts:
        raise Reject(Reason.SCHEMA, f"entity {i}: {name} has none of {', '.join(fld.keys)}")
    total = math.fsum(parts)
    out = total if fld.reduce == SUM else total / len(parts)
    if not math.isfinite(out):
        raise Reject(Reason.NOT_FINITE, f"entity {i}: {name} overflows")
    return out


def _unit(fld: Field, unit_code: Any, name: str, overrides: dict[str, str]) -> str | None:
    if unit_code is not None:
        if not isinstance(unit_code, str):
            raise Reject(Reason.SCHEMA, f"{name}: unitCode must be a string")
        sym = unece_unit(unit_code.strip())
        if sym is None:
            raise Reject(Reason.UNKNOWN_METRIC, f"{name}: unitCode {unit_code[:20]!r} is unknown")
        return sym
    return overrides.get(fld.metric, fld.unit)


def _time_ms(value: Any, what: str) -> int:
    """ISO 8601 instant or interval (its end) → ms. NGSI DateTimes are UTC: a value
    without a zone is read as UTC (NGSI-LD §4.6.3; the Smart Data Models examples omit it)."""
    if isinstance(value, dict) and "@value" in value:
        value = value["@value"]
    if not isinstance(value, str):
        raise Reject(Reason.BAD_TIMESTAMP, f"{what} is not an ISO 8601 string")
    text = value.strip()
    if "/" in text:
        text = text.rsplit("/", 1)[1]
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise Reject(Reason.BAD_TIMESTAMP, f"{what} = {value[:60]!r} is not ISO 8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        return int(dt.timestamp() * 1000)
    except (OverflowError, ValueError, OSError):
        raise Reject(Reason.BAD_TIMESTAMP, f"{what} = {value[:60]!r} is out of range") from None


def _period_s(ent: _Entity) -> float | None:
    """Length of the observation period: dateObservedFrom..To, else a dateObserved interval."""
    start = ent.attr("dateObservedFrom")
    end = ent.attr("dateObservedTo")
    if start is not None and end is not None:
        t0, t1 = _time_ms(start[0], "dateObservedFrom"), _time_ms(end[0], "dateObservedTo")
    else:
        got = ent.attr("dateObserved")
        value = got[0] if got is not None else None
        if isinstance(value, dict):
            value = value.get("@value")
        if not isinstance(value, str) or "/" not in value:
            return None
        first, last = value.split("/", 1)
        t0, t1 = _time_ms(first, "dateObserved"), _time_ms(last, "dateObserved")
    return (t1 - t0) / 1000.0 if t1 > t0 else None


def _timestamp(ent: _Entity, observed: list[int]) -> int | None:
    for name in ("dateObservedTo", "dateObserved"):
        got = ent.attr(name)
        if got is not None:
            return _time_ms(got[0], name)
    return max(observed) if observed else None


def _sensor_id(ent: _Entity, topic_sensor: str | None) -> str | None:
    ref = ent.attr("refDevice")
    if ref is not None:
        value = ref[0]
        if isinstance(value, list):
            value = next((v for v in value if isinstance(v, str)), None)
        if not isinstance(value, str) or not value:
            raise Reject(Reason.SCHEMA, "refDevice is not a device id")
        return value[len(DEVICE_PREFIX):] if value.startswith(DEVICE_PREFIX) else value
    eid = ent.doc.get("id")
    if isinstance(eid, str) and eid:
        if eid.startswith(LD_PREFIX):
            _type, sep, rest = eid[len(LD_PREFIX):].partition(":")
            if sep and rest:
                return rest
        return eid
    return topic_sensor


def _location(ent: _Entity) -> tuple[float | None, float | None]:
    got = ent.attr("location")
    if got is None:
        return None, None
    geo = got[0]
    if not isinstance(geo, dict) or geo.get("type") != "Point":
        return None, None  # lines and areas: the device registry knows the point
    coords = geo.get("coordinates")
    if not isinstance(coords, list) or len(coords) < 2:
        return None, None
    try:
        lon, lat = (
            float(c) if isinstance(c, (int, float)) and not isinstance(c, bool) else math.nan
            for c in coords[:2]
        )
    except OverflowError:
        return None, None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # also false for NaN
        return None, None
    return lat, lon
