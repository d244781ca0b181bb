"""Event-time windows of one source partition: 1-min tumbling panes, hopping windows built
from them, a watermark, allowed lateness, and the changelog entries that make it durable.

Why per partition: Kafka orders records only within a partition and a sensor always lands on
the same partition, so the watermark (max event time seen minus the allowed lateness) is
tracked per (topic, partition) and one worker owns all of a partition's state. The watermark
advances per Kafka record: readings of a record are judged against the watermark left by the
records before it, which makes the decision replay-deterministic.

A reading is *late* when its pane was already closed (emitted); it is dead-lettered, never
folded into a window that has been written. Closing is driven by event time only: a partition
that receives nothing keeps its last panes open until data arrives.

Durability (see README): every (record, pane) delta goes to a changelog-backed table keyed by
the record's offset, so a replay after a crash rewrites the same key (idempotent). The
partition's ``emitted_until`` mark is written after a window's outputs are stored; deltas of a
pane are deleted (tombstones) once no open hopping window needs the pane any more.

Replays are not late (issue #14). After a crash, a rebalance, or a worker that hung past its
session and resumed, records are read again from the committed offset, which trails what
the state already holds (commits are periodic; another worker may have advanced the
partition meanwhile). Judged against that state, their panes look closed and they would be
dead-lettered ``late``: false alarms for readings the windows already counted. So the
state keeps ``max_offset``, the last record folded in (in the mark, and implied by the
delta keys), and a record at or below it is skipped as a replay (``BatchResult.replayed``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson

from .aggregates import Frame, decode_delta, deltas, encode_delta, flatten, merge

PANE_MS = 60_000


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A window whose end the watermark passed: its merged per-(sensor, metric) frame."""

    size: str  # "1m" (tumbling) or "5m" (hopping, advancing by 1 min)
    start: int
    end: int
    frame: Frame


@dataclass(slots=True)
class BatchResult:
    """What one agent batch did to one partition, in the order the agent must apply it."""

    late: list[Mapping] = field(default_factory=list)
    replayed: int = 0  # readings of records the state already folded in (skipped)
    delta_puts: dict[str, bytes] = field(default_factory=dict)  # before outputs are written
    windows: list[ClosedWindow] = field(default_factory=list)
    closed_panes: list[int] = field(default_factory=list)  # incl. empty ones (roll-up partials)
    after_puts: dict[str, bytes] = field(default_factory=dict)  # after outputs are stored
    deletes: list[str] = field(default_factory=list)  # after outputs are stored


class PartitionWindows:
    """Window state of one (topic, partition). Pure: no Faust, no I/O."""

    def __init__(self, topic: str, partition: int, *, lateness_ms: int, hop_panes: int = 5,
                 max_empty_panes: int = 60, pane_ms: int = PANE_MS) -> None:
        self.topic, self.partition = topic, partition
        self.prefix = f"{topic}|{partition}|"
        self.pane_ms, self.hop, self.lateness_ms = pane_ms, hop_panes, lateness_ms
        self.max_empty = max_empty_panes
        self.deltas: dict[int, dict[int, Frame]] = {}  # pane → offset → delta
        self.closed: dict[int, Frame] = {}  # merged closed panes kept for hopping
        self.emitted_until: int | None = None  # every pane ending at or before it is closed
        self.max_ts: int | None = None
        self.max_offset: int | None = None  # last record folded in (replays are skipped)
        self.meta: dict[str, tuple[str, str]] = {}  # sensor → (district, kind)

    # -- keys ------------------------------------------------------------------------------
    def delta_key(self, pane: int, offset: int) -> str:
        return f"{self.prefix}d|{pane}|{offset}"

    @property
    def mark_key(self) -> str:
        return f"{self.prefix}m"

    def _closable_until(self, max_ts: int) -> int:
        """End of the last pane the watermark max_ts - lateness has passed."""
        return (max_ts - self.lateness_ms) // self.pane_ms * self.pane_ms

    @property
    def open_panes(self) -> int:
        eu = self.emitted_until
        return sum(1 for p in self.deltas if eu is None or p >= eu)

    # -- the hot path ----------------------------------------------------------------------
    def process(self, records: Sequence[tuple[int, Sequence[Mapping]]],
                caps: Sequence[int | None] | None = None) -> BatchResult:
        """Fold records (offset, readings), in offset order, into the panes; close what the
        watermark passed. The caller applies the result (table, sinks) in field order.

        ``caps`` (one per record, live only): the event time every active *source* of the
        partition (device, gateway) had reached after that record. A pane closes only
        once they all passed its end, so a gateway draining its backlog behind a faster
        one sharing the partition is not dead-lettered ``late`` (the plain max-minus-
        lateness watermark called 1,420 readings of a clean full-speed replay late)."""
        res = BatchResult()
        kept: list[tuple[int, Sequence[Mapping]]] = []
        eu, max_ts, pane = self.emitted_until, self.max_ts, self.pane_ms
        meta = self.meta
        mo = self.max_offset
        cap = None
        for k, (offset, readings) in enumerate(records):
            if caps is not None:
                cap = caps[k]
            if mo is not None and offset <= mo:
                res.replayed += len(readings)  # already in the state: not late, not twice
                continue
            mo = offset
            readings = [r for r in readings if isinstance(r.get("ts"), int)] \
                if not _all_int_ts(readings) else readings
            if not readings:
                continue
            ts = np.fromiter((r["ts"] for r in readings), dtype=np.int64, count=len(readings))
            if eu is not None:
                late = (ts // pane * pane + pane) <= eu
                if late.any():
                    res.late.extend(r for r, bad in zip(readings, late.tolist()) if bad)
                    keep = ~late
                    readings = [r for r, ok in zip(readings, keep.tolist()) if ok]
                    ts = ts[keep]
                    if not readings:
                        continue
            for r in readings:
                meta[r["sensor_id"]] = (r["district"], r["kind"])
            kept.append((offset, readings))
            top = int(ts.max())
            max_ts = top if max_ts is None else max(max_ts, top)
            until = self._capped(max_ts, cap)
            eu = until if eu is None else max(eu, until)
        self.max_ts = max_ts
        self.max_offset = mo
        if kept:
            for (offset, p), frame in deltas(flatten(kept, pane)).items():
                self.deltas.setdefault(p, {})[offset] = frame
                res.delta_puts[self.delta_key(p, offset)] = encode_delta(frame, meta)
        if max_ts is not None:
            self._close(self._capped(max_ts, cap), res)
        return res

    def _capped(self, max_ts: int, cap: int | None) -> int:
        until = self._closable_until(max_ts)
        return until if cap is None else min(until, cap // self.pane_ms * self.pane_ms)

    def _close(self, target: int, res: BatchResult) -> None:
        start = self.emitted_until
        if start is None:
            start = min(self.deltas, default=target)
        if target <= start:
            return
        P = self.pane_ms
        with_data = {p for p in self.deltas if start <= p < target}
        recent = range(max(start, target - self.max_empty * P), target, P)
        # every pane that ends a hopping window holding data: a pane with data and the
        # hop - 1 after it (even if empty, and even after a jump of more than
        # max_empty_panes, which only bounds the empty roll-up partials)
        hop_ends = {q + k * P for q in with_data.union(self.closed) for k in range(self.hop)}
        ends = {p for p in hop_ends if start <= p < target}
        for p in sorted(with_data.union(recent, ends)):
            if p in self.deltas:
                frame = merge(f for _, f in sorted(self.deltas[p].items()))
                self.closed[p] = frame
                res.windows.append(ClosedWindow("1m", p, p + P, frame))
            if self.hop > 1:
                first = p - (self.hop - 1) * P
                parts = [self.closed[q] for q in range(first, p + P, P) if q in self.closed]
                if parts:
                    res.windows.append(ClosedWindow(f"{self.hop}m", first, p + P, merge(parts)))
            res.closed_panes.append(p)
        self.emitted_until = target
        res.after_puts[self.mark_key] = orjson.dumps(
            {"emitted_until": target, "max_ts": self.max_ts, "max_offset": self.max_offset}
        )
        keep_from = target - (self.hop - 1) * P  # first pane a future hopping window needs
        for p in [p for p in self.deltas if p < keep_from]:
            res.deletes.extend(self.delta_key(p, off) for off in self.deltas.pop(p))
            self.closed.pop(p, None)

    # -- recovery --------------------------------------------------------------------------
    def load(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Rebuild from the changelog-backed table's entries of this partition."""
        n = 0
        for key, value in items:
            if not key.startswith(self.prefix) or value is None:
                continue
            rest = key[len(self.prefix):]
            if rest == "m":
                mark = orjson.loads(value)
                self.emitted_until = mark["emitted_until"]
                if mark.get("max_ts") is not None:
                    self.max_ts = max(self.max_ts or mark["max_ts"], mark["max_ts"])
                if mark.get("max_offset") is not None:
                    self.max_offset = max(self.max_offset or -1, mark["max_offset"])
            elif rest.startswith("d|"):
                _, p, off = rest.split("|")
                self.max_offset = max(self.max_offset or -1, int(off))
                frame, meta = decode_delta(value)
                self.deltas.setdefault(int(p), {})[int(off)] = frame
                self.meta.update(meta)
                if len(frame):
                    top = int(frame["last_ts"].max())
                    self.max_ts = top if self.max_ts is None else max(self.max_ts, top)
                n += 1
        eu = self.emitted_until
        if eu is not None:
            for p, ds in self.deltas.items():
                if p < eu:
                    self.closed[p] = merge(f for _, f in sorted(ds.items()))
        return n


def _all_int_ts(readings: Sequence[Mapping]) -> bool:
    try:
        return all(type(r["ts"]) is int for r in readings)
    except (KeyError, TypeError):
        return False
