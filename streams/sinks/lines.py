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
from ..derive import IndexPoint

_HEADS: dict[tuple, str] = {}
_KEYS: dict[str, str] = {}


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, object],
         ts_ms: int) -> str:
    """Same output as :func:`urbanbrain.lineprotocol.line`, with escaped heads and field keys
    cached: window outputs repeat the same few thousand sensors every minute."""
    hkey = (measurement, *sorted(tags.items()))
    head = _HEADS.get(hkey)
    if head is None:
        head = escape_measurement(measurement) + tagset(tags)
        if len(_HEADS) < 1_000_000:
            _HEADS[hkey] = head
    parts = []
    for k, v in fields.items():
        if v is None:
            continue
        ek = _KEYS.get(k)
        if ek is None:
            ek = _KEYS[k] = escape_tag(k)
        if isinstance(v, str):
            parts.append(f"{ek}={escape_string_field(v)}")
        else:
            f = float(v)  # type: ignore[arg-type]
            if not math.isfinite(f):
                raise LineProtocolError(f"non-finite field value {v!r}")
            parts.append(f"{ek}={f!r}")
    if not parts:
        raise LineProtocolError(f"point of {measurement!r} without fields")
    return f"{head} {','.join(parts)} {int(ts_ms)}"


def sensor_fields(metrics: Mapping[str, Stats]) -> dict[str, float]:
    """``<metric>_count/_mean/_min/_max/_last`` (and ``_sum`` for counting metrics)."""
    f: dict[str, float] = {}
    for name, st in sorted(metrics.items()):
        f[f"{name}_count"] = float(st.count)
        mean = st.mean
        if mean == mean:  # NaN: a weighted mean over no weight (a loop no vehicle passed)
            f[f"{name}_mean"] = mean
        f[f"{name}_min"] = st.min
        f[f"{name}_max"] = st.max
        f[f"{name}_last"] = st.last
        if name in SUM_METRICS:
            f[f"{name}_sum"] = st.sum
    return f


def window_lines(domain: str, size: str, start: int, rows: Mapping[str, Mapping[str, Stats]],
                 meta: Mapping[str, tuple[str, str]], points: Iterable[IndexPoint]
                 ) -> tuple[list[str], list[tuple[str, str]]]:
    """Lines of one closed window of one partition, and (sensor, why) for refused ones."""
    out: list[str] = []
    bad: list[tuple[str, str]] = []
    meas = f"agg_sensor_{size}"
    for sensor, metrics in rows.items():
        district, kind = meta.get(sensor, ("", ""))
        try:
            out.append(line(meas, {"sensor": sensor, "district": district, "domain": domain,
                                   "kind": kind}, sensor_fields(metrics), start))
        except LineProtocolError as exc:
            bad.append((sensor, str(exc)))
    for p in points:
        district, _ = meta.get(p.sensor, ("", ""))
        try:
            out.append(line(p.measurement, {"sensor": p.sensor, "district": district,
                                            "window": size, **p.tags}, p.fields, start))
        except LineProtocolError as exc:
            bad.append((p.sensor, str(exc)))
    return out, bad
