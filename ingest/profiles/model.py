"""Device profiles, compiled: what the loader builds and what ingest runs per message.

Why compiled: a profile is read once and turned into plain tuples (field paths split,
scale × unit folded into one ``a·x + b``, sentinels in a frozenset), so applying it to a
message is a few dict look-ups and one multiply-add per field, with no YAML, no string
parsing and no branching on options that don't apply.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from urbanbrain.ingest.decoders.base import DecodedReading
from urbanbrain.ingest.rejects import Reason, Reject
from urbanbrain.ingest.timestamps import ms_from_iso
from urbanbrain.ingest.topics import TopicPattern

_MISSING = object()
UNKNOWN_POLICIES = ("ignore", "dead_letter")
PARTIAL_POLICIES = ("accept", "reject")
EPOCH_FORMATS = {"epoch_s": 1000.0, "epoch_ms": 1.0, "epoch_us": 0.001, "epoch_ns": 1e-6}
TIME_FORMATS = ("iso8601", *EPOCH_FORMATS)


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A field of a payload: a JSON pointer (``/a/b/0``, RFC 6901) or a dotted path
    (``a.b.0``); a numeric step indexes a list."""

    text: str
    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> FieldRef:
        if not isinstance(text, str) or not text:
            raise ValueError("a field is a JSON pointer (/a/b) or a dotted path (a.b)")
        if text.startswith("/"):
            parts = tuple(p.replace("~1", "/").replace("~0", "~") for p in text[1:].split("/"))
        else:
            parts = tuple(text.split("."))
        if any(p == "" for p in parts) and text != "/":
            raise ValueError(f"field {text!r} has an empty step")
        return cls(text, parts)

    def get(self, doc: Any) -> Any:
        """The value, or ``_MISSING``."""
        node = doc
        for p in self.parts:
            if isinstance(node, dict):
                node = node.get(p, _MISSING)
                if node is _MISSING:
                    return _MISSING
            elif isinstance(node, list) and p.isdigit() and int(p) < len(node):
                node = node[int(p)]
            else:
                return _MISSING
        return node


@dataclass(frozen=True, slots=True)
class MetricMap:
    """One vendor field → one canonical metric: ``canonical = raw · a + b``."""

    metric: str
    ref: FieldRef
    a: float
    b: float
    sentinels: frozenset[float]


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """A field of a reading that could not be taken (becomes its own dead letter)."""

    metric: str
    field: str
    reason: Reason
    message: str


@dataclass(slots=True)
class ProfileReading:
    """One reading a profile found in a payload, with what it had to leave out."""

    decoded: DecodedReading
    problems: list[FieldProblem] = field(default_factory=list)
    absent: int = 0  # fields at a sentinel value or missing: not measured, not an error
    unknown: list[str] = field(default_factory=list)  # fields no part of the profile names
    error: Reject | None = None  # this reading (an ``each`` element) refused whole


@dataclass(frozen=True, slots=True)
class Profile:
    """A compiled device profile."""

    name: str
    file: str
    line: int
    topic: TopicPattern | None
    topic_text: str | None
    device_field: FieldRef | None
    device_types: frozenset[str]
    domain: str | None
    kind: str | None
    id_ref: FieldRef | None
    id_tag: str | None
    id_prefix: str
    ts_ref: FieldRef | None
    ts_format: str
    ts_zone: Any  # tzinfo for strptime formats without %z
    each: FieldRef | None
    metrics: tuple[MetricMap, ...]
    unknown_fields: str
    partial: str | None  # None: the settings' default
    known: frozenset[tuple[str, ...]]  # field paths the profile names (unknown-field check)

    def subscription(self) -> str | None:
        return self.topic.subscription() if self.topic is not None else None

    def matches_device(self, doc: Any) -> bool:
        if self.device_field is None:
            return True
        v = self.device_field.get(doc)
        return isinstance(v, (str, int)) and str(v) in self.device_types

    # -- per message ----------------------------------------------------------------------
    def apply(self, doc: Any, tags: dict[str, str]) -> list[ProfileReading]:
        """The readings of ``doc``; raises Reject for what spoils the whole payload."""
        if self.each is not None:
            items = self.each.get(doc)
            if not isinstance(items, list):
                raise Reject(Reason.SCHEMA, f"profile {self.name}: {self.each.text} is not a list")
            out = []
            for it in items:  # one bad element costs only itself
                try:
                    out.append(self._reading(it, tags))
                except Reject as rej:
                    out.append(ProfileReading(DecodedReading(None, {}), error=rej))
            return out
        return [self._reading(doc, tags)]

    def _reading(self, doc: Any, tags: dict[str, str]) -> ProfileReading:
        if not isinstance(doc, dict):
            raise Reject(Reason.SCHEMA, f"profile {self.name}: a reading is a JSON object")
        sensor: str | None = None
        if self.id_ref is not None:
            v = self.id_ref.get(doc)
            if v is _MISSING or not isinstance(v, (str, int)) or isinstance(v, bool):
                raise Reject(Reason.SCHEMA, f"profile {self.name}: no device id at "
                                            f"{self.id_ref.text}")
            sensor = self.id_prefix + str(v)
        elif self.id_tag is not None:
            sensor = self.id_prefix + tags[self.id_tag] if self.id_tag in tags else None
        ts = None
        if self.ts_ref is not None:
            v = self.ts_ref.get(doc)
            if v is not _MISSING and v is not None:
                ts = self._time(v)
        out = ProfileReading(DecodedReading(sensor_id=sensor, metrics={}, ts=ts,
                                            domain=self.domain, kind=self.kind))
        metrics = out.decoded.metrics
        for mm in self.metrics:
            raw = mm.ref.get(doc)
            if raw is _MISSING or raw is None:
                out.absent += 1
                continue
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                if isinstance(raw, str):
                    try:
                        raw = float(raw)
                    except ValueError:
                        raw = None
                if not isinstance(raw, (int, float)) or isinstance(raw, bool):
                    out.problems.append(FieldProblem(
                        mm.metric, mm.ref.text, Reason.SCHEMA,
                        f"{mm.ref.text} is {type(mm.ref.get(doc)).__name__}, not a number"))
                    continue
            if raw in mm.sentinels:
                out.absent += 1
                continue
            try:
                value = float(raw) * mm.a + mm.b
            except OverflowError:
                value = math.inf
            if not math.isfinite(value):
                out.problems.append(FieldProblem(mm.metric, mm.ref.text, Reason.NOT_FINITE,
                                                 f"{mm.ref.text}={raw!r} → {mm.metric} is not "
                                                 "a finite number"))
                continue
            metrics[mm.metric] = value
        if self.unknown_fields == "dead_letter":
            out.unknown = [".".join(p) for p in _leaves(doc, ()) if not self._is_known(p)]
        return out

    def _is_known(self, path: tuple[str, ...]) -> bool:
        for i in range(len(path), 0, -1):
            if path[:i] in self.known:
                return True
        return False

    def _time(self, v: Any) -> int:
        fmt = self.ts_format
        if fmt == "iso8601":
            if not isinstance(v, str):
                raise Reject(Reason.BAD_TIMESTAMP, f"{self.ts_ref.text}: {v!r} is not an ISO "  # type: ignore[union-attr]
                                                   "8601 string")
            return ms_from_iso(v)
        if fmt in EPOCH_FORMATS:
            if isinstance(v, str):
                try:
                    v = float(v)
                except ValueError:
                    raise Reject(Reason.BAD_TIMESTAMP, f"timestamp {v!r} is not a number") from None
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise Reject(Reason.BAD_TIMESTAMP, f"timestamp {v!r} is not a number")
            try:
                ms = v * EPOCH_FORMATS[fmt]
                if not math.isfinite(ms):
                    raise OverflowError
                return int(round(ms))
            except OverflowError:
                raise Reject(Reason.BAD_TIMESTAMP, f"timestamp {v!r} out of range") from None
        if not isinstance(v, str):
            raise Reject(Reason.BAD_TIMESTAMP, f"timestamp {v!r} is not a string")
        try:
            dt = datetime.strptime(v, fmt)
        except ValueError:
            raise Reject(Reason.BAD_TIMESTAMP, f"timestamp {v!r} does not match {fmt!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=self.ts_zone or UTC)
        return int(dt.timestamp() * 1000)


def _leaves(node: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _leaves(v, path + (str(k),))
    elif path:
        yield path


def zone(name: str | None) -> Any:
    """tzinfo of an IANA zone name (None: UTC)."""
    return ZoneInfo(name) if name else None


@dataclass
class ProfileSet:
    """Every loaded profile, with the topic → candidates look-up memoised (bounded)."""

    profiles: tuple[Profile, ...] = ()
    files: tuple[str, ...] = ()
    _memo: dict[str, tuple[tuple[Profile, dict[str, str]], ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.profiles)

    def __len__(self) -> int:
        return len(self.profiles)

    def candidates(self, topic: str) -> tuple[tuple[Profile, dict[str, str]], ...]:
        """Profiles whose topic pattern matches ``topic`` (with its tags), in file order;
        profiles without a topic pattern come last, with no tags."""
        hit = self._memo.get(topic)
        if hit is not None:
            return hit
        out = []
        for p in self.profiles:
            if p.topic is not None:
                tags = p.topic.match(topic)
                if tags is not None:
                    out.append((p, tags))
        out += [(p, {}) for p in self.profiles if p.topic is None]
        res = tuple(out)
        if len(self._memo) >= 200_000:
            self._memo.clear()
        self._memo[topic] = res
        return res

    def subscriptions(self) -> list[str]:
        seen: list[str] = []
        for p in self.profiles:
            s = p.subscription()
            if s and s not in seen:
                seen.append(s)
        return seen
