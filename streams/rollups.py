"""District and city roll-ups of 1-min windows, assembled from per-partition partials.

Why partials: a district's sensors are spread over all partitions, and so over all
workers; each partition closes its windows on its own watermark. So every partition, when it
closes a 1-min pane, sends a small *partial* (per district: counts, sums, min, max per metric
and per index), even an empty one, to a topic keyed by domain. The roll-up agent merges the
partials of a (domain, window) and writes ``district_1m`` and ``city_1m`` when every source
partition has reported, or after a grace period (idle partitions never close windows). A
partial arriving after that re-writes the same points (same tags and time), so InfluxDB ends
up with the complete roll-up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .aggregates import SUM_METRICS, Stats
from .derive import IndexPoint

#: Level-like metrics where the sum of the sensors' means is the district total.
TOTAL_METRICS = frozenset({"load_mw", "flow_ls", "current_a"})
#: Index fields rolled up per district: (measurement, field, tag filter) → roll-up name.
INDEX_ROLLUPS: tuple[tuple[str, str, tuple[str, str] | None, str], ...] = (
    ("traffic_index", "congestion_index", None, "congestion_index"),
    ("traffic_index", "flow_vph", None, "flow_vph"),
    ("aqi", "aqi", ("standard", "us"), "aqi_us"),
    ("aqi", "aqi", ("standard", "cn"), "aqi_cn"),
    ("power_index", "voltage_deviation_pct", None, "voltage_deviation_pct"),
    ("power_index", "frequency_deviation_hz", None, "frequency_deviation_hz"),
)
#: Index roll-ups reported as a total (sum over sensors) rather than mean/min/max.
TOTAL_INDICES = frozenset({"flow_vph"})


def partial(domain: str, start: int, end: int, src: str,
            rows: Mapping[str, Mapping[str, Stats]], meta: Mapping[str, tuple[str, str]],
            points: Iterable[IndexPoint]) -> dict[str, Any]:
    """The partial roll-up of one partition's closed 1-min window (rows may be empty)."""
    districts: dict[str, dict[str, Any]] = {}
    for sensor, metrics in rows.items():
        d = districts.setdefault(meta.get(sensor, ("unknown", ""))[0], {"sensors": 0, "m": {}, "i": {}})
        d["sensors"] += 1
        for name, st in metrics.items():
            acc = d["m"].get(name)
            nw = st.count if st.nw < 0 else st.nw
            if acc is None:
                # count, sum, min, max, Σ sensor means, sensors, Σ w·v, Σ w, unweighted
                d["m"][name] = [st.count, st.sum, st.min, st.max, st.reading_mean, 1,
                                st.wsum, st.wn, nw]
            else:
                acc[0] += st.count
                acc[1] += st.sum
                acc[2] = min(acc[2], st.min)
                acc[3] = max(acc[3], st.max)
                acc[4] += st.reading_mean
                acc[5] += 1
                acc[6] += st.wsum
                acc[7] += st.wn
                acc[8] += nw
    for p in points:
        for meas, fld, tag, name in INDEX_ROLLUPS:
            if p.measurement != meas or (tag and p.tags.get(tag[0]) != tag[1]):
                continue
            v = p.fields.get(fld)
            if not isinstance(v, float):
                continue
            d = districts.setdefault(meta.get(p.sensor, ("unknown", ""))[0],
                                     {"sensors": 0, "m": {}, "i": {}})
            _add_index(d["i"], name, [1, v, v, v])
    return {"v": 1, "domain": domain, "start": start, "end": end, "src": src,
            "districts": districts}


def _add_index(acc: dict[str, list], name: str, val: list) -> None:
    a = acc.get(name)
    if a is None:
        acc[name] = list(val)
    else:
        a[0] += val[0]
        a[1] += val[1]
        a[2] = min(a[2], val[2])
        a[3] = max(a[3], val[3])


def _merge_district(into: dict[str, Any], d: Mapping[str, Any]) -> None:
    into["sensors"] += d["sensors"]
    for name, v in d["m"].items():
        a = into["m"].get(name)
        if a is None:
            into["m"][name] = list(v)
        else:
            a[0] += v[0]
            a[1] += v[1]
            a[2] = min(a[2], v[2])
            a[3] = max(a[3], v[3])
            a[4] += v[4]
            a[5] += v[5]
            if len(a) >= 9 and len(v) >= 9:
                a[6] += v[6]
                a[7] += v[7]
                a[8] += v[8]
            elif len(a) >= 9:  # a partial of an older worker: weights unknown
                a[8] += v[0]
    for name, v in d["i"].items():
        _add_index(into["i"], name, v)


def merge_partials(partials: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """district → merged statistics of all given partials."""
    out: dict[str, dict[str, Any]] = {}
    for p in partials:
        for district, d in p["districts"].items():
            _merge_district(out.setdefault(district, {"sensors": 0, "m": {}, "i": {}}), d)
    return out


def fields_of(d: Mapping[str, Any]) -> dict[str, float]:
    """InfluxDB fields of a district (or the city) from merged statistics."""
    f: dict[str, float] = {"sensors": float(d["sensors"])}
    for name, (n, s, lo, hi, msum, ns, *w) in sorted(d["m"].items()):
        f[f"{name}_count"] = float(n)
        if len(w) == 3 and w[2] == 0:  # every reading weighted (speed by vehicle count)
            if w[1] > 0:
                f[f"{name}_mean"] = w[0] / w[1]
        else:
            f[f"{name}_mean"] = s / n
        f[f"{name}_min"] = float(lo)
        f[f"{name}_max"] = float(hi)
        if name in SUM_METRICS:
            f[f"{name}_sum"] = float(s)
        if name in TOTAL_METRICS:
            f[f"{name}_total"] = float(msum)
    for name, (n, s, lo, hi) in sorted(d["i"].items()):
        if name in TOTAL_INDICES:
            f[f"{name}_total"] = float(s)
            continue
        f[f"{name}_mean"] = s / n
        f[f"{name}_min"] = float(lo)
        f[f"{name}_max"] = float(hi)
    return f


def rollup_points(domain: str, merged: Mapping[str, Mapping[str, Any]], size: str = "1m"
                  ) -> list[tuple[str, dict[str, str], dict[str, float]]]:
    """(measurement, tags, fields) for district_<size> of each district and city_<size>
    (1m; 1h from the hourly partials of streams/hourly.py)."""
    out: list[tuple[str, dict[str, str], dict[str, float]]] = []
    city: dict[str, Any] = {"sensors": 0, "m": {}, "i": {}}
    for district, d in sorted(merged.items()):
        if d["sensors"] == 0 and not d["i"]:
            continue
        out.append((f"district_{size}", {"district": district, "domain": domain},
                    fields_of(d)))
        _merge_district(city, d)
    if out:
        fields = fields_of(city)
        fields["districts"] = float(len(out))
        out.append((f"city_{size}", {"domain": domain}, fields))
    return out
