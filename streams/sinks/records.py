"""Closed windows as Kafka records on ``aggregates`` for the rules engine.

The record format is the readings batch codec (:func:`urbanbrain.reading.encode_batch`), each
entry *reading-shaped* (what ``Evaluator.observe`` takes): ``ts`` = window end, ``metrics`` =
the window mean under the canonical metric name, ``<metric>_min/_max/_count/_last``, and the
numeric indices (``congestion_index``, ``speed_ratio``, ``flow_vph``, ``aqi_us``, ``aqi_cn``,
``voltage_deviation_pct`` ...). Extra keys ``window`` (``1m``/``5m``), ``window_start`` and
``window_end`` say which window it is; (sensor_id, window, window_start) identifies it, and a
consumer should treat a repeat (after a worker failure) as an update.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..aggregates import Stats
from ..derive import NO_META, IndexPoint


def window_records(domain: str, size: str, start: int, end: int,
                   rows: Mapping[str, Mapping[str, Stats]],
                   meta: Mapping[str, tuple[str, str]], points: Iterable[IndexPoint],
                   now_ms: int) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for sensor, metrics in rows.items():
        district, kind = meta.get(sensor, NO_META)
        m: dict[str, float] = {}
        for name, st in metrics.items():
            keys = _KEYS.get(name)
            if keys is None:
                keys = _KEYS[name] = (f"{name}_min", f"{name}_max", f"{name}_count",
                                      f"{name}_last")
            mean = st.mean
            if mean == mean:  # no NaN in a record: a speed over no vehicle is left out
                m[name] = mean
            m[keys[0]] = st.min
            m[keys[1]] = st.max
            m[keys[2]] = float(st.count)
            m[keys[3]] = st.last
        out[sensor] = {
            "sensor_id": sensor, "domain": domain, "kind": kind, "district": district,
            "ts": end, "recv": now_ms, "metrics": m, "flags": ["aggregate"],
            "window": size, "window_start": start, "window_end": end,
        }
    for p in points:
        rec = out.get(p.sensor)
        if rec is None:
            continue
        m = rec["metrics"]
        aqi = p.measurement == "aqi"
        for k, v in p.fields.items():
            if isinstance(v, float):
                m.setdefault(f"aqi_{p.tags['standard']}" if aqi and k == "aqi" else k, v)
    return list(out.values())


#: metric → its ``_min``/``_max``/``_count``/``_last`` keys (built once, not per row)
_KEYS: dict[str, tuple[str, str, str, str]] = {}
