"""InfluxDB line protocol, built fast and escaped right.

Escaping is where a hostile sensor id becomes an injected point, so the rules live in one
place:

* measurement: ``,`` and space escaped;
* tag keys, tag values, field keys: ``,`` ``=`` and space escaped;
* string field values: ``"`` and ``\\`` escaped;
* newline, carriage return and other control characters can't be escaped in InfluxDB 1.x
  line protocol, and a backslash in a tag would escape our own delimiter, so such
  identifiers are refused (:class:`LineProtocolError`). Ingest rejects them earlier with a
  clear reason; this is the last line of defence.

All numeric fields are written as floats, so a field never changes type between points
(InfluxDB refuses a point whose field type conflicts with the shard's).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")
_MEAS_TABLE = str.maketrans({",": r"\,", " ": r"\ "})
_TAG_TABLE = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STR_TABLE = str.maketrans({'"': r"\"", "\\": "\\\\"})


class LineProtocolError(ValueError):
    """An identifier or value that cannot be represented safely."""


def check_identifier(value: str, what: str = "identifier") -> str:
    """Return ``value`` if it can be a measurement/tag/field name; raise otherwise."""
    if not value:
        raise LineProtocolError(f"empty {what}")
    if _FORBIDDEN.search(value):
        raise LineProtocolError(f"{what} {value!r} holds a control character or backslash")
    return value


def escape_measurement(name: str) -> str:
    return check_identifier(name, "measurement").translate(_MEAS_TABLE)


def escape_tag(value: str) -> str:
    """Escape a tag key, tag value or field key."""
    return check_identifier(value, "tag").translate(_TAG_TABLE)


def escape_string_field(value: str) -> str:
    if "\n" in value or "\r" in value:
        value = value.replace("\r", " ").replace("\n", " ")
    return '"' + value.translate(_STR_TABLE) + '"'


def format_field_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        f = float(value)
        if not math.isfinite(f):
            raise LineProtocolError(f"non-finite field value {value!r}")
        return repr(f)
    if isinstance(value, str):
        return escape_string_field(value)
    raise LineProtocolError(f"unsupported field value type {type(value).__name__}")


def tagset(tags: Mapping[str, str | None]) -> str:
    """``,k=v,k=v`` sorted by key (InfluxDB's preferred order); empty values are left out."""
    parts = [
        f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()) if v not in (None, "")
    ]
    return "".join(parts)


def line(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, object],
    ts_ms: int | None = None,
) -> str:
    """One point. Fields whose value is None are left out; a point needs at least one."""
    fieldset = ",".join(
        f"{escape_tag(k)}={format_field_value(v)}" for k, v in fields.items() if v is not None
    )
    if not fieldset:
        raise LineProtocolError(f"point of {measurement!r} without fields")
    head = escape_measurement(measurement) + tagset(tags)
    return f"{head} {fieldset}" if ts_ms is None else f"{head} {fieldset} {int(ts_ms)}"


class ReadingLineEncoder:
    """Encodes batches of normalised readings into line protocol (precision: ms).

    Tag sets and field keys are escaped once and cached: tags are bounded-cardinality
    identifiers (sensor, kind, district), so the cache is bounded by the registry.
    Measurement = the reading's domain.
    """

    __slots__ = ("_tags", "_fkeys")

    def __init__(self) -> None:
        self._tags: dict[tuple[str, str, str, str], str] = {}
        self._fkeys: dict[str, str] = {}

    def _head(self, domain: str, sensor: str, kind: str, district: str) -> str:
        key = (domain, sensor, kind, district)
        head = self._tags.get(key)
        if head is None:
            head = escape_measurement(domain) + tagset(
                {"district": district, "kind": kind, "sensor": sensor}
            )
            if len(self._tags) < 500_000:
                self._tags[key] = head
        return head

    def _fkey(self, name: str) -> str:
        k = self._fkeys.get(name)
        if k is None:
            k = self._fkeys[name] = escape_tag(name)
        return k

    def encode(self, readings: Iterable[Mapping]) -> tuple[list[str], list[tuple[Mapping, str]]]:
        """Lines for the readings, and the readings that could not be encoded (with why)."""
        out: list[str] = []
        bad: list[tuple[Mapping, str]] = []
        append = out.append
        for r in readings:
            try:
                head = self._head(r["domain"], r["sensor_id"], r["kind"], r["district"])
                fields = []
                for name, value in r["metrics"].items():
                    f = float(value)
                    if f != f or f in (math.inf, -math.inf):
                        raise LineProtocolError(f"non-finite value for {name}")
                    fields.append(f"{self._fkey(name)}={f!r}")
                if not fields:
                    raise LineProtocolError("reading without metrics")
                append(f"{head} {','.join(fields)} {int(r['ts'])}")
            except (LineProtocolError, KeyError, TypeError, ValueError) as exc:
                bad.append((r, f"{type(exc).__name__}: {exc}"))
        return out, bad
