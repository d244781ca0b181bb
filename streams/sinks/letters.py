"""Dead letters the streams processes write to ``readings.deadletter``, in the record shape
ingest uses (topic, reason, message, payload, payload_b64, received_ms): one place, so the
worker and the raw store refuse the same reading with the same letter."""

from __future__ import annotations

import time

import orjson


def _now_ms() -> int:
    return int(time.time() * 1000)


def unencodable(reading: object, why: str, source: str = "streams") -> bytes:
    """A reading line protocol cannot carry (``source``: the process that tried)."""
    return orjson.dumps({
        "topic": source, "reason": "sink_refused", "message": why,
        "payload": orjson.dumps(reading, default=str).decode(), "payload_b64": None,
        "received_ms": _now_ms(),
    })


def refused_line(text: str, why: str) -> bytes:
    """A line (or a sensor's outputs) InfluxDB refused."""
    return orjson.dumps({
        "topic": "influxdb", "reason": "sink_refused", "message": why,
        "payload": text, "payload_b64": None, "received_ms": _now_ms(),
    })


def late(topic: str, reading: object, lateness_s: float) -> bytes:
    """A reading whose window was already closed."""
    return orjson.dumps({
        "topic": topic, "reason": "late",
        "message": f"event time older than its closed window (allowed lateness {lateness_s:g} s)",
        "payload": orjson.dumps(reading, default=str).decode(), "payload_b64": None,
        "received_ms": _now_ms(),
    })
