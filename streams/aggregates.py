"""Per-(sensor, metric) aggregates of readings: built per Kafka record, merged per window.

Why this shape: one Kafka record carries hundreds of readings of one partition, so the hot
path is one vectorised pandas group-by per agent batch (never a Python step per reading
beyond flattening the dicts). What it produces per (record, pane) is a *delta*: count, sum,
sum of squares, min, max and the last value (by event time) per sensor and metric. Deltas
are associative, so a window is the merge of its deltas, a 5-min hopping window the merge
of its five 1-min panes ("panes", Li et al., *No pane, no gain*, SIGMOD Record 2005), and a
replayed record rewrites its own delta instead of counting twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd

#: Columns of a delta / merged window frame, one row per (sensor, metric).
COLUMNS = ("sensor", "metric", "count", "sum", "sumsq", "min", "max", "last_ts", "last")
_NUMERIC = COLUMNS[2:]

#: Metrics whose sum over a window means something (vehicles counted); others are levels
#: or rates, where a sum over readings depends on the reporting interval.
SUM_METRICS = frozenset({"vehicle_count", "rain_mm"})


@dataclass(frozen=True, slots=True)
class Stats:
    """Window statistics of one metric of one sensor."""

    count: int
    sum: float
    sumsq: float
    min: float
    max: float
    last_ts: int
    last: float

    @property
    def mean(self) -> float:
        return self.sum / self.count

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0), from the running sums."""
        m = self.mean
        return float(np.sqrt(max(self.sumsq / self.count - m * m, 0.0)))


@dataclass(slots=True)
class Flat:
    """Readings of several records flattened to one row per (reading, metric)."""

    offset: np.ndarray  # int64: Kafka offset of the record the reading came in
    pane: np.ndarray  # int64: pane start, ms
    sensor: list[str]
    metric: list[str]
    ts: np.ndarray  # int64
    value: np.ndarray  # float64


def flatten(records: Sequence[tuple[int, Sequence[Mapping]]], pane_ms: int) -> Flat:
    """One row per metric value; non-numeric or non-finite values are left out (the raw
    path dead-letters them already)."""
    offs: list[int] = []
    sens: list[str] = []
    mets: list[str] = []
    tss: list[int] = []
    vals: list[object] = []
    for offset, readings in records:
        for r in readings:
            sid = r["sensor_id"]
            ts = r["ts"]
            for name, v in r["metrics"].items():
                offs.append(offset)
                sens.append(sid)
                mets.append(name)
                tss.append(ts)
                vals.append(v)
    try:
        value = np.asarray(vals, dtype=np.float64)
    except (TypeError, ValueError):
        value = np.asarray([_num(v) for v in vals], dtype=np.float64)
    ts_arr = np.asarray(tss, dtype=np.int64)
    off_arr = np.asarray(offs, dtype=np.int64)
    ok = np.isfinite(value)
    if not ok.all():
        idx = np.flatnonzero(ok)
        value, ts_arr, off_arr = value[idx], ts_arr[idx], off_arr[idx]
        sens = [sens[i] for i in idx]
        mets = [mets[i] for i in idx]
    return Flat(off_arr, ts_arr // pane_ms * pane_ms, sens, mets, ts_arr, value)


def _num(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def deltas(flat: Flat) -> dict[tuple[int, int], pd.DataFrame]:
    """Group a flattened batch into one delta frame per (record offset, pane)."""
    if not len(flat.value):
        return {}
    df = pd.DataFrame({
        "offset": flat.offset, "pane": flat.pane, "sensor": flat.sensor, "metric": flat.metric,
        "ts": flat.ts, "v": flat.value,
    })
    df["v2"] = flat.value * flat.value
    # Stable sort by event time: "last" is the value with the latest event time, ties going
    # to the reading that arrived later.
    df = df.sort_values("ts", kind="stable")
    g = df.groupby(["offset", "pane", "sensor", "metric"], sort=False)
    agg = g.agg(
        count=("v", "size"), sum=("v", "sum"), sumsq=("v2", "sum"), min=("v", "min"),
        max=("v", "max"), last_ts=("ts", "last"), last=("v", "last"),
    ).reset_index()
    out: dict[tuple[int, int], pd.DataFrame] = {}
    for (off, pane), idx in agg.groupby(["offset", "pane"], sort=False).indices.items():
        out[(int(off), int(pane))] = agg.iloc[idx][list(COLUMNS)].reset_index(drop=True)
    return out


def merge(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Merge delta/window frames into one row per (sensor, metric). Order matters only for
    ties of ``last_ts``: pass frames oldest first."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: [] for c in COLUMNS})
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frames) == 1:
        return df
    df = df.sort_values("last_ts", kind="stable")
    return df.groupby(["sensor", "metric"], sort=False).agg(
        count=("count", "sum"), sum=("sum", "sum"), sumsq=("sumsq", "sum"), min=("min", "min"),
        max=("max", "max"), last_ts=("last_ts", "last"), last=("last", "last"),
    ).reset_index()


def by_sensor(frame: pd.DataFrame) -> dict[str, dict[str, Stats]]:
    """sensor → metric → Stats (once per closed window, so plain Python is fine here)."""
    out: dict[str, dict[str, Stats]] = {}
    cols = [frame[c].tolist() for c in COLUMNS]
    for s, m, n, sm, sq, lo, hi, lts, last in zip(*cols):
        out.setdefault(s, {})[m] = Stats(int(n), sm, sq, lo, hi, int(lts), last)
    return out


def encode_delta(frame: pd.DataFrame, meta: Mapping[str, tuple[str, str]]) -> bytes:
    """Changelog value of a delta: columns as lists, plus district/kind of its sensors."""
    doc: dict[str, object] = {c: frame[c].tolist() for c in COLUMNS}
    doc["meta"] = {s: meta[s] for s in set(doc["sensor"]) if s in meta}  # type: ignore[arg-type]
    return orjson.dumps(doc)


def decode_delta(value: bytes) -> tuple[pd.DataFrame, dict[str, tuple[str, str]]]:
    doc = orjson.loads(value)
    meta = {s: (d, k) for s, (d, k) in doc.pop("meta", {}).items()}
    frame = pd.DataFrame({c: doc[c] for c in COLUMNS})
    for c in ("count", "last_ts"):
        frame[c] = frame[c].astype(np.int64)
    for c in ("sum", "sumsq", "min", "max", "last"):
        frame[c] = frame[c].astype(np.float64)
    return frame, meta
