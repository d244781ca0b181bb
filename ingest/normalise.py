"""Payload → normalised readings or dead letters, with a reason for every refusal.

This is the whole of ingest's judgement, free of any I/O so it can be tested and fuzzed
directly: the bridge only moves bytes between MQTT and Kafka around it. Nothing raises out
of :meth:`Normaliser.process`; every payload ends as readings, dead letters, or both (a
SenML pack may hold good and bad records).

A payload on a topic (or of a device type) that a device profile claims is read by that
profile (ingest/profiles); anything else goes to the format decoders.

Partial acceptance: one implausible field of a multi-field reading (out of range, not
finite, not a number, of another domain) does not cost the reading its good fields. The
good ones are stored and the bad one goes to the dead-letter topic on its own, with its
reason and ``metric`` (and the vendor ``field`` for a profile). ``partial: reject`` in a
profile, or ``URBANBRAIN_INGEST_PARTIAL=reject`` for everything without one, refuses the
whole reading instead (one dead letter, the first problem's reason). The default is
``accept``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

import orjson
from urbanbrain.ingest.decoders import all_decoders
from urbanbrain.ingest.decoders.base import DecodedReading, Decoder, pick
from urbanbrain.ingest.profiles.model import Profile, ProfileSet
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
    metric: NotRequired[str]  # one field of a reading refused alone (partial acceptance)
    field: NotRequired[str]  # the vendor field it came from (device profiles)
    profile: NotRequired[str]  # the device profile that read the payload


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
    profiles: ProfileSet = field(default_factory=ProfileSet)
    rejected: Counter = field(default_factory=Counter)
    ignored: int = 0
    absent: int = 0  # profile fields at a sentinel value ("not measured"): dropped, no error

    def __post_init__(self) -> None:
        self._dedup = _Deduplicator(self.dedup_window_ms)

    def process(
        self, topic: str, payload: bytes, received_ms: int
    ) -> tuple[list[Reading], list[DeadLetter]]:
        try:
            readings, dead = self._process(topic, payload, received_ms)
            if readings:
                # the publisher it came through (a device, a gateway): rules judge a
                # sensor's silence against its own source's progress (urbanbrain/reading.py)
                src = zlib.crc32(topic.encode())
                for r in readings:
                    r["src"] = src
            return readings, dead
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
        candidates = self.profiles.candidates(topic) if self.profiles else ()
        tags = self.mapper.tags(topic)
        if tags is None and not any(p.topic is not None for p, _ in candidates):
            raise Reject(Reason.BAD_TOPIC, f"topic {topic!r} matches no topic pattern")
        try:
            doc: Any = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            if "utf-8" in str(exc).lower():
                raise Reject(Reason.NOT_UTF8, "payload is not UTF-8 text") from None
            raise Reject(Reason.MALFORMED, f"not JSON: {exc}") from None
        if self._dedup.seen(topic, payload, received_ms):
            raise Reject(Reason.DUPLICATE, "exact resend of a payload seen in the last minute")
        for prof, ptags in candidates:
            if prof.topic is None and tags is None:
                continue
            if prof.matches_device(doc):
                return self._profiled(prof, ptags if prof.topic is not None else tags, topic,
                                      payload, doc, received_ms)
        if tags is None:
            raise Reject(Reason.UNKNOWN_FORMAT, f"topic {topic!r} belongs to device profiles "
                                                "but no profile's device type matches")
        decoded = pick(self.decoders, doc).decode(doc, topic)
        if not decoded:
            raise Reject(Reason.SCHEMA, "payload holds no readings")
        readings: list[Reading] = []
        dead: list[DeadLetter] = []
        partial = self.settings.ingest_partial
        for d in decoded:
            self._one(d, tags, topic, payload, received_ms, partial, readings, dead)
        return readings, dead

    def _profiled(self, prof: Profile, tags: dict[str, str], topic: str, payload: bytes,
                  doc: Any, received_ms: int) -> tuple[list[Reading], list[DeadLetter]]:
        """A payload read by a device profile: field problems and unknown fields become
        dead letters of their own (partial acceptance), unless the profile says reject."""
        partial = prof.partial or self.settings.ingest_partial
        readings: list[Reading] = []
        dead: list[DeadLetter] = []
        found = prof.apply(doc, tags)
        if not found:
            raise Reject(Reason.SCHEMA, f"profile {prof.name}: payload holds no readings")
        for pr in found:
            d = pr.decoded
            if pr.error is not None:
                self.rejected[pr.error.reason.value] += 1
                letter = dead_letter(topic, payload, pr.error.reason, pr.error.message,
                                     received_ms, tags.get("sensor_id"))
                letter["profile"] = prof.name
                dead.append(letter)
                continue
            self.absent += pr.absent
            sid = d.sensor_id or tags.get("sensor_id")
            if pr.problems and partial == "reject":
                fp = pr.problems[0]
                self.rejected[fp.reason.value] += 1
                dead.append(self._field_letter(topic, payload, fp.reason, fp.message,
                                               received_ms, sid, fp.metric, fp.field, prof.name))
                continue
            n_dead = len(dead)
            ok = self._one(d, tags, topic, payload, received_ms, partial, readings, dead,
                           prof.name, {m.metric: m.ref.text for m in prof.metrics})
            for x in dead[n_dead:]:
                x["profile"] = prof.name
            if not ok:
                continue
            for fp in pr.problems:
                self.rejected[fp.reason.value] += 1
                dead.append(self._field_letter(topic, payload, fp.reason, fp.message,
                                               received_ms, sid, fp.metric, fp.field, prof.name))
            if pr.unknown:
                self.rejected[Reason.UNKNOWN_FIELD.value] += 1
                letter = dead_letter(topic, payload, Reason.UNKNOWN_FIELD,
                                     f"profile {prof.name} does not name field(s) "
                                     f"{', '.join(pr.unknown[:20])}", received_ms, sid)
                letter["profile"] = prof.name
                letter["field"] = ",".join(pr.unknown)
                dead.append(letter)
        return readings, dead

    @staticmethod
    def _field_letter(topic: str, payload: bytes, reason: Reason, message: str, received_ms: int,
                      sensor_id: str | None, metric: str, fld: str | None,
                      profile: str | None) -> DeadLetter:
        d = dead_letter(topic, payload, reason, message, received_ms, sensor_id)
        d["metric"] = metric
        if fld:
            d["field"] = fld
        if profile:
            d["profile"] = profile
        return d

    def _one(self, d: DecodedReading, tags: dict[str, str], topic: str, payload: bytes,
             received_ms: int, partial: str, readings: list[Reading], dead: list[DeadLetter],
             profile: str | None = None, fields: dict[str, str] | None = None) -> bool:
        """Normalise one decoded reading into ``readings``/``dead``; False if refused whole."""
        sid = d.sensor_id or tags.get("sensor_id")
        try:
            reading, bad = self._normalise(d, tags, received_ms, partial)
        except Reject as rej:
            self.rejected[rej.reason.value] += 1
            dead.append(dead_letter(topic, payload, rej.reason, rej.message, received_ms, sid))
            return False
        readings.append(reading)
        for name, rej in bad:
            self.rejected[rej.reason.value] += 1
            dead.append(self._field_letter(topic, payload, rej.reason, rej.message, received_ms,
                                           reading["sensor_id"], name,
                                           (fields or {}).get(name), profile))
        return True

    def _normalise(self, d: DecodedReading, tags: dict[str, str], received_ms: int,
                   partial: str = "accept") -> tuple[Reading, list[tuple[str, Reject]]]:
        """The reading, and the metrics refused alone (``partial == "accept"``). Raises
        Reject when the whole reading is refused (bad id, topic, time; no good metric; or
        any bad metric with ``partial == "reject"``)."""
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
        ts = received_ms if d.ts is None else d.ts
        if ts > received_ms + self.settings.ingest_max_future_s * 1000:
            raise Reject(
                Reason.BAD_TIMESTAMP, f"event time {ts} is {(ts - received_ms) / 1000:.0f}s in the future"
            )
        if ts < received_ms - self.settings.ingest_max_past_s * 1000:
            raise Reject(
                Reason.BAD_TIMESTAMP, f"event time {ts} is {(received_ms - ts) / 1000:.0f}s in the past"
            )
        metrics: dict[str, float] = {}
        bad: list[tuple[str, Reject]] = []
        for name, value in d.metrics.items():
            m = METRICS.get(name)
            if m is None:
                rej = Reject(Reason.UNKNOWN_METRIC, f"metric {name!r} is not in the catalogue")
            elif m.domain != domain:
                rej = Reject(
                    Reason.DOMAIN_MISMATCH, f"metric {name!r} belongs to {m.domain}, not {domain}"
                )
            elif not math.isfinite(value):
                rej = Reject(Reason.NOT_FINITE, f"metric {name!r} is {value!r}")
            elif not (m.low <= value <= m.high):
                rej = Reject(
                    Reason.OUT_OF_RANGE,
                    f"{name}={value!r} outside plausible range [{m.low}, {m.high}] {m.unit}",
                )
            else:
                metrics[name] = value
                continue
            if partial == "reject":
                raise rej
            bad.append((name, rej))
        if not metrics:
            if bad:
                raise bad[0][1]
            raise Reject(Reason.SCHEMA, "reading without metrics")
        lat = reg.lat if reg and reg.lat is not None else d.lat
        lon = reg.lon if reg and reg.lon is not None else d.lon
        reading: Reading = {
            "sensor_id": sensor_id, "domain": domain, "kind": kind, "district": district,
            "ts": int(ts), "recv": received_ms, "metrics": metrics, "lat": lat, "lon": lon,
        }
        if flags:
            reading["flags"] = flags
        return reading, bad


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
