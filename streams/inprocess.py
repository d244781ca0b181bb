"""The worker's stages without Faust or servers: ``rules backtest``, ``rules warmup`` and
tests feed a recording through exactly the code a streams worker runs.

Readings are cut into records the way ingest cuts them (per readings topic and partition,
at most ``batch_max`` readings a record) and fed in event-time order, one tick of event
time at a time; every source partition's outputs reach the district stage after the tick,
as forwards reach the district agent. What differs from a live worker is only the order
in which records of different partitions arrive, and the pipeline's event-time semantics
make the alerts independent of that order (tests/test_rules_streaming.py,
tests/test_live_scoring.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from urbanbrain.rules import AlertEvent, RuleSet
from urbanbrain.rules.registry import load_registry_csv

from urbanbrain.kafka import readings_topic
from urbanbrain.reading import Partitioner
from urbanbrain.registry import Registry

from .alert_stage import DISTRICT_SOURCE, DistrictInterest, DistrictRules, Forward, SensorRules
from .alerting import AlertSettings
from .derive import IndexCalculator
from .pipeline import SourceOutput, SourcePipeline
from .processor import WindowStage
from .settings import StreamsSettings
from .state import DictStore


@dataclass
class Stores:
    """The in-memory tables of one in-process worker (the worker's Faust tables)."""

    windows: DictStore = field(default_factory=DictStore)
    sensors: DictStore = field(default_factory=DictStore)
    districts: DictStore = field(default_factory=DictStore)


class InProcessWorker:
    """One worker's stages over in-memory stores, for every partition at once."""

    def __init__(self, ruleset: RuleSet, registry_csv: str | Path | None = None, *,
                 settings: StreamsSettings | None = None,
                 alert_settings: AlertSettings | None = None, batch_max: int = 500,
                 outputs: bool = False, checkpoint_s: float = float("inf"),
                 stores: Stores | None = None) -> None:
        """``outputs``: render every window's lines, records and partials as the worker
        does (benchmarks); off, only the windows the rules' index samples come from.
        ``checkpoint_s``: how often rule state is written (the worker's
        ``URBANBRAIN_ALERT_STATE_CHECKPOINT_S``; 0: every batch, with the window marks
        after it, as a worker writes them); never by default, since nothing restarts in
        process. ``stores``: another instance's stores, to start from the state
        it left (a restart, tests/test_pipeline_crash_order.py)."""
        ss = settings or StreamsSettings()
        cfg = alert_settings or AlertSettings()
        self.n = ss.kafka_partitions
        self.batch_max = batch_max
        registry = load_registry_csv(registry_csv) if registry_csv else {}

        def rules() -> RuleSet:
            return ruleset

        self.stores = stores or Stores()
        self.windows = None
        if ss.streams_windows:
            calc = IndexCalculator(Registry.load(registry_csv) if registry_csv else None,
                                   default_road_class=ss.streams_default_road_class,
                                   nominal_kv=ss.streams_nominal_kv,
                                   nominal_hz=ss.streams_nominal_hz,
                                   aqi_cn_edition=ss.streams_aqi_cn_edition)
            self.windows = WindowStage(ss, self.stores.windows, calc)
        self.sensors = SensorRules(self.stores.sensors, registry, rules, self.n,
                                   lateness_ms=int(ss.streams_lateness_s * 1000),
                                   checkpoint_s=checkpoint_s)
        self.districts = DistrictRules(self.stores.districts, registry, rules, self.n,
                                       step_ms=int(cfg.district_step_s * 1000),
                                       checkpoint_s=checkpoint_s)
        self.interest = DistrictInterest(self.n)
        self.pipeline = SourcePipeline(self.windows, self.sensors, self.interest, rules,
                                       outputs=outputs,
                                       deferred_marks=0 < checkpoint_s < float("inf"))
        self.ruleset = ruleset
        self.part = Partitioner(self.n)
        self.offsets: dict[tuple[str, int], int] = defaultdict(int)
        self.events: list[AlertEvent] = []
        #: index samples the windows produced (for the backtest's categories and plots)
        self.samples: list[dict[str, Any]] = []

    def _by_partition(self, readings: Iterable[Mapping[str, Any]]
                      ) -> dict[tuple[str, int], list[Mapping[str, Any]]]:
        by_tp: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
        for r in readings:
            by_tp[(readings_topic(str(r["domain"])), self.part(str(r["sensor_id"])))].append(r)
        return by_tp

    def process(self, readings: Iterable[Mapping[str, Any]]) -> list[SourceOutput]:
        """A batch of readings through every source partition's stages, as records of at
        most ``batch_max`` readings with consecutive offsets; the state writes that close
        it are still to be done (``pipeline.finish``), as in the worker."""
        outs: list[SourceOutput] = []
        by_tp = self._by_partition(readings)
        for tp in sorted(by_tp):
            rs = by_tp[tp]
            records = []
            for i in range(0, len(rs), self.batch_max):
                records.append((self.offsets[tp], rs[i:i + self.batch_max]))
                self.offsets[tp] += 1
            out = self.pipeline.process(tp[0], tp[1], records)
            self.samples += out.rendered.samples
            outs.append(out)
        return outs

    def feed(self, readings: Iterable[Mapping[str, Any]]) -> list[AlertEvent]:
        """One tick of readings (any order): every partition's records, then the district
        stage with the forwards of the tick. Returns the alert events."""
        outs = self.process(readings)
        for _ in self.pipeline.finish(outs):
            pass  # in memory, every write is durable at once
        events = [e for out in outs for e in out.events]
        forwards: dict[int, list[Forward]] = defaultdict(list)
        for out in outs:
            for p, f in out.forwards.items():
                forwards[p].append(f)
        for p in sorted(forwards):
            events += self.districts.process(p, forwards[p])
            self.districts.persist(DISTRICT_SOURCE, p)  # as the worker's district batch
        self.events += events
        return events

    def warm(self, readings: Iterable[Mapping[str, Any]]) -> int:
        """Seed rule state from history without evaluating it (no windows, no alerts):
        what a worker does at start with InfluxDB's raw points (streams/warmup.py).
        Returns the readings used."""
        used = 0
        rs = self.ruleset
        for (topic, partition), batch in sorted(self._by_partition(readings).items()):
            used += self.sensors.warm(topic, partition, batch)
            for p, f in self.interest.forward(rs, topic, partition, None, batch,
                                              warm=True).items():
                if f.readings:
                    self.districts.process(p, [f])
        return used
