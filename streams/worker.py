"""What a streams worker does with each batch, between Faust's topics and the pure stages.

``streams/app.py`` declares the topology (topics, tables, agents, timers) and hands every
batch to a :class:`StreamsWorker`. The work itself lives in Faust-free stages the backtest
runs too: :class:`~.pipeline.SourcePipeline` (windows, indices, sensor rules, district
forwards) and :class:`~.alert_stage.DistrictRules`. This module only orders the I/O so that
nothing is acknowledged before it is durable:

1. raw readings → InfluxDB (in flight while the stages compute);
2. window deltas → table (inside the stage), then closed-window lines → InfluxDB,
   ``aggregates`` and roll-up partials → Kafka, alert events → Kafka/MQTT/webhooks,
   district forwards → Kafka;
3. everything flushed (Kafka) and acknowledged (InfluxDB);
4. window marks, tombstones and rule state → tables; Faust acks the records after this.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from urbanbrain.rules import AlertEvent

from urbanbrain.influx import InfluxWriter
from urbanbrain.kafka import READINGS_TOPICS
from urbanbrain.latency import LatencyHistogram
from urbanbrain.lineprotocol import ReadingLineEncoder, line
from urbanbrain.reading import decode_batch, encode_batch
from urbanbrain.retention import LONGTERM, PIPELINE, RAW, WINDOWS, write_routed

from .alert_stage import DISTRICT_SOURCE, Forward
from .alerting import Alerting
from .batch_watch import watched
from .commit_watch import CommitWatch
from .pipeline import SourceOutput, SourcePipeline
from .processor import WindowStage
from .rollup_stage import RollupStage, points_to_lines
from .settings import StreamsSettings
from .sinks import letters
from .sinks.base import BatchingSink, InfluxSink, KafkaSink, Record, chunked
from .faust_patches import commit_ceiling, set_commit_ceiling
from .state import BatchAbandoned, RebalanceFence, flush_durably
from .warmup import WarmStart
from .worker_health import lag_by_partition

log = logging.getLogger(__name__)
T = TypeVar("T")

AGGREGATES_PER_RECORD = 200
DISTRICT_RECORD_READINGS = 500  # as ingest's batch_max: records stay far below 1 MB
FORWARD_VERSION = 1


def encode_forward(f: Forward) -> bytes:
    return orjson.dumps({"v": FORWARD_VERSION, "src": f.src, "wm": f.wm, "warm": f.warm,
                         "readings": f.readings})


def decode_forward(value: bytes) -> Forward:
    doc = orjson.loads(value)
    if not isinstance(doc, dict) or doc.get("v") != FORWARD_VERSION:
        raise ValueError("not a district forward record")
    return Forward(str(doc["src"]), doc.get("wm"), list(doc.get("readings") or []),
                   bool(doc.get("warm")))


def forward_records(f: Forward, size: int) -> list[Forward]:
    """A forward cut into records of at most ``size`` readings. Only the last record
    carries the forward's watermark as is; an earlier one promises no more than the
    oldest reading still to come in the records after it. Why: the district agent may
    take the first records in one run (or batch) and the rest in the next, and a clock
    moved to the full watermark in between would meet the rest behind it. A forward
    without readings is one record (it still carries the watermark); a warm one without
    readings is none."""
    chunks = list(chunked(f.readings, size))
    if not chunks:
        return [] if f.warm else [Forward(f.src, f.wm, [], f.warm)]
    wms: list[int | None] = [f.wm] * len(chunks)
    if f.wm is not None:
        oldest_after: int | None = None
        for i in range(len(chunks) - 1, 0, -1):
            m = min(int(r["ts"]) for r in chunks[i])
            oldest_after = m if oldest_after is None else min(oldest_after, m)
            wms[i - 1] = min(f.wm, oldest_after)
    return [Forward(f.src, wm, list(c), f.warm) for wm, c in zip(wms, chunks)]


def runs(items: Sequence[T], max_readings: int,
         size: Callable[[T], int] = lambda rec: len(rec[1])) -> Iterator[Sequence[T]]:
    """Consecutive runs of a partition's records (by default (offset, readings) pairs;
    ``size`` counts an item's readings) holding at most ``max_readings`` readings, at least
    one item each.

    Why: in real time a batch holds a few small records, but on a catch-up it is
    ``streams_take_records`` full records of up to 500 readings each, 100,000 readings whose
    windows, indices and rules ran without an ``await``: on a one-day full-speed replay
    Faust's timers (commit, liveness, reports) woke 36 s late. Between runs the worker
    yields; the runs' outputs still share the batch's one durable cycle, because a cycle
    per run (tried first: byte-bounded sub-batches) made a catch-up drain 1.3-3.3x slower."""
    start, n = 0, 0
    for i, item in enumerate(items):
        k = size(item)
        if n and n + k > max_readings:
            yield items[start:i]
            start, n = i, 0
        n += k
    if start < len(items):
        yield items[start:]


@dataclass(frozen=True)
class WorkerSinks:
    """Where a readings batch goes besides the alert outputs (streams/alerting_outputs.py)
    and the district forwards (their own order: events before the state that says so)."""

    raw: InfluxSink
    windows: InfluxSink
    hours: InfluxSink
    aggregates: KafkaSink
    partials: KafkaSink
    deadletters: KafkaSink

    @classmethod
    def of(cls, writer: InfluxWriter, topics: Mapping[str, Any]) -> WorkerSinks:
        return cls(raw=InfluxSink(writer, RAW), windows=InfluxSink(writer, WINDOWS),
                   hours=InfluxSink(writer, LONGTERM),
                   aggregates=KafkaSink(topics["aggregates"], "aggregates"),
                   partials=KafkaSink(topics["partials"], "partials"),
                   deadletters=KafkaSink(topics["deadletters"], "deadletters"))

    @property
    def influx(self) -> tuple[InfluxSink, ...]:
        return (self.raw, self.windows, self.hours)

    @property
    def kafka(self) -> tuple[KafkaSink, ...]:
        return (self.aggregates, self.partials, self.deadletters)

    @property
    def all(self) -> tuple[BatchingSink[Any], ...]:
        return (*self.influx, *self.kafka)


@dataclass
class StreamsStats:
    records: int = 0
    readings: int = 0
    batches: int = 0  # readings batches (agent takes) done
    refused: int = 0
    bad_records: int = 0
    last_report: float = field(default_factory=time.monotonic)
    last_readings: int = 0
    last_points: int = 0
    batch_ms: float = 0.0
    #: seconds spent per phase of a readings batch (cumulative): where a batch's time goes
    phase_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    #: event time → InfluxDB acknowledged the raw point
    stored_latency: LatencyHistogram = field(default_factory=LatencyHistogram)


class StreamsWorker:
    """The batch handlers of one worker process (see the module docstring)."""

    def __init__(self, app: Any, settings: StreamsSettings, *, writer: InfluxWriter,
                 windows: WindowStage | None, alerting: Alerting, rollups: RollupStage,
                 topics: Mapping[str, Any], worker_id: str, store_raw: bool = True) -> None:
        self.app, self.settings = app, settings
        self.writer = writer
        self.windows = windows
        self.alerting = alerting
        self.rollups = rollups
        self.topics = topics
        self.worker_id = worker_id
        self.store_raw = store_raw
        self.encoder = ReadingLineEncoder()
        self.sinks = WorkerSinks.of(writer, topics)
        self.stats = StreamsStats()
        self.pipeline = SourcePipeline(windows, alerting.sensors, alerting.interest,
                                       lambda: alerting.watcher.ruleset,
                                       deferred_marks=alerting.cfg.state_checkpoint_s > 0)
        span = int(alerting.cfg.warmup_s * 1000)
        self.warm_start = (WarmStart(writer, settings.kafka_partitions, span)
                           if span > 0 else None)
        self._generation: Any = object()
        self._rollup_generation: Any = object()
        #: stops a batch a rebalance overtook before it writes (streams/state.py)
        self.fence = RebalanceFence(app)
        #: (topic, partition) -> monotonic time of its last record (idle partitions)
        self.last_record: dict[tuple[str, int], float] = {}
        #: (topic, partition) -> offset of the last record this worker *processed*: a
        #: partition is idle only when that reaches its end, not when Faust has merely read
        #: its records into the agent's buffer (a catch-up keeps them there for seconds)
        self.processed: dict[tuple[str, int], int] = {}
        #: partitions whose commit waits for their state's next write -> the stages'
        #: generation when the hold began (see _hold_commit)
        self._held: dict[tuple[str, int], Any] = {}
        #: quiet partitions taken up for the district clocks (once per generation)
        self._taken_up: set[tuple[str, int]] = set()
        #: (topic, partition) -> log end offset the broker reported (check_fetching): the
        #: highwater aiokafka reports is the last *fetch*'s, frozen while nothing is fetched
        self.log_end: dict[tuple[str, int], int] = {}
        self._generation_started = time.monotonic()
        #: partitions put back into Faust's fetch set by check_fetching (metrics, tests)
        self.refetched = 0
        #: partitions with records left that check_fetching reported and cannot put back
        self._left_behind: set[tuple[str, int]] = set()
        #: partitions whose commit stopped behind what was read (check_commits reports)
        self.commit_watch = CommitWatch()
        #: monotonic start of the readings batch running now (None: the agent waits)
        self._busy_since: float | None = None
        self._idle_since = time.monotonic()  # when the last readings batch ended
        #: one handler at a time touches the evaluators: a timer (idle partitions, rule
        #: reload) running between a batch's awaits would write state whose events that
        #: batch has not delivered yet, and a crash then would lose them
        self.lock = asyncio.Lock()

    # -- consumer generations ------------------------------------------------------------
    def _new_generation(self) -> None:
        gen = self.app.consumer_generation_id
        if gen != self._generation:
            self._generation = gen
            self._generation_started = time.monotonic()
            self.log_end.clear()  # asked again for the new assignment (check_fetching)
            self.processed.clear()  # partitions are re-read from their committed offsets
            self._taken_up.clear()
            self._reset_stages(gen)

    def _reset_stages(self, gen: Any) -> None:
        """Drop the stages' in-memory state: rebuilt from the tables when next used."""
        if self.windows is not None:
            self.windows.reset(gen)
        self.pipeline.reset()
        self.alerting.sensors.reset(gen)
        self.alerting.districts.reset(gen)

    def _abandon(self, events: Sequence[Any], what: str, where: str) -> None:
        """A batch the fence stopped: its in-memory effects are dropped too, so that
        nothing (the revocation's checkpoint, the next batch) writes them after all."""
        self.fence.abandon(events, what, where)
        self._generation = object()  # the next batch resets the stages again
        self._reset_stages(self._generation)

    # -- readings.* ------------------------------------------------------------------------
    async def readings_batch(self, events: Sequence[Any]) -> None:
        self._busy_since = time.monotonic()
        try:
            async with watched(f"readings batch of {len(events)} records",
                               self.settings.streams_batch_warn_s), self.lock:
                try:
                    await self._readings_batch(events)
                except BatchAbandoned as why:
                    for sink in self.sinks.all:
                        sink.discard()
                    self._abandon(events, "readings batch", str(why))
                except BaseException:
                    for sink in self.sinks.all:
                        sink.discard()
                    raise
        finally:
            self._busy_since = None
            self._idle_since = time.monotonic()

    async def _readings_batch(self, events: Sequence[Any]) -> None:
        t0 = time.perf_counter()
        self._new_generation()
        fence, token = self.fence, self.fence.token()
        st, ss, out_ = self.stats, self.settings, self.sinks
        dead = out_.deadletters
        readings: list[Mapping[str, Any]] = []
        by_tp: dict[tuple[str, int], list[tuple[int, list]]] = defaultdict(list)
        #: (topic, partition, offset) -> when ingest wrote the record (epoch s): the clock
        #: that judges idle sources, the same however late this worker reads it
        written: dict[tuple[str, int, int], float] = {}
        now_mono, now_epoch = time.monotonic(), time.time()
        for event in events:
            msg = event.message
            try:
                batch = decode_batch(event.value)
            except ValueError as exc:
                st.bad_records += 1
                dead.add([Record(orjson.dumps({
                    "topic": msg.topic, "reason": "malformed", "message": str(exc),
                    "payload": None, "payload_b64": None, "received_ms": _now_ms(),
                }))])
                continue
            readings.extend(batch)
            by_tp[(msg.topic, msg.partition)].append((msg.offset, batch))
            ts = msg.timestamp
            written[(msg.topic, msg.partition, msg.offset)] = (
                ts if isinstance(ts, (int, float)) and ts > 0 else now_epoch)
            self.last_record[(msg.topic, msg.partition)] = now_mono
        # 1. raw readings: the write runs while the stages compute; done before any ack
        bad: list[tuple[Any, str]] = []
        lines: list[str] = []
        if self.store_raw:
            lines, bad = self.encoder.encode(readings)
            out_.raw.add(lines)
            out_.raw.start()
            await asyncio.sleep(0)  # let the request start before the CPU-bound part
            dead.add(Record(letters.unencodable(r, why)) for r, why in bad)
        await self._warm_fresh(by_tp, token)
        t1 = time.perf_counter()
        # 2. windows, indices, sensor rules, district forwards per source partition
        outs: list[SourceOutput] = []
        evaluated_ms: list[int] = []  # wall clock of each alert's evaluation
        for (topic, partition), recs in by_tp.items():
            recs.sort(key=lambda x: x[0])
            for run in runs(recs, ss.streams_yield_readings):
                ingested = max(written[(topic, partition, off)] for off, _ in run)
                t_eval = _now_ms()
                out = self.pipeline.process(topic, partition, run, ingested)
                evaluated_ms += [t_eval] * len(out.events)
                dead.add(Record(letters.late(topic, r, ss.streams_lateness_s))
                         for r in out.late)
                dead.add(Record(letters.refused_line(sensor, why))
                         for sensor, why in out.rendered.refused)
                out_.windows.add(out.rendered.lines)
                out_.hours.add(out.rendered.hourly_lines)  # closed hours (streams/hourly.py)
                for chunk in chunked(out.rendered.records, AGGREGATES_PER_RECORD):
                    out_.aggregates.add([Record(encode_batch(chunk), partition=partition)])
                out_.partials.add(Record(orjson.dumps(p), key=p["domain"].encode())
                                  for p in out.rendered.partials)
                outs.append(out)
                await asyncio.sleep(0)  # timers, heartbeats and fetches between runs
                # a revocation that began meanwhile waits for this batch: stop at once
                fence.check(token, "in its stages")
        t2 = time.perf_counter()
        fence.check(token, "before its outputs")
        for sink in out_.all:
            sink.start()
        for out in outs:
            await self.alerting.outputs.emit(out.events)
            await self._forward(out.forwards)
        # 3. everything durable before the marks say a window is done and the rule state
        #    says an alert was sent, and those before Faust acks these records
        for sink in out_.kafka:
            await sink.done()
        t3 = time.perf_counter()
        await flush_durably(self.app)
        t4 = time.perf_counter()
        if evaluated_ms:  # the alerts are acknowledged by Kafka now
            self.alerting.outputs.acked_latency.observe(evaluated_ms, _now_ms())
        raw_refused = await out_.raw.done()
        if readings and self.store_raw:
            # stored when InfluxDB acknowledged the raw write (it started before the
            # stages), not when this batch's stages and Kafka flush are through as well
            stored_ms = out_.raw.finished_ms if lines else None
            st.stored_latency.observe([r["ts"] for r in readings], stored_ms or _now_ms())
        refused = raw_refused + await out_.windows.done() + await out_.hours.done()
        if refused:  # dead letters of refused lines, durable before the ack too
            dead.add(Record(letters.refused_line(text, why)) for text, why in refused)
            await dead.done()
            await flush_durably(self.app)
        t5 = time.perf_counter()
        # rule state durable before window marks; neither written once a rebalance began
        steps = self.pipeline.finish(outs)
        while True:
            fence.check(token, "before its state")
            if next(steps, StopIteration) is StopIteration:
                break
            await flush_durably(self.app)
        await flush_durably(self.app)
        # commits: a partition whose state was just written may be committed up to here;
        # another no further than its first record since its last write (faust patch 6)
        written = set(self.pipeline.checkpointed)
        for (topic, partition), recs in by_tp.items():
            self._hold_commit((topic, partition), None if (topic, partition) in written
                              else recs[0][0])
        for tp, recs in by_tp.items():
            self.processed[tp] = max(self.processed.get(tp, -1), recs[-1][0])
        st.records += len(events)
        st.readings += len(readings)
        st.batches += 1
        st.refused += len(bad) + len(raw_refused)
        t6 = time.perf_counter()
        st.batch_ms = (t6 - t0) * 1000
        ph = st.phase_s
        ph["decode_encode"] += t1 - t0
        ph["stages"] += t2 - t1
        ph["send"] += t3 - t2
        ph["kafka_flush"] += t4 - t3
        ph["influx_wait"] += t5 - t4
        ph["marks"] += t6 - t5

    async def _warm_fresh(self, by_tp: Mapping[tuple[str, int], list[tuple[int, list]]],
                          token: Any) -> None:
        """Partitions with no rule state at all (a new deploy) get their history from
        InfluxDB before their first batch is evaluated (streams/warmup.py)."""
        sensors, warm = self.alerting.sensors, self.warm_start
        fresh: dict[str, dict[int, int]] = defaultdict(dict)  # topic -> partition -> until
        for (topic, partition), recs in by_tp.items():
            sensors.get(topic, partition)
            if (topic, partition) in sensors.fresh:
                ts = [int(r["ts"]) for _, batch in recs for r in batch]
                if ts:
                    fresh[topic][partition] = min(ts)
        if not fresh:
            return
        rs = self.alerting.watcher.ruleset
        for topic, parts in fresh.items():
            until = min(parts.values())
            domain = topic.split(".", 1)[1]
            history = (await warm.history(rs, domain, set(parts), until)
                       if warm is not None else {p: [] for p in parts})
            self.fence.check(token, "before its warm start")  # forwards history onwards
            for partition, readings in history.items():
                sensors.warm(topic, partition, readings)
                if readings and self.alerting.interest.any(rs):
                    await self._forward(self.alerting.interest.forward(
                        rs, topic, partition, None, readings, warm=True))

    async def _forward(self, forwards: Mapping[int, Forward]) -> None:
        district = self.topics["district"]
        for partition, f in forwards.items():
            for part in forward_records(f, DISTRICT_RECORD_READINGS):
                await district.send(key=str(partition).encode(),
                                    value=encode_forward(part),
                                    partition=partition)

    # -- district forwards -------------------------------------------------------------------
    async def district_batch(self, events: Sequence[Any]) -> None:
        async with watched(f"district batch of {len(events)} forwards",
                           self.settings.streams_batch_warn_s), self.lock:
            try:
                await self._district_batch(events)
            except BatchAbandoned as why:
                self._abandon(events, "district batch", str(why))

    async def _district_batch(self, events: Sequence[Any]) -> None:
        self._new_generation()
        token = self.fence.token()
        by_part: dict[int, list[tuple[int, Forward]]] = defaultdict(list)
        topic = self.topics["district"].get_topic_name()
        for event in events:
            msg = event.message
            try:
                by_part[msg.partition].append((msg.offset, decode_forward(event.value)))
            except (ValueError, KeyError, TypeError):
                log.warning("undecodable district forward at offset %d", msg.offset)
        now = time.monotonic()
        districts = self.alerting.districts
        self.fence.check(token, "before its alerts")
        evaluated_ms: list[int] = []
        for partition, forwards in by_part.items():
            forwards.sort(key=lambda x: x[0])
            fresh = districts.unseen(partition, forwards)
            # a catch-up batch of forwards is ~100,000 readings: in runs, as the readings
            for run in runs(fresh, self.settings.streams_yield_readings,
                            lambda f: len(f.readings) or 1):
                t_eval = _now_ms()
                sent = districts.process(partition, run, now)
                await self.alerting.outputs.emit(sent)
                evaluated_ms += [t_eval] * len(sent)
                await asyncio.sleep(0)
                self.fence.check(token, "in its runs")  # a revocation waits for us
        await flush_durably(self.app)
        if evaluated_ms:
            self.alerting.outputs.acked_latency.observe(evaluated_ms, _now_ms())
        self.fence.check(token, "before its state")
        ceilings: dict[int, int | None] = {}
        for partition, forwards in by_part.items():
            written = districts.persist(DISTRICT_SOURCE, partition)
            ceilings[partition] = None if written is not None else forwards[0][0]
        if self.pipeline.deferred_marks and any(v is None for v in ceilings.values()):
            await flush_durably(self.app)  # durable before its commit may pass it
        for partition, offset in ceilings.items():
            self._hold_commit((topic, partition), offset)

    # -- idle partitions -----------------------------------------------------------------------
    async def advance_idle(self) -> None:
        """Processing-time tick: a caught-up partition that received nothing for
        ``idle_s`` moves its rule watermark with the clock, so the absence of its sensors
        still fires when they all fall silent. Only live: a partition with lag is not idle."""
        async with watched("idle tick", self.settings.streams_batch_warn_s), self.lock:
            try:
                await self._advance_idle()
            except BatchAbandoned as why:
                self._abandon((), "idle tick", str(why))

    async def _advance_idle(self) -> None:
        if self.app.rebalancing or self.app.in_recovery:
            return
        self._new_generation()  # evaluators of partitions that moved away are dropped
        token = self.fence.token()
        try:
            assigned = {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}
        except Exception:  # noqa: BLE001 - no consumer yet
            return
        await self._take_up_quiet_partitions(assigned, token)
        idle_s = self.alerting.cfg.idle_s
        now = time.monotonic()
        sensors = self.alerting.sensors
        events: list[AlertEvent] = []
        advanced: list[tuple[str, int]] = []
        for (topic, partition) in list(sensors.live):
            if (topic, partition) not in assigned:
                continue  # another worker's now: never advance (or persist) it here
            last = self.last_record.get((topic, partition))
            if (last is None or now - last < idle_s
                    or not _caught_up(self.app, topic, partition,
                                      self.processed.get((topic, partition)),
                                      self.log_end.get((topic, partition)))):
                continue
            wm = sensors.watermark(topic, partition)
            if wm is None:
                continue
            wm_now = wm + int((now - last) * 1000)
            events += sensors.advance(topic, partition, wm_now, time.time())
            rs = self.alerting.watcher.ruleset
            if self.alerting.interest.any(rs):  # the district clocks move with it
                await self._forward(self.alerting.interest.forward(rs, topic, partition,
                                                                   wm_now, []))
            advanced.append((topic, partition))
        if events:
            await self.alerting.outputs.emit(events)
        if advanced:
            await flush_durably(self.app)  # the events before the state that says so
        self.fence.check(token, "before its state")
        wrote = [(topic, partition) for topic, partition in advanced
                 if sensors.persist(topic, partition) is not None]
        await self._checkpoint_quiet(token, wrote)

    # -- checkpointed state (URBANBRAIN_ALERT_STATE_CHECKPOINT_S > 0) --------------------------
    def _hold_commit(self, tp: tuple[str, int], offset: int | None) -> None:
        """Commit ``tp`` no further than ``offset``, its first record whose state is not
        written yet (None: all of it is). Remembered with the stages' generation: a hold
        set before the stages were dropped is never lifted by a write of their rebuilt
        state, which lacks what was dropped (the seek of the next assignment clears it)."""
        consumer = self.app.consumer
        new = tp not in self._held or commit_ceiling(consumer, *tp) is None
        set_commit_ceiling(consumer, tp[0], tp[1], offset)
        if offset is None:
            self._held.pop(tp, None)
        elif new:  # a hold the last seek cleared is a new one
            self._held[tp] = self._generation

    async def _checkpoint_quiet(self, token: Any, wrote: Sequence[tuple[str, int]] = ()
                                ) -> None:
        """Write the state of partitions whose last batch left it in memory and that got
        no batch since, once due, and lift their commit holds (``wrote``: partitions the
        idle tick just wrote): their commits then need no next record, and the commit
        watch sees no partition held behind what it read."""
        held = {tp for tp, gen in self._held.items() if gen is self._generation}
        if not held:
            return
        district = self.topics["district"].get_topic_name()
        written = [tp for tp in wrote if tp in held]
        self.fence.check(token, "before its state")
        for topic, partition in sorted(held - set(written)):
            stage, source = ((self.alerting.sensors, topic) if topic in READINGS_TOPICS
                             else (self.alerting.districts, DISTRICT_SOURCE)
                             if topic == district else (None, ""))
            if (stage is not None and (source, partition) in stage.live
                    and stage.persist(source, partition) is not None):
                written.append((topic, partition))
        if not written:
            return
        self.pipeline.write_deltas(written)
        await flush_durably(self.app)
        self.fence.check(token, "before its marks")
        if self.pipeline.apply_marks(written):
            await flush_durably(self.app)
        for tp in written:
            self._hold_commit(tp, None)

    async def _take_up_quiet_partitions(self, assigned: set[tuple[str, int]],
                                        token: Any) -> None:
        """Assigned readings partitions with nothing to process (no data, or taken over at
        their end) must still speak to the district clocks, which wait for every source
        (streams/alert_stage.py). Once per partition and generation: its rule state is
        loaded (alerts of rules removed meanwhile are emitted); one that never held data
        is announced empty (a forward without a watermark: it holds nothing back); one
        with a watermark is handed to :meth:`advance_idle`, which moves it on like any
        idle partition."""
        rs = self.alerting.watcher.ruleset
        if not self.alerting.interest.any(rs):
            return
        sensors = self.alerting.sensors
        for topic, partition in sorted(assigned):
            tp = (topic, partition)
            if (topic not in READINGS_TOPICS or tp in self._taken_up
                    or tp in sensors.live
                    or not _caught_up(self.app, topic, partition, self.processed.get(tp),
                                      self.log_end.get(tp))):
                continue
            self._taken_up.add(tp)
            ev, events = sensors.get(topic, partition)  # its state, from the changelog
            if events:  # alerts of rules removed while nobody held the partition
                await self.alerting.outputs.emit(events)
                await flush_durably(self.app)
                self.fence.check(token, "before its state")
                sensors.persist(topic, partition)
            if ev.watermark is not None:
                self.last_record.setdefault(tp, time.monotonic())
                continue
            await self._forward(self.alerting.interest.forward(rs, topic, partition, None, []))

    # -- partitions Faust stopped fetching ----------------------------------------------------
    async def check_fetching(self, stall_s: float) -> None:
        """Every assigned readings partition with records left must be fetched.

        A restarted worker of the CI kill test (one loaded run in eight) stopped receiving
        two of its partitions: their records stayed in Kafka, the worker stored nothing
        more, and the highwater aiokafka reports froze at the last fetch, so those
        partitions even looked caught up to the idle tick, which moved their clocks past
        records still to come. Faust takes a partition out of its fetch set while the
        agent's queue is under pressure (``Consumer.on_buffer_full``) and relies on a queue
        callback to put it back; a lost callback would leave exactly this, though the
        failing run did not record the fetch set. Each check asks the broker for the true
        log end offsets (kept for ``_caught_up``) and puts back, with a warning, a
        partition that has records left and is out of the fetch set although Faust has not
        paused it, once the readings agent has been *waiting* for ``stall_s``: during a
        catch-up the queue stays under pressure for minutes and partitions are rightly out
        of the fetch set while the agent works (the first version of this check, judging
        by the partition's silence alone, fired there)."""
        app = self.app
        if app.rebalancing or app.in_recovery:
            return
        consumer = app.consumer
        try:
            tps = [tp for tp in consumer.assignment() if tp.topic in READINGS_TOPICS]
            ends = await consumer.highwaters(*tps) if tps else {}
        except Exception:  # noqa: BLE001 - no consumer yet, broker away: next time
            return
        if app.rebalancing or app.in_recovery:
            return
        from faust.types import TP

        now = time.monotonic()
        waiting = _waiting_s(self, now)
        active = consumer._active_partitions  # noqa: SLF001 - Faust's fetch set
        paused = consumer._paused_partitions  # noqa: SLF001 - paused for recovery
        for atp, end in ends.items():
            tp = TP(atp.topic, atp.partition)  # the fetch set takes Faust's type only
            key = (tp.topic, tp.partition)
            self.log_end[key] = end
            start = _reading_start(consumer, tp, self.processed.get(key))
            if start >= end or waiting < stall_s or active is None:
                self._left_behind.discard(key)
                continue
            if tp in active or tp in paused:
                self._report_left_behind(consumer, atp, tp, start, end, waiting,
                                         "paused" if tp in paused else "in the fetch set")
                continue
            log.warning("%s[%d]: %d records left from offset %d, out of Faust's fetch set "
                        "(not paused) while the agent has waited %.0f s: fetching it again",
                        tp.topic, tp.partition, end - start, start, waiting)
            consumer._buffered_partitions.discard(tp)  # noqa: SLF001
            active.add(tp)
            self.refetched += 1

    def _report_left_behind(self, consumer: Any, atp: Any, tp: Any, start: int, end: int,
                            waiting: float, where: str) -> None:
        """A partition with records left while the agent waits, that this check cannot
        put back (Faust believes it fetches it, or paused it): logged once per episode
        with what aiokafka and Faust know of it, so the next stall of this kind says
        where the records are held (one CI kill test in five with checkpointed state
        ended like this, and its logs could not tell)."""
        key = (tp.topic, tp.partition)
        if key in self._left_behind:
            return
        self._left_behind.add(key)
        log.warning("%s[%d]: %d records left from offset %d while the agent has waited "
                    "%.0f s, and Faust has it %s (buffered %s, read offset %s, committed "
                    "%s; aiokafka: %s)", tp.topic, tp.partition, end - start, start, waiting,
                    where, tp in getattr(consumer, "_buffered_partitions", ()),
                    consumer._read_offset.get(tp),  # noqa: SLF001 - diagnostics only
                    consumer._committed_offset.get(tp),  # noqa: SLF001
                    _fetch_state(consumer, atp))

    async def check_commits(self, stall_s: float) -> None:
        """Log a partition whose commit stopped behind records read, or behind what Faust
        believes it committed (see commit_watch), only while the readings agent waits: a
        catch-up batch holds commits as it runs."""
        app = self.app
        if app.rebalancing or app.in_recovery:
            return
        now = time.monotonic()
        if _waiting_s(self, now) < stall_s:
            return
        topics = [*READINGS_TOPICS, self.topics["district"].get_topic_name()]
        try:
            consumer = app.consumer
            tps = [tp for tp in consumer.assignment() if tp.topic in topics]
            broker = await _broker_committed(consumer, tps)
            if app.rebalancing or app.in_recovery:
                return
            self.commit_watch.check(consumer, topics, stall_s, now, broker,
                                    hold_s=2 * self.alerting.cfg.state_checkpoint_s)
        except Exception:  # noqa: BLE001 - a diagnostic must never break the worker
            log.exception("commit watch failed")

    # -- rule status for operators ----------------------------------------------------------
    async def publish_rule_status(self) -> None:
        """Per live evaluator: pending, firing and warming-up keys of every rule, on the
        compacted ``alerts.rules`` topic (``urbanbrain rules list``, the console). Costs
        O(candidate keys) per interval for rules with baselines, never per batch."""
        if self.app.rebalancing or self.app.in_recovery:
            return
        topic = self.topics["rules_status"]
        now = _now_ms()
        for stage in (self.alerting.sensors, self.alerting.districts):
            for (source, partition), ev in list(stage.live.items()):
                doc = {"at": now, "worker": self.worker_id, "source": source,
                       "partition": partition, "event_time": ev.watermark,
                       "rules": ev.rule_status()}
                await topic.send(key=f"{self.worker_id}|{source}|{partition}".encode(),
                                 value=orjson.dumps(doc))

    # -- roll-ups ----------------------------------------------------------------------------
    async def write_rollups(self, partials_topic: str) -> None:
        app = self.app
        if app.rebalancing or app.in_recovery:
            return
        if self._rollup_generation != app.consumer_generation_id:
            self.rollups.forget()
            self._rollup_generation = app.consumer_generation_id
        try:
            active = {tp.partition for tp in app.assignor.assigned_actives()
                      if tp.topic == partials_topic}
        except Exception:  # noqa: BLE001 - before the first assignment
            return
        due = self.rollups.due(active)
        if due:
            for text, why in await write_routed(self.writer, points_to_lines(due)):
                log.warning("roll-up point refused: %s (%s)", text[:200], why)

    # -- self-monitoring ---------------------------------------------------------------------
    async def report(self) -> None:
        st = self.stats
        now = time.monotonic()
        dt = max(now - st.last_report, 1e-6)
        rate = (st.readings - st.last_readings) / dt
        w = self.writer.stats
        points_rate = (w.points - st.last_points) / dt
        st.last_report, st.last_readings, st.last_points = now, st.readings, w.points
        lat = st.stored_latency
        fields: dict[str, Any] = {
            **lat.fields(), **lat.interval_quantiles(),
            "readings_total": st.readings, "readings_per_s": rate,
            "records_total": st.records, "refused_total": st.refused,
            "batches_total": st.batches, "points_total": w.points, "points_per_s": points_rate,
            "write_retries_total": w.retries, "write_batch_ms": w.last_batch_ms,
            "agent_batch_ms": st.batch_ms,
            **{f"agent_{k}_s_total": v for k, v in st.phase_s.items()},
            "lag_records": _lag(self.app, self.log_end),
        }
        if self.windows is not None:
            ws = self.windows.stats
            fields.update({"late_total": ws.late, "windows_emitted_total": ws.windows,
                           "partials_total": ws.partials, "open_panes": self.windows.open_panes,
                           "hours_emitted_total": self.windows.hourly.stats.hours})
        fields.update({"rollups_emitted_total": self.rollups.stats.emitted,
                       "rollup_partials_dropped_total": self.rollups.stats.dropped_late})
        points = [line("pipeline", {"stage": "streams", "worker": self.worker_id}, fields,
                       _now_ms())]
        out = self.alerting.outputs
        points.append(line("pipeline", {"stage": "alerts", "worker": self.worker_id},
                           {**out.latency.fields(), **out.latency.interval_quantiles(),
                            **out.acked_latency.fields(),
                            **out.acked_latency.interval_quantiles(),
                            **{f"sent_{k}_total": v for k, v in out.sent.items()}},
                           _now_ms()))
        await self.writer.write(points, rp=PIPELINE)


async def _broker_committed(consumer: Any, tps: Sequence[Any]) -> dict[Any, int | None]:
    """The group's committed offsets of ``tps`` as the broker has them (one OffsetFetch,
    run on Faust's consumer thread, which owns the aiokafka client)."""
    from aiokafka.structs import TopicPartition as ATP

    if not tps:
        return {}
    thread = consumer._thread  # noqa: SLF001 - Faust's aiokafka consumer thread

    async def fetch() -> dict[Any, Any]:
        coordinator = thread._ensure_consumer()._coordinator  # noqa: SLF001
        # bounded: this runs in the queue that also carries the rebalance callbacks
        return await asyncio.wait_for(
            coordinator.fetch_committed_offsets([ATP(*tp) for tp in tps]), 5.0)

    got = await thread.call_thread(fetch)
    out: dict[Any, int | None] = {}
    for tp in tps:
        meta = got.get(ATP(*tp))
        out[tp] = meta.offset if meta is not None and meta.offset >= 0 else None
    return out


def _waiting_s(worker: Any, now: float) -> float:
    """How long the readings agent has been waiting for records (0 while a batch runs)."""
    if worker._busy_since is not None:  # noqa: SLF001
        return 0.0
    return now - max(worker._idle_since, worker._generation_started)  # noqa: SLF001


def _caught_up(app: Any, topic: str, partition: int, processed: int | None,
               log_end: int | None = None) -> bool:
    """Whether this worker has processed the partition's last record (``processed``: the
    offset of the last one it did in this consumer generation). A partition it processed
    nothing of is caught up only if nothing is left to read from where its reading starts,
    the committed offset: one taken over at its end, or an empty one.

    Not "nothing read yet": right after a restart, a partition whose records are not
    fetched yet has read nothing either (Faust even stores a seek to offset 0 as "no read
    offset"), and was taken for a quiet one, its watermark moved on by the clock ahead of
    the backlog still to come. ``log_end``: the end offset the broker last reported
    (StreamsWorker.check_fetching); without one, nothing is caught up: the highwater
    aiokafka knows is only the last fetch's, frozen while a partition is not fetched.
    """
    if log_end is None:
        return False
    try:
        from faust.types import TP

        tp = TP(topic, partition)
        hw = max(app.consumer.highwater(tp) or 0, log_end)
        return hw <= _reading_start(app.consumer, tp, processed)
    except Exception:  # noqa: BLE001 - unknown: not caught up
        return False


def _fetch_state(consumer: Any, atp: Any) -> str:
    """What aiokafka's fetcher knows of a partition (position, paused, awaiting a reset,
    prefetched records not handed out), for a stall report; private attributes of the
    pinned aiokafka, so anything missing reads as unknown."""
    try:
        kc = consumer._thread._ensure_consumer()  # noqa: SLF001
        st = kc._subscription.subscription.assignment.state_value(atp)  # noqa: SLF001
        prefetched = atp in kc._fetcher._records  # noqa: SLF001
    except Exception:  # noqa: BLE001 - diagnostics only
        return "unknown"
    if st is None:
        return "not assigned"
    return (f"position {st._position}, paused {st.paused}, "  # noqa: SLF001
            f"awaiting reset {st.awaiting_reset}, prefetched {prefetched}")


def _reading_start(consumer: Any, tp: Any, processed: int | None) -> int:
    """The next offset this worker will process of ``tp``: after the last one it
    processed in this generation, else the committed offset, where Faust seeks to."""
    if processed is not None:
        return processed + 1
    return consumer._committed_offset.get(tp) or 0  # noqa: SLF001 - no public accessor


def _lag(app: Any, log_end: Mapping[tuple[str, int], int]) -> float | None:
    """Records of the readings topics not yet read by this worker (queue depth)."""
    by_partition = lag_by_partition(app, log_end)
    return None if by_partition is None else float(sum(by_partition.values()))


def _now_ms() -> int:
    return int(time.time() * 1000)
