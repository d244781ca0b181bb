"""Plain JSON readings: urbanbrain's own, simplest format (see README.md beside this)."""

from __future__ import annotations

import math
from typing import Any

from urbanbrain.ingest.decoders.base import DecodedReading, Decoder, register
from urbanbrain.ingest.rejects import Reason, Reject
from urbanbrain.ingest.timestamps import ms_from_any
from urbanbrain.metrics import METRICS


@register
class JsonReadingDecoder(Decoder):
    name = "json"
    priority = 10

    def sniff(self, doc: Any) -> bool:
        return isinstance(doc, dict) and isinstance(doc.get("metrics"), dict)

    def decode(self, doc: Any, topic: str) -> list[DecodedReading]:
        if not isinstance(doc, dict):
            raise Reject(Reason.SCHEMA, "a JSON reading is an object")
        metrics_in = doc.get("metrics")
        if not isinstance(metrics_in, dict) or not metrics_in:
            raise Reject(Reason.SCHEMA, "'metrics' must be a non-empty object of name → number")
        metrics: dict[str, float] = {}
        for name, value in metrics_in.items():
            if name not in METRICS:
                raise Reject(Reason.UNKNOWN_METRIC, f"metric {name!r} is not in the catalogue")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise Reject(Reason.SCHEMA, f"metric {name!r} is {type(value).__name__}, not a number")
            try:
                f = float(value)
            except OverflowError:
                raise Reject(Reason.OUT_OF_RANGE, f"metric {name!r} does not fit a float") from None
            if not math.isfinite(f):
                raise Reject(Reason.NOT_FINITE, f"metric {name!r} is {value!r}")
            metrics[name] = f
        sensor = doc.get("sensor_id")
        if sensor is not None and not isinstance(sensor, str):
            raise Reject(Reason.SCHEMA, "'sensor_id' must be a string")
        ts = doc.get("ts")
        lat, lon = _coord(doc.get("lat")), _coord(doc.get("lon"))
        return [
            DecodedReading(
                sensor_id=sensor,
                metrics=metrics,
                ts=None if ts is None else ms_from_any(ts),
                domain=_opt_str(doc, "domain"),
                kind=_opt_str(doc, "kind"),
                district=_opt_str(doc, "district"),
                lat=lat,
                lon=lon,
            )
        ]


def _opt_str(doc: dict, key: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Reject(Reason.SCHEMA, f"{key!r} must be a string")
    return value


def _coord(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None
