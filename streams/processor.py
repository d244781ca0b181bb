"""The window stage of the agent: per-partition window state, recovery, and rendering of
closed windows into InfluxDB lines, ``aggregates`` records and roll-up partials.

Faust-free on purpose (the agent in app.py only moves bytes), so unit tests and the
benchmark drive exactly the code the worker runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .aggregates import by_sensor
from .derive import IndexCalculator, index_samples
from .hourly import HourlyStage
from .rollups import partial
from .settings import StreamsSettings
from .sinks.lines import window_lines
from .sinks.records import window_records
from .windows import BatchResult, PartitionWindows

log = logging.getLogger(__name__)


class Store(Protocol):
    def put(self, partition: int, key: str, value: bytes) -> None: ...
    def delete(self, partition: int, key: str) -> None: ...
    def items(self) -> Any: ...


@dataclass
class Rendered:
    """Outputs of one partition's batch, in the order the agent writes them."""

    lines: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)  # for ``aggregates``
    partials: list[dict[str, Any]] = field(default_factory=list)  # for the roll-up topic
    hourly_lines: list[str] = field(default_factory=list)  # closed hours: longterm policy
    #: index samples for the rules (urbanbrain/indexes.py), stamped window end + lateness
    samples: list[dict[str, Any]] = field(default_factory=list)
    windows: int = 0


@dataclass
class StageStats:
    late: int = 0
    windows: int = 0
    partials: int = 0
    recovered_deltas: int = 0
    rebuilds: int = 0
    replayed: int = 0  # readings of re-read records the state already held (not late)


class WindowStage:
    """All window state this worker holds, one :class:`PartitionWindows` per source partition."""

    def __init__(self, settings: StreamsSettings, store: Store, calc: IndexCalculator) -> None:
        self.settings, self.store, self.calc = settings, store, calc
        self.parts: dict[tuple[str, int], PartitionWindows] = {}
        self.stats = StageStats()
        self.generation: object = None
        #: deltas wait for the partition's rule state checkpoint (streams/pipeline.py)
        #: instead of being written at once
        self.defer_deltas = False
        #: hourly windows folded from the closed minutes (same table: co-partitioned)
        self.hourly = HourlyStage(store, calc)

    def reset(self, generation: object = None) -> None:
        """Forget in-memory state (after a rebalance): it is rebuilt from the table on demand,
        because another worker may have advanced a partition we owned before."""
        self.parts.clear()
        self.hourly.reset()
        self.generation = generation

    def part(self, topic: str, partition: int) -> PartitionWindows:
        pw = self.parts.get((topic, partition))
        if pw is None:
            s = self.settings
            pw = PartitionWindows(
                topic, partition, lateness_ms=int(s.streams_lateness_s * 1000),
                hop_panes=s.streams_hop_panes, max_empty_panes=s.streams_max_empty_panes,
            )
            n = pw.load(self.store.items())
            self.stats.recovered_deltas += n
            self.stats.rebuilds += 1
            if n or pw.emitted_until is not None:
                log.info("recovered window state of %s[%d]: %d deltas, emitted until %s",
                         topic, partition, n, pw.emitted_until)
            self.parts[(topic, partition)] = pw
        return pw

    def process(self, topic: str, partition: int,
                records: Sequence[tuple[int, Sequence[Mapping]]],
                caps: Sequence[int | None] | None = None) -> BatchResult:
        """Fold the records in and write their deltas to the table (before any output;
        with ``defer_deltas``, the caller writes them with :meth:`write_deltas`);
        ``caps``: see :meth:`PartitionWindows.process`."""
        res = self.part(topic, partition).process(records, caps)
        if not self.defer_deltas:
            self.write_deltas(partition, res)
        self.stats.late += len(res.late)
        self.stats.replayed += res.replayed
        return res

    def render(self, topic: str, partition: int, res: BatchResult, *,
               outputs: bool = True, sample_sizes: frozenset[str] | None = None) -> Rendered:
        """Closed windows → InfluxDB lines, ``aggregates`` records, roll-up partials and
        index samples. ``outputs=False`` (backtest): index samples only, and only of the
        window sizes in ``sample_sizes`` (None: all)."""
        pw = self.parts[(topic, partition)]
        domain = topic.split(".", 1)[-1]
        out = Rendered()
        now = int(time.time() * 1000)
        src = f"{topic}|{partition}"
        with_data = set()
        for w in res.windows:
            if not outputs and sample_sizes is not None and w.size not in sample_sizes:
                continue
            rows = by_sensor(w.frame)
            points = self.calc.compute(domain, rows, (w.end - w.start) / 1000.0, w.start)
            out.samples += index_samples(domain, w.size, w.end + pw.lateness_ms, points,
                                         pw.meta)
            if not outputs:
                continue
            lines, bad = window_lines(domain, w.size, w.start, rows, pw.meta, points,
                                      sensors=self._stores_sensors(w.start, w.end, w.size))
            out.lines += lines
            out.refused += bad
            if self._aggregates(w.size):
                out.records += window_records(domain, w.size, w.start, w.end, rows, pw.meta,
                                              points, now)
            if w.size == "1m":
                with_data.add(w.start)
                out.partials.append(partial(domain, w.start, w.end, src, rows, pw.meta, points))
        if outputs:
            for p in res.closed_panes:
                if p not in with_data:
                    out.partials.append(partial(domain, p, p + pw.pane_ms, src, {}, pw.meta, []))
            self.hourly.fold(topic, partition, res, pw, out)  # hours (longterm)
        out.windows = len(res.windows)
        self.stats.windows += len(res.windows)
        self.stats.partials += len(out.partials)
        return out

    def _stores_sensors(self, start: int, end: int, size: str) -> bool:
        """Whether a window's per-sensor point is stored (streams_sensor_hops): every
        1-min window; a hop always, or only when it starts on a multiple of its length."""
        if size == "1m" or self.settings.streams_sensor_hops == "all":
            return True
        return start % (end - start) == 0

    def _aggregates(self, size: str) -> bool:
        """Whether windows of ``size`` go to the ``aggregates`` topic (streams_aggregates)."""
        which = self.settings.streams_aggregates
        return which == "all" or which == size

    def write_deltas(self, partition: int, res: BatchResult) -> None:
        """The batch's deltas (keyed by record offset: a replay rewrites the same keys)."""
        for key, value in res.delta_puts.items():
            self.store.put(partition, key, value)

    def finish(self, partition: int, res: BatchResult) -> None:
        """After the outputs are stored: the emitted mark and tombstones of spent panes."""
        for key, value in res.after_puts.items():
            self.store.put(partition, key, value)
        for key in res.deletes:
            self.store.delete(partition, key)

    @property
    def open_panes(self) -> int:
        return sum(pw.open_panes for pw in self.parts.values())
