"""Payload → normalised readings or dead letters, with a reason for every refusal.

This is the whole of ingest's judgement, free of any I/O so it can be tested and fuzzed
directly: the bridge only moves bytes between MQTT and Kafka around it. Nothing raises out
of :meth:`Normaliser.process`; every payload ends as readings, dead letters, or both (a
SenML pack may hold good and bad records).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TypedDict

import orjson

from urbanbrain.ingest.decoders import all_decoders
from urbanbrain.ingest.decoders.base import DecodedReading, Decoder, pick
from urbanbrain.ingest.rejects import Reason, Reject
from urbanbrain.ingest.topics import TopicMapper
from urbanbrain.metrics import METRICS
from urbanbrain.reading import Reading
from urbanbrain.registry import Registry
from urbanbrain.settings import DOMAINS, Settings

_BAD_ID = re.compile(r"[\x00-\x1f\x7f\\+#/]")
MAX_ID_LEN = 128


class DeadLetter(TypedDict):
    topic: str
    reason: str
    message: str
    received_ms: int
    payload: str | None  # the payload as text when it is UTF-8
    payload_b64: str | None  # otherwise base64 of the raw bytes
    sensor_id: str | None


def dead_letter(
    topic: str, payload: bytes, reason: Reason, message: str, received_ms: int,
    sensor_id: str | None = None,
) -> DeadLetter:
    try:
        text: str | None = payload.decode("utf-8")
        b64 = None
    except UnicodeDecodeError:
        text, b64 = None, base64.b64encode(payload).decode("ascii")
    return DeadLetter(
        topic=topic, reason=reason.value, message=message, received_ms=received_ms,
        payload=text, payload_b64=b64, sensor_id=sensor_id,
    )


class _Deduplicator:
    """Remembers payload digests for about ``window_ms``: two generations, O(1), bounded."""

    def __init__(self, window_ms: int) -> None:
        self.half = max(1, window_ms // 2)
        self.current: set[bytes] = set()
        self.previous: set[bytes] = set()
        self.rotated_at = 0

    def seen(self, topic: str, payload: bytes, now_ms: int) -> bool:
        if now_ms - self.rotated_at >= self.half:
            self.previous, self.current = self.current, set()
            self.rotated_at = now_ms
        h = hashlib.blake2b(payload, digest_size=16, key=topic.encode()[:64]).digest()
        if h in self.current or h in self.previous:
            return True
        self.current.add(h)
        return False


@dataclass
class Normaliser:
    settings: Settings
    registry: Registry = field(default_factory=Registry)
    mapper: TopicMapper = field(default_factory=TopicMapper)
    decoders: list[Decoder] = field(default_factory=all_decoders)
    dedup_window_ms: int = 60_000
    rejected: Counter = field(default_factory=Counter)
    ignored: int = 0

    def __post_init__(self) -> None:
        self._dedup = _Deduplicator(self.dedup_window_ms)

    def process(
        self, topic: str, payload: bytes, received_ms: int
    ) -> tuple[list[Reading], list[DeadLetter]]:
        try:
            return self._process(topic, payload, received_ms)
        except Reject as rej:
            self.rejected[rej.reason.value] += 1
            return [], [dead_letter(topic, payload, rej.reason, rej.message, received_ms)]
        except Exception as exc:  # a decoder bug must not stop the city's data
            self.rejected[Reason.MALFORMED.value] += 1
            return [], [
                dead_letter(
                    topic, payload, Reason.MALFORMED,
                    f"internal decoder error {type(exc).__name__}: {exc}", received_ms,
                )
            ]

    def _process(
        self, topic: str, payload: bytes, received_ms: int
    ) -> tuple[list[Reading], list[DeadLetter]]:
        if self.mapper.ignore and self.mapper.ignored(topic):
            self.ignored += 1
            return [], []
        limit = self.settings.ingest_max_payload_bytes
        if len(payload) > limit:
            raise Reject(Reason.TOO_LARGE, f"payload of {len(payload)} bytes exceeds {limit}")
        tags = self.mapper.tags(topic)
        if tags is None:
            raise Reject(Reason.BAD_TOPIC, f"topic {topic!r} matches no topic pattern")
        try:
            doc: Any = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            if "utf-8" in str(exc).lower():
                raise Reject(Reason.NOT_UTF8, "payload is not UTF-8 text") from None
            raise Reject(Reason.MALFORMED, f"not JSON: {exc}") from None
        if self._dedup.seen(topic, payload, received_ms):
            raise Reject(Reason.DUPLICATE, "exact resend of a payload seen in the last minute")
        decoded = pick(self.decoders, doc).decode(doc, topic)
        if not decoded:
            raise Reject(Reason.SCHEMA, "payload holds no readings")
        readings: list[Reading] = []
        dead: list[DeadLetter] = []
        for d in decoded:
            try:
                readings.append(self._normalise(d, tags, received_ms))
            except Reject as rej:
                self.rejected[rej.reason.value] += 1
                dead.append(
                    dead_letter(
                        topic, payload, rej.reason, rej.message, received_ms,
                        d.sensor_id or tags.get("sensor_id"),
                    )
                )
        return readings, dead

    def _normalise(self, d: DecodedReading, tags: dict[str, str], received_ms: int) -> Reading:
        sensor_id = d.sensor_id or tags.get("sensor_id")
        if sensor_id is None:
            raise Reject(Reason.SCHEMA, "no sensor id in the payload or the topic")
        topic_sensor = tags.get("sensor_id")
        if d.sensor_id and topic_sensor and d.sensor_id != topic_sensor:
            raise Reject(
                Reason.SCHEMA, f"sensor id {d.sensor_id!r} differs from topic's {topic_sensor!r}"
            )
        check_id(sensor_id, "sensor id")
        flags: list[str] = []
        reg = self.registry.get(sensor_id)
        if reg is None:
            if self.registry and self.settings.ingest_unknown_sensors == "reject":
                raise Reject(Reason.UNKNOWN_SENSOR, f"sensor {sensor_id!r} is not registered")
            if self.registry:
                flags.append("unregistered")
        domain = (reg.domain if reg else None) or d.domain or tags.get("domain")
        if domain not in DOMAINS:
            raise Reject(Reason.BAD_TOPIC, f"unknown domain {domain!r}")
        if reg and tags.get("domain") and tags["domain"] != reg.domain:
            raise Reject(
                Reason.DOMAIN_MISMATCH,
                f"topic says {tags['domain']!r}, registry says {reg.domain!r} for {sensor_id!r}",
            )
        kind = (reg.kind if reg else None) or d.kind or tags.get("kind") or "unknown"
        district = (reg.district if reg else None) or d.district or tags.get("district") or "unknown"
        check_id(kind, "kind")
        check_id(district, "district")
        metrics: dict[str, float] = {}
        for name, value in d.metrics.items():
            m = METRICS.get(name)
            if m is None:
                raise Reject(Reason.UNKNOWN_METRIC, f"metric {name!r} is not in the catalogue")
            if m.domain != domain:
                raise Reject(
                    Reason.DOMAIN_MISMATCH, f"metric {name!r} belongs to {m.domain}, not {domain}"
                )
            if not math.isfinite(value):
                raise Reject(Reason.NOT_FINITE, f"metric {name!r} is {value!r}")
            if not (m.low <= value <= m.high):
                raise Reject(
                    Reason.OUT_OF_RANGE,
                    f"{name}={value!r} outside plausible range [{m.low}, {m.high}] {m.unit}",
                )
            metrics[name] = value
        if not metrics:
            raise Reject(Reason.SCHEMA, "reading without metrics")
        ts = received_ms if d.ts is None else d.ts
        if ts > received_ms + self.settings.ingest_max_future_s * 1000:
            raise Reject(
                Reason.BAD_TIMESTAMP, f"event time {ts} is {(ts - received_ms) / 1000:.0f}s in the future"
            )
        if ts < received_ms - self.settings.ingest_max_past_s * 1000:
            raise Reject(
                Reason.BAD_TIMESTAMP, f"event time {ts} is {(received_ms - ts) / 1000:.0f}s in the past"
            )
        lat = reg.lat if reg and reg.lat is not None else d.lat
        lon = reg.lon if reg and reg.lon is not None else d.lon
        reading: Reading = {
            "sensor_id": sensor_id, "domain": domain, "kind": kind, "district": district,
            "ts": int(ts), "recv": received_ms, "metrics": metrics, "lat": lat, "lon": lon,
        }
        if flags:
            reading["flags"] = flags
        return reading


def check_id(value: str, what: str) -> None:
    """Identifiers become InfluxDB tags and MQTT topic levels: refuse what can't be both."""
    if not isinstance(value, str) or not value:
        raise Reject(Reason.INVALID_ID, f"empty or non-string {what}")
    if len(value) > MAX_ID_LEN:
        raise Reject(Reason.INVALID_ID, f"{what} longer than {MAX_ID_LEN} characters")
    if _BAD_ID.search(value):
        raise Reject(
            Reason.INVALID_ID,
            f"{what} {value!r} holds a control character, backslash or MQTT wildcard/separator",
        )
