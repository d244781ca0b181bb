"""Line protocol of closed windows: ``agg_sensor_<size>``, the index measurements, the
roll-ups. Points are stamped with the window *start* (Grafana's convention for a bucket), so
re-emitting a window (replay, late roll-up partial) overwrites the same point."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from urbanbrain.lineprotocol import (
    LineProtocolError,
    escape_measurement,
    escape_string_field,
    escape_tag,
    tagset,
)

from ..aggregates import SUM_METRICS, Stats
from ..derive import NO_META, IndexPoint

_HEADS: dict[tuple, str] = {}
_KEYS: dict[str, str] = {}
_STRINGS: dict[str, str] = {}  # string field value → escaped (categories, colours, advice)


def _head(measurement: str, tags: Mapping[str, str], hkey: tuple | None = None) -> str:
    """Escaped measurement and tag set, cached under ``hkey`` (default: the measurement
    and the tags' items; raises LineProtocolError on a bad tag)."""
    if hkey is None:
        hkey = (measurement, *tags.items())
    head = _HEADS.get(hkey)
    if head is None:
        head = escape_measurement(measurement) + tagset(tags)
        if len(_HEADS) < 1_000_000:
            _HEADS[hkey] = head
    return head


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, object],
         ts_ms: int) -> str:
    """Same output as :func:`urbanbrain.lineprotocol.line`, with escaped heads, field keys
    and string values cached: window outputs repeat the same few thousand sensors, and the
    same few categories and advice texts, every minute."""
    return f"{_head(measurement, tags)} {field_set(measurement, fields)} {int(ts_ms)}"


def field_set(measurement: str, fields: Mapping[str, object]) -> str:
    """``k=v,k=v`` of a point (None values left out), floats as ``repr``."""
    parts = []
    for k, v in fields.items():
        if v is None:
            continue
        ek = _KEYS.get(k)
        if ek is None:
            ek = _KEYS[k] = escape_tag(k)
        if v.__class__ is float:
            if not math.isfinite(v):  # type: ignore[arg-type]
                raise LineProtocolError(f"non-finite field value {v!r}")
            parts.append(f"{ek}={v!r}")
        elif isinstance(v, str):
            sv = _STRINGS.get(v)
            if sv is None:
                sv = escape_string_field(v)
                if len(_STRINGS) < 10_000:
                    _STRINGS[v] = sv
            parts.append(f"{ek}={sv}")
        else:
            f = float(v)  # type: ignore[arg-type]
            if not math.isfinite(f):
                raise LineProtocolError(f"non-finite field value {v!r}")
            parts.append(f"{ek}={f!r}")
    if not parts:
        raise LineProtocolError(f"point of {measurement!r} without fields")
    return ",".join(parts)


def sensor_fields(metrics: Mapping[str, Stats]) -> str:
    """The field set of a sensor's window: ``<metric>_count/_mean/_min/_max/_last`` (and
    ``_sum`` for counting metrics), metrics sorted by name. Built as text in one pass
    (not a dict for :func:`line`): a window closes for every sensor of the city each
    minute, and this was a tenth of the worker's CPU."""
    parts: list[str] = []
    for name in sorted(metrics):
        st = metrics[name]
        ek = _KEYS.get(name)
        if ek is None:
            ek = _KEYS[name] = escape_tag(name)
        lo, hi, last = st.min, st.max, st.last
        if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(last)):
            raise LineProtocolError(f"non-finite field value in {name!r}")
        mean = st.mean
        text = f"{ek}_count={float(st.count)!r},"
        if mean == mean:  # NaN: a weighted mean over no weight (a loop no vehicle passed)
            if not math.isfinite(mean):
                raise LineProtocolError(f"non-finite field value {mean!r}")
            text += f"{ek}_mean={float(mean)!r},"
        text += f"{ek}_min={float(lo)!r},{ek}_max={float(hi)!r},{ek}_last={float(last)!r}"
        if name in SUM_METRICS:
            total = float(st.sum)
            if not math.isfinite(total):
                raise LineProtocolError(f"non-finite field value {total!r}")
            text += f",{ek}_sum={total!r}"
        parts.append(text)
    if not parts:
        raise LineProtocolError("window point without fields")
    return ",".join(parts)


def window_lines(domain: str, size: str, start: int, rows: Mapping[str, Mapping[str, Stats]],
                 meta: Mapping[str, tuple[str, str]], points: Iterable[IndexPoint], *,
                 sensors: bool = True) -> tuple[list[str], list[tuple[str, str]]]:
    """Lines of one closed window of one partition, and (sensor, why) for refused ones.
    ``sensors=False``: the index points only (a hop not stored per sensor)."""
    out: list[str] = []
    bad: list[tuple[str, str]] = []
    meas = f"agg_sensor_{size}"
    start = int(start)
    for sensor, metrics in (rows.items() if sensors else ()):
        district, kind = meta.get(sensor, NO_META)
        try:
            head = _head(meas, {"sensor": sensor, "district": district, "domain": domain,
                                "kind": kind})
            out.append(f"{head} {sensor_fields(metrics)} {start}")
        except LineProtocolError as exc:
            bad.append((sensor, str(exc)))
    for p in points:
        district = meta.get(p.sensor, NO_META)[0]
        try:
            # the head's cache key, built without the tag dict (only a miss needs it)
            hkey = (p.measurement, p.sensor, district, size, *p.tags.items())
            head = _HEADS.get(hkey)
            if head is None:
                head = _head(p.measurement, {"sensor": p.sensor, "district": district,
                                             "window": size, **p.tags}, hkey)
            out.append(f"{head} {field_set(p.measurement, p.fields)} {start}")
        except LineProtocolError as exc:
            bad.append((p.sensor, str(exc)))
    return out, bad

