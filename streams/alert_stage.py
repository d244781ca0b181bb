"""The worker's rule evaluation, Faust-free: the live agents and ``rules backtest`` drive
exactly this code.

    source partition batch (raw readings + index samples of its closed windows)
        ──▶ SensorRules.process   one Evaluator per (topic, partition), sensor scope:
        │                         each sensor at its own readings' event times; absence
        │                         and stale alerts on the due-time queue, driven by the
        │                         partition watermark (max event time − allowed lateness)
        └─▶ DistrictInterest.forward  readings/samples district rules use, with the
                                      source's watermark (``Forward``)
               ──▶ DistrictRules.process  per district partition: the clock is the
                                          minimum of its sources' watermarks; evaluated
                                          on a fixed event-time grid up to it

Why the district clock is a minimum: a district's sensors hash to every source partition,
and one source may run minutes or hours ahead of another (a backlog drained at full
speed, one worker slower than the other, a gateway uploading late). Evaluating a district
at time t is only right once every source has passed t, as Flink's operator watermark is
the minimum over its inputs.

Why the district stage never idles a source out by its own clock (Flink's
``withIdleness`` does): a source that sent nothing for a while is either idle or behind
(its worker busy with a backlog, a long batch, a full producer buffer), and the district
stage cannot tell which. Guessing "idle" under load moved clocks past sources whose
readings then arrived behind the grid, never evaluated at their times (the live
standard-week missed 3 of 5 Congestion incidents that way). Only the source's own worker
knows: a partition it has processed to its end that received nothing for ``idle_s``
forwards a watermark moved by processing time (``StreamsWorker.advance_idle``), and an
assigned partition without data is announced empty. Every readings partition is always
owned by a live worker of the group, so every source eventually speaks; while one is
behind, the districts wait for it, and results depend on event time only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from urbanbrain.rules import AlertEvent, Evaluator, RuleSet
from urbanbrain.rules.plan import SensorPlan
from urbanbrain.rules.silences import SilenceStore

from urbanbrain.reading import Partitioner
from urbanbrain.settings import DOMAINS

log = logging.getLogger(__name__)

DISTRICT_SOURCE = "district"
META = "stage"  # per-partition stage state next to the evaluator's entries
#: transitions sent since the partition's last checkpoint (checkpointed state only)
SENT = "sent"


def _identity(e: AlertEvent) -> str:
    """What makes a transition the same one again: consumers deduplicate by fingerprint,
    status and start; the silence flag is part of it because a silenced firing is
    notified again, with the same start, once its silence ends."""
    return f"{e.fingerprint}|{e.status}|{e.starts_at}|{int(e.silenced)}"


def domain_of(topic: str) -> str | None:
    return topic.split(".", 1)[1] if topic.startswith("readings.") else None


class _Evaluators:
    """One :class:`Evaluator` per (source, partition), persisted to a key/value store.

    Each evaluator sees only the registry entries that belong to its partition, so absence
    rules ("registered sensors that never reported") fire once, on the partition that owns
    the sensor or district, not on every partition. State entries are written under
    ``<source>|<partition>|<key>`` with the partition as the changelog partition, so the
    worker that gets the partition after a rebalance rebuilds exactly that state."""

    scope = "sensor"

    def __init__(self, store: Any, registry: Mapping[str, Mapping[str, Any]],
                 ruleset: Callable[[], RuleSet], partitions: int, *, checkpoint_s: float = 0.0,
                 silences: SilenceStore | None = None) -> None:
        self.store = store
        self.registry = registry
        self.ruleset = ruleset
        self.part = Partitioner(partitions)
        self.checkpoint_s = checkpoint_s
        self.silences = silences
        self.live: dict[tuple[str, int], Evaluator] = {}
        self.extra: dict[tuple[str, int], dict[str, Any]] = {}  # stage state per partition
        #: partitions whose evaluator was built from no state at all (a new deploy): the
        #: worker warms them up from history (streams/warmup.py) before the first batch
        self.fresh: set[tuple[str, int]] = set()
        self._checkpointed: dict[tuple[str, int], float] = {}
        #: checkpointed state: identities of the transitions sent since the partition's
        #: last checkpoint, written at every batch that sent one (see :meth:`once`)
        self.sent: dict[tuple[str, int], set[str]] = {}
        self._sent_dirty: set[tuple[str, int]] = set()
        #: transitions a replay produced again and :meth:`once` did not send twice
        self.resends_suppressed = 0
        self.generation: Any = object()

    def reset(self, generation: Any) -> None:
        """A new consumer generation: partitions may have moved, rebuild lazily."""
        self.live.clear()
        self.extra.clear()
        self.sent.clear()
        self._sent_dirty.clear()
        self.generation = generation

    def once(self, key: tuple[str, int], events: list[AlertEvent]) -> list[AlertEvent]:
        """The events not sent yet since the partition's last checkpoint.

        Why: with checkpointed state (``checkpoint_s`` > 0) a crash restarts a partition
        from its last checkpoint, up to ``checkpoint_s`` behind, and the replay produces
        that span's transitions again: the same ones, as evaluation depends on event
        time only. Their identities are written at every batch that sent one, after the
        send is durable (:meth:`persist`), and cleared at the checkpoint whose state
        holds them; so the replay sends only what had not been sent, and the span a crash
        can send twice is back to one batch, as with state written at every batch.
        Nothing is kept when every batch writes state (0), nor when none does (the
        backtest's in-process worker, never restarted)."""
        if not events or not 0 < self.checkpoint_s < math.inf:
            return events
        sent = self.sent.setdefault(key, set())
        out = []
        for e in events:
            i = _identity(e)
            if i in sent:
                self.resends_suppressed += 1
                continue
            sent.add(i)
            out.append(e)
        if out:
            self._sent_dirty.add(key)
        return out

    def _registry_for(self, source: str, partition: int) -> dict[str, Mapping[str, Any]]:
        if self.scope == "district":
            return {s: a for s, a in self.registry.items()
                    if a.get("district") is not None
                    and self.part(str(a["district"])) == partition}
        domain = domain_of(source)
        return {s: a for s, a in self.registry.items()
                if a.get("domain") == domain and self.part(s) == partition}

    def get(self, source: str, partition: int) -> tuple[Evaluator, list[AlertEvent]]:
        """The evaluator, rebuilt from the store on first use; plus resolved events of
        alerts whose rules disappeared while it was not live."""
        key = (source, partition)
        ev = self.live.get(key)
        if ev is not None:
            return ev, []
        prefix = f"{source}|{partition}|"
        items, extra = [], {}
        for k, v in self.store.items():
            if not k.startswith(prefix):
                continue
            name = k[len(prefix):]
            if name == META:
                extra = orjson.loads(v)
            elif name == SENT:
                self.sent[key] = set(orjson.loads(v))
            else:
                items.append((name, orjson.loads(v)))
        rs = self.ruleset()
        ev = Evaluator.from_state(rs, self._registry_for(source, partition), items,
                                  scope=self.scope, silences=self.silences)
        events = ev.replace_ruleset(rs, ev.watermark) if items else []
        if items:
            log.info("alert state of %s[%d] rebuilt from %d entries", source, partition,
                     len(items))
        self.live[key] = ev
        self.extra[key] = extra
        if not items and not extra:
            self.fresh.add(key)
        return ev, events

    def warm(self, source: str, partition: int, readings: Sequence[Mapping[str, Any]]) -> int:
        """Fold history into a fresh evaluator's state without evaluating it (no alerts
        for the past). Returns the readings used."""
        ev, _ = self.get(source, partition)
        self.fresh.discard((source, partition))
        return ev.observe(readings, history=True) if readings else 0

    def due(self, source: str, partition: int) -> bool:
        """Whether the partition's state is written at this batch: every ``checkpoint_s``
        (0: every batch). Between two writes the state lives in memory only, and the
        worker commits the partition's input no further than the last write (Kafka
        Streams' commit interval): a crash re-reads what the state does not hold."""
        if self.checkpoint_s <= 0:
            return True
        now = time.monotonic()
        # the interval starts with the partition's first batch (its state came from the table)
        return now - self._checkpointed.setdefault((source, partition), now) >= self.checkpoint_s

    def persist(self, source: str, partition: int, *, force: bool = False) -> int | None:
        """Write every entry changed since the last write (alert lifecycle, sensors, the
        stage's own state) when :meth:`due` or ``force``; None when not due (nothing
        written). Returns the entries written."""
        key = (source, partition)
        ev = self.live.get(key)
        if ev is None:
            return 0
        prefix = f"{source}|{partition}|"
        if not (force or self.due(source, partition)):
            if key in self._sent_dirty:  # the batch's sends are durable: say so
                self._sent_dirty.discard(key)
                self.store.put(partition, prefix + SENT, orjson.dumps(sorted(self.sent[key])))
            return None
        self._checkpointed[key] = time.monotonic()
        changes = ev.take_encoded()
        for k, v in changes.items():
            if v is None:
                self.store.delete(partition, prefix + k)
            else:
                self.store.put(partition, prefix + k, v)
        extra = self.extra.get(key)
        if extra:
            self.store.put(partition, prefix + META, orjson.dumps(extra))
        # after the state that holds them (one changelog partition keeps the order)
        self._sent_dirty.discard(key)
        if self.sent.pop(key, None) is not None:
            self.store.delete(partition, prefix + SENT)
        return len(changes)

    def persist_all(self) -> int:
        """Write every live evaluator now (benchmarks and tests that read the tables)."""
        return sum(self.persist(src, part, force=True) or 0 for src, part in list(self.live))

    def reload(self, rs: RuleSet) -> list[tuple[str, int, list[AlertEvent]]]:
        return [(src, part, self.once((src, part), ev.replace_ruleset(rs, ev.watermark)))
                for (src, part), ev in self.live.items()]


class SensorRules(_Evaluators):
    """Sensor-scope rules per source partition (see the module docstring)."""

    scope = "sensor"

    def __init__(self, *args: Any, lateness_ms: int, idle_s: float = 30.0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lateness_ms = lateness_ms
        self.idle_s = idle_s
        #: (topic, partition) -> source -> ingestion time of its latest reading
        self.src_wall: dict[tuple[str, int], dict[int, float]] = {}
        #: (topic, partition) -> ingestion time of the first record this worker processed
        #: of it in this generation: what a source not heard from since is measured from
        self.src_since: dict[tuple[str, int], float] = {}

    def reset(self, generation: Any) -> None:
        super().reset(generation)
        # another worker may have read the partition meanwhile: what this one last heard
        # from its sources says nothing about them any more
        self.src_wall.clear()
        self.src_since.clear()

    def _idle(self, key: tuple[str, int], now_wall: float | None):  # noqa: ANN202
        """Whether a source (device, gateway) went quiet, by ingestion time: ``now_wall``
        is the time ingest wrote the records being processed (their Kafka timestamps,
        epoch seconds), or the clock for a caught-up partition; None (the backtest): the
        partition watermark decides.

        Why ingestion time and not the worker's clock: a worker catching up reads an hour
        of records in a minute, and batches under load take longer than ``idle_s``; by
        its own clock every source not in the current run looked idle, the partition's
        watermark ran past readings still to come in the same batch, and the district
        clocks met them late. Records carry when ingest wrote them, so whether a source
        was quiet is the same however fast or late the worker reads.

        A source not heard from since this worker took the partition (its last records
        were another worker's, or before a restart) is measured from the first record
        this worker processed of it: it is idle once ``idle_s`` of ingestion time passed
        from there without a word from it. Measured from the worker's start, as before,
        every such source looked idle at once to a worker that had run for longer than
        ``idle_s``, and its sensors' absence fired before their next readings were
        read."""
        if now_wall is None:
            return None
        walls = self.src_wall.setdefault(key, {})
        since = self.src_since.setdefault(key, now_wall)
        idle_s = self.idle_s
        return lambda src: now_wall - walls.get(src, since) >= idle_s

    def watermark(self, source: str, partition: int) -> int | None:
        """Event time every input of the partition has reached: max seen − lateness, and
        no further than its slowest active source (device or gateway) has got."""
        ev = self.live.get((source, partition))
        if ev is None or ev.watermark is None:
            return None
        wm = ev.watermark - self.lateness_ms
        safe = ev.safe_watermark()
        return wm if safe is None else min(wm, safe)

    def caps(self, source: str, partition: int,
             records: Sequence[tuple[int, Sequence[Mapping[str, Any]]]],
             now_wall: float | None) -> list[int | None] | None:
        """Per record, the event time every active source of the partition has reached
        after it (the windows' close, see PartitionWindows.process); None without
        processing time (the backtest feeds in event-time order)."""
        if now_wall is None:
            return None
        ev, _ = self.get(source, partition)
        key = (source, partition)
        walls = self.src_wall.setdefault(key, {})
        idle = self._idle(key, now_wall)
        out: list[int | None] = []
        for _, readings in records:
            for r in readings:
                src = r.get("src")
                if src is not None:
                    walls[src] = now_wall
            out.append(ev.note_sources(readings, idle))
        return out

    def process(self, source: str, partition: int, readings: Sequence[Mapping[str, Any]],
                samples: Sequence[Mapping[str, Any]] = (),
                now_wall: float | None = None) -> list[AlertEvent]:
        """Evaluate a batch. State is *not* persisted yet: :meth:`persist` after the events
        are delivered. ``now_wall``: processing time (live), for idle sources."""
        ev, events = self.get(source, partition)
        key = (source, partition)
        hi = ev.watermark
        for r in (*readings, *samples):
            ts = int(r["ts"])
            if hi is None or ts > hi:
                hi = ts
        if now_wall is not None and readings:
            walls = self.src_wall.setdefault(key, {})
            for r in readings:
                src = r.get("src")
                if src is not None:
                    walls[src] = now_wall
        wm = None if hi is None else hi - self.lateness_ms
        return self.once(key, events + ev.process(readings, watermark=wm, samples=samples,
                                                  idle=self._idle(key, now_wall)))

    def advance(self, source: str, partition: int, watermark: int,
                now_wall: float | None = None) -> list[AlertEvent]:
        """Move an idle partition's watermark (processing-time tick of a caught-up
        partition that receives nothing): its sensors' absence still fires."""
        ev, events = self.get(source, partition)
        return self.once((source, partition), events + ev.process(
            (), watermark=watermark, idle=self._idle((source, partition), now_wall)))


@dataclass(slots=True)
class Forward:
    """What one source partition hands one district partition: the readings district
    rules use and the source's watermark (sent even without readings, so the district
    clock advances)."""

    src: str
    wm: int | None
    readings: list[dict[str, Any]] = field(default_factory=list)
    warm: bool = False  # history for a warm start: folded in, never evaluated


class DistrictInterest:
    """Which readings a district rule could use, by domain and kind (cached per rule set).

    Why: forwarding every reading through the district topic costs an encode, a Kafka
    round trip and a decode per reading; the starter set's district rules only look at
    traffic loops, power meters and air-quality stations, so everything else would be
    forwarded to be ignored. A selector on other attributes (district, sensors, registry
    columns) is not prefiltered: the evaluator still applies the full selector."""

    def __init__(self, partitions: int) -> None:
        self.part = Partitioner(partitions)
        self.partitions = partitions
        self._rs: RuleSet | None = None
        self._any_kind: set[str | None] = set()  # domains (None = any) with an any-kind rule
        self._kinds: set[tuple[str | None, str]] = set()
        self._metrics: set[str] = set()

    def _build(self, rs: RuleSet) -> None:
        self._rs = rs
        self._any_kind, self._kinds, self._metrics = set(), set(), set()
        for r in rs.rules:
            if r.scope != "district":
                continue
            self._metrics.update(r.retention_ms())
            plan = SensorPlan()  # what the rule's kind keeps per sensor: last-seen metrics too
            r.spec.plan(r.condition, plan)
            self._metrics.update(m for m in plan.last if m)  # "": any reading, no metric
            sel = r.selector
            for d in (sel.domain or {None}):
                if sel.kind is None:
                    self._any_kind.add(d)
                else:
                    self._kinds.update((d, k) for k in sel.kind)

    def any(self, rs: RuleSet) -> bool:
        if rs is not self._rs:
            self._build(rs)
        return bool(self._any_kind or self._kinds)

    def sources(self, rs: RuleSet) -> set[str]:
        """Every source partition that forwards to the district stage: the district clock
        waits for all of them (one not heard from yet may hold readings of the past)."""
        if rs is not self._rs:
            self._build(rs)
        domains = {d for d in self._any_kind} | {d for d, _ in self._kinds}
        if None in domains:
            domains = set(DOMAINS)
        return {f"readings.{d}|{p}" for d in domains if d for p in range(self.partitions)}

    def select(self, rs: RuleSet, domain: str | None,
               readings: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Only the readings district rules could use, slimmed to what the district
        evaluator reads: identity, time and the metrics district rules use (a reading
        without them still says "seen" to absence rules)."""
        if rs is not self._rs:
            self._build(rs)
        any_kind = bool({domain, None} & self._any_kind)
        kinds = {k for d, k in self._kinds if d in (domain, None)}
        if not any_kind and not kinds:
            return []
        want = self._metrics
        out = []
        for r in readings:
            if not any_kind and r.get("kind") not in kinds:
                continue
            metrics = {m: v for m, v in (r.get("metrics") or {}).items() if m in want}
            if r.get("sample"):
                if metrics:  # an index sample matters only for its values
                    out.append({"sensor_id": r["sensor_id"], "ts": r["ts"],
                                "domain": r.get("domain"), "kind": r.get("kind"),
                                "district": r.get("district"), "metrics": metrics,
                                "sample": True})
                continue
            out.append({"sensor_id": r["sensor_id"], "ts": r["ts"], "domain": r.get("domain"),
                        "kind": r.get("kind"), "district": r.get("district"),
                        "metrics": metrics})
        return out

    def forward(self, rs: RuleSet, source: str, partition: int, watermark: int | None,
                readings: Iterable[Mapping[str, Any]], *, warm: bool = False
                ) -> dict[int, Forward]:
        """One :class:`Forward` per district partition (every partition gets one, with the
        watermark, so that all district clocks advance)."""
        src = f"{source}|{partition}"
        out = {p: Forward(src, watermark, warm=warm) for p in range(self.partitions)}
        for r in self.select(rs, domain_of(source), readings):
            d = r.get("district")
            if d:
                out[self.part(str(d))].readings.append(r)
        return out


class DistrictRules(_Evaluators):
    """District-scope rules per district partition (see the module docstring).

    Forwarded readings are folded into the evaluator as they come (sensor windows are
    bounded by event time, absence asks "last seen at or before t", baselines take a
    sample when the clock reaches it: ``Evaluator._unbased``), and the evaluator is
    ticked on a fixed grid of ``step_ms`` up to the district clock: at every grid point
    whose cell received data, every ``heartbeat`` points (absence of a whole district),
    and every point while a district alert is active."""

    scope = "district"

    def __init__(self, *args: Any, step_ms: int = 60_000, heartbeat: int = 5,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step_ms, self.heartbeat = step_ms, heartbeat
        #: partition -> (its clock, processing time it last moved): a clock that waits
        #: long for one source is a stuck worker an operator must hear about
        self._moved: dict[int, tuple[int | None, float]] = {}
        self.interest: DistrictInterest | None = None  # expected sources, if known
        #: readings that reached a district partition behind its clock (their grid points
        #: were evaluated without them): 0 unless a source's watermark ran ahead of its own
        #: readings (a reading later than the allowed lateness)
        self.late = 0

    def reset(self, generation: Any) -> None:
        super().reset(generation)
        self._moved.clear()  # a partition back after a rebalance has not waited since then

    def unseen(self, partition: int, forwards: Sequence[tuple[int, Forward]]) -> list[Forward]:
        """Forwards (offset, forward) of this district partition not folded in yet (a
        restart reads from the committed offset, behind the state)."""
        self.get(DISTRICT_SOURCE, partition)
        extra = self.extra.setdefault((DISTRICT_SOURCE, partition), {})
        last = extra.get("offset")
        out = [f for off, f in forwards if last is None or off > last]
        if forwards:
            extra["offset"] = max([off for off, _ in forwards] + ([last] if last is not None
                                                                   else []))
        return out

    def clock(self, partition: int, now_wall: float | None = None,
              expected: set[str] = frozenset()) -> int | None:
        """The district partition's event time: the minimum of its sources' watermarks
        (see the module docstring). A source never heard from holds it back however long
        it takes, as its past may still come (a worker in a long warm start, or busy
        with the history it forwarded): every readings partition's worker speaks, and one
        without data announces itself empty (a forward without a watermark, which holds
        nothing back). Warm forwards say nothing about a source's progress. Without
        processing time (the backtest) only heard sources count."""
        key = (DISTRICT_SOURCE, partition)
        extra = self.extra.get(key) or {}
        wms = extra.get("src") or {}
        if now_wall is not None and any(s not in wms for s in expected):
            return None
        live = [wm for wm in wms.values() if wm is not None]
        return min(live) if live else None

    def lag_ms(self, partition: int) -> int | None:
        """How far the partition's clock is behind its most advanced source (event time):
        the wait for the slowest source, for operators."""
        extra = self.extra.get((DISTRICT_SOURCE, partition)) or {}
        wms = [wm for wm in (extra.get("src") or {}).values() if wm is not None]
        return max(wms) - min(wms) if wms else None

    def stalled_s(self, now_wall: float) -> float:
        """Processing time the longest-waiting district clock has not moved while one of
        its sources is ahead of it (0: none waits)."""
        worst = 0.0
        for partition, (clock, since) in list(self._moved.items()):
            lag = self.lag_ms(partition)
            if lag or (clock is None and lag is not None):  # waits for an unheard source
                worst = max(worst, now_wall - since)
        return worst

    def process(self, partition: int, forwards: Sequence[Forward],
                now_wall: float | None = None) -> list[AlertEvent]:
        ev, events = self.get(DISTRICT_SOURCE, partition)
        key = (DISTRICT_SOURCE, partition)
        extra = self.extra.setdefault(key, {})
        srcs: dict[str, int | None] = extra.setdefault("src", {})
        cells: set[int] = set(extra.get("cells") or ())
        step = self.step_ms
        last_tick = extra.get("tick")
        for f in forwards:
            if f.warm:
                ev.observe(f.readings, history=True)
                continue
            old = srcs.get(f.src)
            if f.wm is not None and (old is None or f.wm > old):
                srcs[f.src] = f.wm
            elif f.src not in srcs:
                srcs[f.src] = f.wm
            if f.readings:
                ev.observe(f.readings)
                late = 0
                for r in f.readings:
                    c = -(-int(r["ts"]) // step) * step  # the grid point at or after it
                    if last_tick is None or c > last_tick:
                        cells.add(c)
                    else:
                        late += 1
                if late:
                    self.late += late
                    log.warning("district partition %d: %d readings of %s arrived behind "
                                "its clock %s (oldest %d, the source had said %s, now %s); "
                                "their grid points were evaluated without them", partition,
                                late, f.src, last_tick, min(int(r["ts"]) for r in f.readings),
                                old, f.wm)
        expected = (self.interest.sources(self.ruleset()) if self.interest is not None
                    else set())
        clock = self.clock(partition, now_wall, expected)
        if now_wall is not None:
            seen = self._moved.get(partition)
            if seen is None or seen[0] != clock:
                self._moved[partition] = (clock, now_wall)
        if clock is not None:
            g = (last_tick + step if last_tick is not None
                 else min(cells) if cells else clock // step * step)
            while g < clock:  # clock W: every reading before W is in (one at W may come)
                if g in cells or (g // step) % self.heartbeat == 0 or ev.has_active:
                    events += ev.tick(g)
                cells.discard(g)
                last_tick = g
                g += step
        extra["tick"] = last_tick
        extra["cells"] = sorted(cells)
        return self.once(key, events)
