"""Per-(sensor, metric) aggregates of readings: built per Kafka record, merged per window.

Why this shape: one Kafka record carries hundreds of readings of one partition, so the hot
path is one vectorised pandas group-by per agent batch (never a Python step per reading
beyond flattening the dicts). What it produces per (record, pane) is a *delta*: count, sum,
sum of squares, min, max and the last value (by event time) per sensor and metric. Deltas
are associative, so a window is the merge of its deltas, a 5-min hopping window the merge
of its five 1-min panes ("panes", Li et al., *No pane, no gain*, SIGMOD Record 2005), and a
replayed record rewrites its own delta instead of counting twice.

Weighted metrics: a loop's speed is the mean speed of the vehicles of its interval, so a
window's speed is the mean over the window's *vehicles*, not over its readings: each
reading's speed weighs by the vehicle count of the same reading (:data:`WEIGHTED_BY`). A
delta carries ``wsum`` (Σ weight·value), ``wn`` (Σ weight) and ``nw`` (readings without a
weight); see :attr:`Stats.mean` for how a window's mean is chosen from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import orjson
import pandas as pd

#: Columns of a delta / merged window frame, one row per (sensor, metric).
COLUMNS = ("sensor", "metric", "count", "sum", "sumsq", "min", "max", "last_ts", "last",
           "wsum", "wn", "nw")
_NUMERIC = COLUMNS[2:]
_DTYPES = {c: np.int64 if c in ("count", "last_ts", "nw") else np.float64 for c in _NUMERIC}
_INT_COLUMNS = ("count", "last_ts", "nw")

#: metric → the metric of the same reading that weighs it in a window's mean. A loop's
#: ``speed_kmh`` is the mean speed of the ``vehicle_count`` vehicles of its interval, so the
#: window's speed is Σ count·speed / Σ count: the time-mean speed of the window's vehicles,
#: exactly what the loop would have reported for the whole window.
WEIGHTED_BY: dict[str, str] = {"speed_kmh": "vehicle_count"}

#: Metrics whose sum over a window means something (vehicles counted); others are levels
#: or rates, where a sum over readings depends on the reporting interval.
SUM_METRICS = frozenset({"vehicle_count", "rain_mm"})


class Frame:
    """Columns (:data:`COLUMNS` → numpy arrays) of a delta or a window, one row per
    (sensor, metric). Not a DataFrame: one is built per record and pane, and a pandas
    DataFrame costs ~1 ms to construct, more than the arithmetic it holds."""

    __slots__ = ("cols", "rows")

    def __init__(self, cols: Mapping[str, np.ndarray]) -> None:
        self.cols = dict(cols)
        self.rows = len(self.cols["count"])

    @classmethod
    def empty(cls) -> Frame:
        return cls({c: np.asarray([], dtype=object if c in ("sensor", "metric") else
                                  np.int64 if c in _INT_COLUMNS else np.float64)
                    for c in COLUMNS})

    def __getitem__(self, column: str) -> np.ndarray:
        return self.cols[column]

    def __len__(self) -> int:
        return self.rows

    def to_pandas(self) -> pd.DataFrame:
        return pd.DataFrame({c: self.cols[c] for c in COLUMNS})


class Stats(NamedTuple):
    """Window statistics of one metric of one sensor.

    A named tuple, not a frozen dataclass: a window closes for every sensor of the city
    each minute, and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per
    field) was a tenth of the worker's CPU on one-reading-a-minute loads; a tuple is built
    in C (:func:`by_sensor`)."""

    count: int
    sum: float
    sumsq: float
    min: float
    max: float
    last_ts: int
    last: float
    wsum: float = 0.0  # Σ weight · value over readings that carried a weight
    wn: float = 0.0  # Σ weight
    nw: int = -1  # readings without a weight (-1: unknown, treated as all of them)

    @property
    def mean(self) -> float:
        """The window's mean: weighted when *every* reading carried its weight (a loop's
        speed with its vehicle count): Σ w·v / Σ w, and NaN when Σ w is 0 (no vehicle, no
        speed). Otherwise (metrics without weights, or a device that reports speed without
        counts) the mean of the readings."""
        if self.nw == 0:
            return self.wsum / self.wn if self.wn > 0 else float("nan")
        return self.sum / self.count

    @property
    def reading_mean(self) -> float:
        """The plain mean of the readings' values, weights ignored."""
        return self.sum / self.count

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0) of the readings, from the running sums."""
        m = self.sum / self.count
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
    weight: np.ndarray | None = None  # float64, NaN = no weight; None = no weighted metric


def flatten(records: Sequence[tuple[int, Sequence[Mapping]]], pane_ms: int) -> Flat:
    """One row per metric value; non-numeric or non-finite values are left out (the raw
    path dead-letters them already). A metric of :data:`WEIGHTED_BY` gets the value of its
    weight in the same reading (NaN when absent or not a finite number ≥ 0)."""
    rec_offsets: list[int] = []
    rec_rows: list[int] = []  # rows (metric values) per record
    sens: list[str] = []
    mets: list[str] = []
    read_ts: list[int] = []
    read_rows: list[int] = []  # rows per reading
    vals: list[object] = []
    wrows: list[int] = []
    wvals: list[object] = []
    weighted = WEIGHTED_BY.items()
    for offset, readings in records:
        before = len(vals)
        for r in readings:
            m = r["metrics"]
            k = len(m)
            if not k:
                continue
            base = len(vals)
            mets += m
            vals += m.values()
            sens += [r["sensor_id"]] * k
            read_ts.append(r["ts"])
            read_rows.append(k)
            for wm, wby in weighted:
                if wm in m:
                    wrows.append(base + list(m).index(wm))
                    wvals.append(m.get(wby))
        rec_offsets.append(offset)
        rec_rows.append(len(vals) - before)
    ts_arr = np.repeat(np.asarray(read_ts, dtype=np.int64), read_rows)
    off_arr = np.repeat(np.asarray(rec_offsets, dtype=np.int64), rec_rows)
    try:
        value = np.asarray(vals, dtype=np.float64)
    except (TypeError, ValueError):
        value = np.asarray([_num(v) for v in vals], dtype=np.float64)
    weight = None
    if wrows:
        weight = np.full(len(value), np.nan)
        try:
            w = np.asarray(wvals, dtype=np.float64)
        except (TypeError, ValueError):
            w = np.asarray([_num(v) for v in wvals], dtype=np.float64)
        weight[np.asarray(wrows, dtype=np.int64)] = np.where(w >= 0, w, np.nan)
    ok = np.isfinite(value)
    if not ok.all():
        idx = np.flatnonzero(ok)
        value, ts_arr, off_arr = value[idx], ts_arr[idx], off_arr[idx]
        weight = None if weight is None else weight[idx]
        sens = [sens[i] for i in idx]
        mets = [mets[i] for i in idx]
    return Flat(off_arr, ts_arr // pane_ms * pane_ms, sens, mets, ts_arr, value, weight)


def _num(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _reduce(keys: Sequence[np.ndarray], ts: np.ndarray, cols: Mapping[str, np.ndarray],
            ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Sort rows by ``keys`` (first = primary) then event time then arrival, and reduce each
    run of equal keys. Returns (sort order, run starts, reduced columns).

    Why not ``DataFrame.groupby().agg()``: it costs ~10 ms of pandas overhead per call,
    and this runs once per (partition, batch); the numpy version is a lexsort and a few
    ``ufunc.reduceat`` calls (about 40× faster on a 100-reading record)."""
    n = len(ts)
    arrival = np.arange(n)
    order = np.lexsort((arrival, ts, *reversed(keys)))
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for k in keys:
        ks = k[order]
        change[1:] |= ks[1:] != ks[:-1]
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], n) - 1
    out: dict[str, np.ndarray] = {}
    for name, (how, col) in cols.items():
        v = col[order]
        if how == "sum":
            out[name] = np.add.reduceat(v, starts)
        elif how == "min":
            out[name] = np.minimum.reduceat(v, starts)
        elif how == "max":
            out[name] = np.maximum.reduceat(v, starts)
        else:  # last
            out[name] = v[ends]
    return order, starts, out


def deltas(flat: Flat) -> dict[tuple[int, int], Frame]:
    """Group a flattened batch into one delta frame per (record offset, pane).

    "last" is the value with the latest event time, ties going to the reading that
    arrived later."""
    if not len(flat.value):
        return {}
    sensor_codes, sensors = pd.factorize(np.asarray(flat.sensor, dtype=object))
    metric_codes, metrics = pd.factorize(np.asarray(flat.metric, dtype=object))
    v = flat.value
    if flat.weight is None:
        wsum, wn = np.zeros(len(v)), np.zeros(len(v))
        nw = np.ones(len(v), dtype=np.int64)
    else:
        has = np.isfinite(flat.weight)
        wn = np.where(has, flat.weight, 0.0)
        wsum = wn * v
        nw = (~has).astype(np.int64)
    order, starts, agg = _reduce(
        (flat.offset, flat.pane, sensor_codes, metric_codes), flat.ts,
        {"count": ("sum", np.ones(len(v), dtype=np.int64)), "sum": ("sum", v),
         "sumsq": ("sum", v * v), "min": ("min", v), "max": ("max", v),
         "last_ts": ("last", flat.ts), "last": ("last", v),
         "wsum": ("sum", wsum), "wn": ("sum", wn), "nw": ("sum", nw)},
    )
    first = order[starts]
    off, pane = flat.offset[first], flat.pane[first]
    sens = sensors[sensor_codes[first]]
    mets = metrics[metric_codes[first]]
    # runs of one (offset, pane): keys are sorted, so each is a contiguous slice
    cut = np.flatnonzero((off[1:] != off[:-1]) | (pane[1:] != pane[:-1])) + 1
    bounds = np.concatenate(([0], cut, [len(off)]))
    out: dict[tuple[int, int], Frame] = {}
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        out[(int(off[a]), int(pane[a]))] = Frame({
            "sensor": sens[a:b], "metric": mets[a:b], "count": agg["count"][a:b],
            "sum": agg["sum"][a:b], "sumsq": agg["sumsq"][a:b], "min": agg["min"][a:b],
            "max": agg["max"][a:b], "last_ts": agg["last_ts"][a:b], "last": agg["last"][a:b],
            "wsum": agg["wsum"][a:b], "wn": agg["wn"][a:b], "nw": agg["nw"][a:b],
        })
    return out


def merge(frames: Iterable[Frame]) -> Frame:
    """Merge delta/window frames into one row per (sensor, metric). Order matters only for
    ties of ``last_ts``: pass frames oldest first."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return Frame.empty()
    if len(frames) == 1:
        return frames[0]
    col = {c: np.concatenate([f[c] for f in frames]) for c in COLUMNS}
    sensor_codes, sensors = pd.factorize(col["sensor"])
    metric_codes, metrics = pd.factorize(col["metric"])
    order, starts, agg = _reduce(
        (sensor_codes, metric_codes), col["last_ts"].astype(np.int64),
        {"count": ("sum", col["count"].astype(np.int64)), "sum": ("sum", col["sum"]),
         "sumsq": ("sum", col["sumsq"]), "min": ("min", col["min"]), "max": ("max", col["max"]),
         "last_ts": ("last", col["last_ts"].astype(np.int64)), "last": ("last", col["last"]),
         "wsum": ("sum", col["wsum"]), "wn": ("sum", col["wn"]),
         "nw": ("sum", col["nw"].astype(np.int64))},
    )
    first = order[starts]
    return Frame({"sensor": sensors[sensor_codes[first]],
                  "metric": metrics[metric_codes[first]], **agg})


def by_sensor(frame: Frame) -> dict[str, dict[str, Stats]]:
    """sensor → metric → Stats, once per closed window: one row per (sensor, metric)
    of the city, so each row costs one C-level tuple construction and two dict stores."""
    out: dict[str, dict[str, Stats]] = {}
    make = tuple.__new__
    stats = zip(*(frame[c].astype(_DTYPES[c], copy=False).tolist() for c in _NUMERIC))
    for s, m, row in zip(frame["sensor"].tolist(), frame["metric"].tolist(), stats):
        metrics = out.get(s)
        if metrics is None:
            metrics = out[s] = {}
        metrics[m] = make(Stats, row)
    return out


def encode_delta(frame: Frame, meta: Mapping[str, tuple[str, str]]) -> bytes:
    """Changelog value of a delta: columns as lists, plus district/kind of its sensors."""
    sensors = frame["sensor"].tolist()
    doc: dict[str, object] = {c: frame[c] for c in _NUMERIC}
    doc["sensor"] = sensors
    doc["metric"] = frame["metric"].tolist()
    doc["meta"] = {s: meta[s] for s in set(sensors) if s in meta}
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_delta(value: bytes) -> tuple[Frame, dict[str, tuple[str, str]]]:
    doc = orjson.loads(value)
    meta = {s: (d, k) for s, (d, k) in doc.pop("meta", {}).items()}
    cols = {c: np.asarray(doc[c], dtype=object) for c in ("sensor", "metric")}
    for c in ("count", "last_ts"):
        cols[c] = np.asarray(doc[c], dtype=np.int64)
    for c in ("sum", "sumsq", "min", "max", "last"):
        cols[c] = np.asarray(doc[c], dtype=np.float64)
    if "nw" in doc:
        cols["wsum"] = np.asarray(doc["wsum"], dtype=np.float64)
        cols["wn"] = np.asarray(doc["wn"], dtype=np.float64)
        cols["nw"] = np.asarray(doc["nw"], dtype=np.int64)
    else:  # a delta written before weights existed: its readings count as unweighted
        cols["wsum"] = np.zeros(len(cols["count"]))
        cols["wn"] = np.zeros(len(cols["count"]))
        cols["nw"] = cols["count"].copy()
    return Frame(cols), meta
