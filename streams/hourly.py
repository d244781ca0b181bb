"""Hourly windows of a source partition, folded from its closed 1-min windows.

Why here and not in InfluxDB: continuous queries exist in InfluxDB 1.x only, and a task
engine differs between 2.x (Flux tasks) and 3.x (processing engine); computed by the worker,
the same code serves all three, and the hourly points carry exactly the tags and fields of
the 1-min ones (``agg_sensor_1h``, ``traffic_index``/``aqi``/``water_index``/``power_index``
with ``window=1h``, and through the roll-up agent ``district_1h``/``city_1h``), written to
the ``longterm`` retention policy (urbanbrain/retention.py).

How: a sensor always lands on the same partition, so a partition's 1-min windows hold every
reading of its sensors, and the window statistics (count, sum, sum of squares, min, max,
last) merge exactly (streams/aggregates.py). Each closed 1-min window is merged into its
hour's *accumulator*; the hour closes when the partition's watermark has closed its last
minute (``emitted_until`` reaches the hour's end), which is event time only, like the minutes.

Durability: the accumulator is kept in :data:`SHARDS` changelog-backed table entries (the
window-state table, key ``<topic>|<partition>|h|<hour>|<shard>``; a sensor's shard is the
CRC-32 of its id), written before the minute's outputs and marks, each with the set of
minutes it holds. A replayed minute is recognised per shard and not merged twice; an hour
whose outputs were written but whose tombstones were not is closed again with the same
values (same points, same timestamps: InfluxDB overwrites them).

Why shards: the hour holds one row per sensor and metric of the whole partition (~370 bytes
a sensor) and is rewritten every minute. As one entry it grew with the city: at 16,700
loops a partition it was a 6.2 MB Kafka record, over the producer's 4 MB request limit,
and the worker crashed (the 100,000-sensor soak, 2026-12-07). Sixteen shards keep each
record under 4 MB up to ~180,000 sensors a partition (more partitions long before then);
each is written whole, since every sensor closes a minute every minute. An entry of the
unsharded layout (``…|h|<hour>``, before 2026-12-07) is read and split on recovery, and
deleted when its hour closes.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

import numpy as np

from .aggregates import Frame, by_sensor, decode_delta, encode_delta, merge
from .derive import IndexCalculator
from .rollups import partial
from .sinks.lines import window_lines

if TYPE_CHECKING:
    from .processor import Rendered, Store
    from .windows import BatchResult, PartitionWindows

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
SIZE = "1h"
#: changelog entries per (partition, hour): see the module docstring
SHARDS = 16
_SHARD_OF: dict[str, int] = {}


def shard_of(sensor: str) -> int:
    """The accumulator shard of a sensor: stable across processes (not ``hash()``)."""
    k = _SHARD_OF.get(sensor)
    if k is None:
        k = zlib.crc32(sensor.encode("utf-8")) % SHARDS
        if len(_SHARD_OF) < 2_000_000:
            _SHARD_OF[sensor] = k
    return k


def split(frame: Frame) -> dict[int, Frame]:
    """Rows of ``frame`` by the shard of their sensor (shards without rows left out)."""
    if not len(frame):
        return {}
    shards = np.fromiter((shard_of(s) for s in frame["sensor"].tolist()), dtype=np.int64,
                         count=len(frame))
    out: dict[int, Frame] = {}
    for k in np.unique(shards).tolist():
        mask = shards == k
        out[int(k)] = Frame({c: v[mask] for c, v in frame.cols.items()})
    return out


@dataclass
class Accumulator:
    """An hour of one partition: merged 1-min windows and which minutes they were."""

    frame: Frame
    panes: set[int] = field(default_factory=set)
    meta: dict[str, tuple[str, str]] = field(default_factory=dict)

    def encode(self) -> bytes:
        # the delta codec of the window table, behind one JSON header line
        head = orjson.dumps({"panes": sorted(self.panes)})
        return head + b"\n" + encode_delta(self.frame, self.meta)

    @classmethod
    def decode(cls, value: bytes) -> Accumulator:
        head, _, body = value.partition(b"\n")
        frame, meta = decode_delta(body)
        return cls(frame, set(orjson.loads(head)["panes"]), meta)


@dataclass
class HourlyStats:
    hours: int = 0  # hours closed and written
    replayed_minutes: int = 0  # (minute, shard)s seen again after a replay, not merged twice
    recovered: int = 0  # accumulators loaded from the table


class HourlyStage:
    """Accumulators of the partitions this worker holds (lazily rebuilt after a rebalance):
    per partition, ``(hour, shard) -> Accumulator``."""

    def __init__(self, store: Store, calc: IndexCalculator, *, hour_ms: int = HOUR_MS) -> None:
        self.store, self.calc, self.hour_ms = store, calc, hour_ms
        self.accs: dict[tuple[str, int], dict[tuple[int, int], Accumulator]] = {}
        self.stats = HourlyStats()

    @staticmethod
    def prefix(topic: str, partition: int) -> str:
        return f"{topic}|{partition}|h|"

    def reset(self) -> None:
        """Forget memory after a rebalance; the table is the truth."""
        self.accs.clear()

    def _part(self, topic: str, partition: int) -> dict[tuple[int, int], Accumulator]:
        accs = self.accs.get((topic, partition))
        if accs is None:
            accs = {}
            legacy: dict[int, Accumulator] = {}
            prefix = self.prefix(topic, partition)
            for key, value in self.store.items():
                if value is None or not key.startswith(prefix):
                    continue
                hour, _, shard = key[len(prefix):].partition("|")
                if shard:
                    accs[(int(hour), int(shard))] = Accumulator.decode(value)
                else:
                    legacy[int(hour)] = Accumulator.decode(value)
                self.stats.recovered += 1
            for hour, acc in legacy.items():
                # the unsharded layout: its rows by shard, each with the hour's minutes; a
                # shard already written in the new layout is newer (the split was written
                # and the old entry is deleted only when the hour closes)
                for k, part in split(acc.frame).items():
                    if (hour, k) not in accs:
                        accs[(hour, k)] = Accumulator(
                            part, set(acc.panes),
                            {s: acc.meta[s] for s in set(part["sensor"].tolist())
                             if s in acc.meta})
            self.accs[(topic, partition)] = accs
        return accs

    def fold(self, topic: str, partition: int, res: BatchResult, pw: PartitionWindows,
             out: Rendered) -> None:
        """Merge the batch's closed 1-min windows (table puts now, before the outputs); close
        the hours the watermark passed: their lines into ``out.hourly_lines``, their roll-up
        partials into ``out.partials``, their tombstones into ``res.deletes`` (applied once
        the outputs are stored)."""
        accs = self._part(topic, partition)
        touched: set[tuple[int, int]] = set()
        meta = pw.meta
        for w in res.windows:
            if w.size != "1m" or not len(w.frame):
                continue
            hour = w.start // self.hour_ms * self.hour_ms
            for k, part in split(w.frame).items():
                acc = accs.get((hour, k))
                if acc is None:
                    acc = accs[(hour, k)] = Accumulator(Frame.empty())
                if w.start in acc.panes:
                    self.stats.replayed_minutes += 1
                    continue
                acc.frame = merge([acc.frame, part])
                acc.panes.add(w.start)
                for s in set(part["sensor"].tolist()):
                    if s in meta:
                        acc.meta[s] = meta[s]
                touched.add((hour, k))
        prefix = self.prefix(topic, partition)
        for hour, k in sorted(touched):
            self.store.put(partition, f"{prefix}{hour}|{k}", accs[(hour, k)].encode())
        eu = pw.emitted_until
        if eu is None:
            return
        domain = topic.split(".", 1)[-1]
        for hour in sorted({h for h, _ in accs if h + self.hour_ms <= eu}):
            shards = sorted(k for h, k in accs if h == hour)
            parts = [accs.pop((hour, k)) for k in shards]
            whole = Accumulator(merge([a.frame for a in parts]),
                                set().union(*(a.panes for a in parts)),
                                {s: m for a in parts for s, m in a.meta.items()})
            self._close(domain, f"{topic}|{partition}", hour, whole, out)
            res.deletes += [f"{prefix}{hour}|{k}" for k in shards]
            res.deletes.append(f"{prefix}{hour}")  # the unsharded layout's, if any

    def _close(self, domain: str, src: str, hour: int, acc: Accumulator, out: Rendered) -> None:
        rows = by_sensor(acc.frame)
        # the minutes the hour really holds: a flow or a volume over the covered time, not
        # diluted over an hour the worker (or the sensors) only saw part of
        window_s = 60.0 * max(len(acc.panes), 1)
        points = self.calc.compute(domain, rows, window_s, hour)
        lines, bad = window_lines(domain, SIZE, hour, rows, acc.meta, points)
        out.hourly_lines += lines
        out.refused += bad
        part: dict[str, Any] = partial(domain, hour, hour + self.hour_ms, src, rows, acc.meta,
                                       points)
        part["size"] = SIZE
        out.partials.append(part)
        self.stats.hours += 1

    @property
    def open_hours(self) -> int:
        return sum(len({h for h, _ in a}) for a in self.accs.values())


def size_of(part: Mapping[str, Any]) -> str:
    """The window size of a roll-up partial (1-min partials carry none)."""
    return str(part.get("size", "1m"))
