"""One source partition's batch through the whole worker: windows → indices → rules →
district forwards. Faust-free: the live agent and ``urbanbrain rules backtest`` both run
this object, so a backtest score is the live pipeline's score.

    records (offset, readings) of one (topic, partition)
      ├─ WindowStage       1-min panes, 5-min hops, allowed lateness; closed windows →
      │                    InfluxDB lines, ``aggregates`` records, roll-up partials and
      │                    index samples (urbanbrain/indexes.py, stamped end + lateness)
      ├─ SensorRules       raw readings + index samples → sensor-scope alert events
      └─ DistrictInterest  readings/samples district rules use → ``Forward`` per district
                           partition, with this partition's watermark

The caller stores the outputs (in the order the worker's durability needs), then runs
:meth:`SourcePipeline.finish`: the rule state, a barrier, then window marks and tombstones.
With checkpointed state (``URBANBRAIN_ALERT_STATE_CHECKPOINT_S`` > 0, the worker's
``deferred_marks``) a partition's rule state is written only when due, and its window
deltas and marks wait for that write (deltas with the rule state, marks after it): the
table then holds the partition exactly as of its last checkpoint, and a restart that
reads the input again from there repeats what the worker did (with the deltas written
early, the recovered windows closed everything up to the newest delta at once, and the
index samples of all those windows moved the district clocks ahead of the readings
being read again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from urbanbrain.rules import AlertEvent, RuleSet

from urbanbrain.indexes import INDEXES

from .alert_stage import DistrictInterest, Forward, SensorRules
from .processor import Rendered, WindowStage
from .windows import BatchResult


@dataclass
class SourceOutput:
    """What one (topic, partition) batch produced."""

    topic: str
    partition: int
    readings: list[Mapping[str, Any]]
    late: list[Mapping[str, Any]] = field(default_factory=list)
    rendered: Rendered = field(default_factory=Rendered)
    events: list[AlertEvent] = field(default_factory=list)
    forwards: dict[int, Forward] = field(default_factory=dict)
    window_result: BatchResult | None = None

    @property
    def closed_any(self) -> bool:
        res = self.window_result
        return res is not None and bool(res.after_puts or res.deletes)


class SourcePipeline:
    def __init__(self, windows: WindowStage | None, rules: SensorRules,
                 interest: DistrictInterest, ruleset: Callable[[], RuleSet], *,
                 outputs: bool = True, deferred_marks: bool = False) -> None:
        """``outputs=False`` (the backtest): windows only where the rules need an index
        sample of them, and no lines, records or partials. The alerts are the same: rules
        see nothing of a window but its index samples. ``deferred_marks``: window deltas,
        marks and tombstones of a partition wait for its next rule state write (a worker
        with checkpointed state); off, they are written at every batch."""
        self.windows = windows
        self.deferred_marks = deferred_marks
        if windows is not None:
            windows.defer_deltas = deferred_marks
        #: (topic, partition) -> window results waiting for the partition's checkpoint
        self._waiting: dict[tuple[str, int], list[BatchResult]] = {}
        #: the partitions whose rule state the last :meth:`finish` wrote
        self.checkpointed: list[tuple[str, int]] = []
        self.rules = rules
        self.interest = interest
        self.ruleset = ruleset
        self.outputs = outputs
        self._needs: tuple[RuleSet | None, dict[str, frozenset[str]]] = (None, {})

    def _sample_sizes(self, domain: str) -> frozenset[str]:
        """Window sizes whose index samples the loaded rules read, for ``domain``."""
        rs = self.ruleset()
        if self._needs[0] is not rs:
            wanted: dict[str, set[str]] = {}
            metrics = set(rs.retention_ms())
            for r in rs.rules:
                c = r.condition
                if getattr(c, "metric", None):
                    metrics.add(c.metric)  # absence of a metric
            for name in metrics & set(INDEXES):
                ix = INDEXES[name]
                wanted.setdefault(ix.domain, set()).add(ix.window)
            self._needs = (rs, {d: frozenset(v) for d, v in wanted.items()})
        return self._needs[1].get(domain, frozenset())

    def process(self, topic: str, partition: int,
                records: Sequence[tuple[int, Sequence[Mapping[str, Any]]]],
                now_wall: float | None = None) -> SourceOutput:
        """``records`` in offset order. Window deltas are written to the window store here
        (before any output, as the worker's durability requires). ``now_wall``: the
        ingestion time of the records (epoch seconds) in a live worker, which judges idle
        sources (SensorRules._idle); None in the backtest."""
        readings = [r for _, batch in records for r in batch]
        out = SourceOutput(topic, partition, readings)
        samples: list[dict[str, Any]] = []
        sizes = None if self.outputs else self._sample_sizes(topic.split(".", 1)[-1])
        if self.windows is not None and (sizes is None or sizes):
            caps = self.rules.caps(topic, partition, records, now_wall)
            res = self.windows.process(topic, partition, records, caps)
            out.window_result = res
            out.late = list(res.late)
            out.rendered = self.windows.render(topic, partition, res, outputs=self.outputs,
                                               sample_sizes=sizes)
            samples = out.rendered.samples
        out.events = self.rules.process(topic, partition, readings, samples, now_wall)
        rs = self.ruleset()
        if self.interest.any(rs):
            out.forwards = self.interest.forward(
                rs, topic, partition, self.rules.watermark(topic, partition),
                [*readings, *samples])
        return out

    def finish(self, outs: Sequence[SourceOutput]) -> Iterator[None]:
        """After the outputs are durable, the state that says they were made, in steps:
        rule state, then window marks and tombstones. The caller makes each step durable
        before it resumes the iterator for the next (the worker flushes the producer at
        every ``yield``); in memory, just run it out.

        Why the order and the barrier: a window marked emitted is never emitted again, so
        the index samples it gave must already be in the rule state a restart rebuilds.
        Kafka makes writes to *different* changelog partitions durable in no particular
        order, and the two tables are different topics: a worker killed with a batch's
        marks durable and its rule state not was rebuilt without the batch's AQI samples,
        read the records again, got no samples of those windows, and fired the episode a
        second time hours later (tests/test_pipeline_crash_order.py). Killed the other way
        round, the windows emit those samples again, and the rules fold them in again
        without evaluating anything (a sample is observed only, idempotently)."""
        self.checkpointed = []
        if self.deferred_marks:
            for out in outs:
                if out.window_result is not None:
                    self._waiting.setdefault((out.topic, out.partition), []).append(
                        out.window_result)
        for topic, partition in dict.fromkeys((o.topic, o.partition) for o in outs):
            if self.rules.persist(topic, partition) is not None:
                self.checkpointed.append((topic, partition))
        if self.windows is None:
            return
        self.write_deltas(self.checkpointed)
        yield
        if not self.deferred_marks:
            for out in outs:
                if out.window_result is not None:
                    self.windows.finish(out.partition, out.window_result)
        self.apply_marks(self.checkpointed)

    def write_deltas(self, keys: Sequence[tuple[str, int]]) -> None:
        """The waiting window deltas of these partitions, with their rule state (both
        before the marks: a mark never outlives the deltas of the panes it keeps open)."""
        if self.windows is None:
            return
        for key in keys:
            for res in self._waiting.get(key, ()):
                self.windows.write_deltas(key[1], res)

    def apply_marks(self, keys: Sequence[tuple[str, int]]) -> int:
        """Write the waiting window marks and tombstones of these partitions, whose rule
        state and deltas were just written (the caller made them durable first). Returns
        how many batches' marks were written."""
        n = 0
        if self.windows is None:
            return n
        for key in keys:
            for res in self._waiting.pop(key, ()):
                self.windows.finish(key[1], res)
                n += 1
        return n

    def reset(self) -> None:
        """Drop what waits with the stages' memory (a rebalance, an abandoned batch): the
        partitions are read again from their committed offsets, which never passed the
        last checkpoint, and the windows are rebuilt from the table as of that."""
        self._waiting.clear()
