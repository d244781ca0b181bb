"""The rule engine: readings in (``observe``), alert transitions out (``tick``).

Pure Python, event time only (``tick(now_ms)`` never looks at a clock), no I/O: the same
object runs inside a Faust agent, the CLI unit-test runner and the tests.

Lifecycle per alert instance (rule x sensor, or rule x district), as in Prometheus:

    inactive --cond--> pending --held for `for`--> firing --cond false for
    `keep_firing_for`--> resolved (state dropped)

``tick`` returns only transitions (firing once, resolved once); pending is internal.
Silences mark events ``silenced`` (don't notify) without touching the lifecycle; a firing
alert whose silence ends is notified then.

State lives in small JSON dicts under string keys (``s|<sensor>``, ``a|<rule>|<instance>``,
``meta``): :meth:`take_changes` hands out the keys touched since the last call, for a
changelog-backed table (:meth:`take_encoded`: the same, encoded, what a worker writes); :meth:`state_dict` / :meth:`from_state` snapshot everything.
"""

from __future__ import annotations

import heapq
import logging
import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

import orjson

from urbanbrain.rules import seasonal, windows
from urbanbrain.rules.alerts import AlertEvent, fingerprint
from urbanbrain.rules.kinds.base import NO_EXTRA, Hit
from urbanbrain.rules.model import Group, Probe, Rule, RuleSet
from urbanbrain.rules.names import INDEX_METRICS
from urbanbrain.rules.plan import MetricPlan, SensorPlan
from urbanbrain.rules.silences import Silence, SilenceStore
from urbanbrain.rules.state import SensorState

STATE_VERSION = 1
#: A sensor missing from the registry is forgotten (state dropped, changelog entry deleted)
#: after this much event time without a reading and without an alert or timer of its own:
#: a device taken out of the registry, a mistyped id, a test sensor. Registered sensors are
#: never forgotten (absence rules watch them), so the state of a worker stays bounded by
#: the registry plus what reported within this horizon.
FORGET_UNREGISTERED_MS = 24 * 3_600_000
FORGET_SWEEP_MS = 3_600_000  # event time between two sweeps
META_KEY = "meta"
INDEX_CLOCK = "~"  # prefix of the evaluation-time keys of index-driven rules

log = logging.getLogger(__name__)


class _Bound(NamedTuple):
    """A sensor-scope rule as the per-reading loops need it."""

    rule: Rule
    rid: str
    index: bool  # reads only derived indices: evaluated at index-sample times
    group: Group  # its group (evaluation interval)
    gkey: str  # its evaluation-time key in SensorState.evald
    timer: bool  # timer-driven (absence)


def _to_baselines(st: SensorState, mp: MetricPlan, name: str, ts: int, x: float) -> None:
    """One sample into the baselines of its metric (time-of-day, weekly, EWMA)."""
    for key, hl in mp.ewma:
        windows.ewma_update(st.ewma.setdefault(key, []), x, ts, hl)
    if mp.weekly:
        st.weekly_add(name, ts, x)
    for key, clk, alpha, lay in mp.tod:
        b = st.tod.get(key)
        if b is None:
            b = st.tod[key] = seasonal.new_state(lay)
        seasonal.add(b, ts, x, clk, alpha, lay)
    st.based[name] = ts


def _alert_key(rule_id: str, inst: str) -> str:
    return f"a|{rule_id}|{inst}"


def _copy_alert(st: Mapping[str, Any]) -> dict[str, Any]:
    d = dict(st)
    d["labels"] = dict(st["labels"])
    d["ann"] = dict(st["ann"])
    return d


def normalise_registry(
    registry: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, dict[str, Any]]:
    """Registry entries as dicts; ``neighbours``/``metrics`` as lists (CSV gives ';' strings)."""
    out: dict[str, dict[str, Any]] = {}
    for sid, attrs in (registry or {}).items():
        a = dict(attrs)
        for k in ("neighbours", "metrics"):
            v = a.get(k)
            if isinstance(v, str):
                a[k] = [x for x in v.split(";") if x]
        out[str(sid)] = a
    return out


class Evaluator:
    """Evaluates a :class:`RuleSet` over a stream of readings.

    ``registry``: sensor_id -> attributes (domain, kind, district, neighbours, ...); sensors
    missing from it are still evaluated with the domain/kind/district of their readings.
    ``scope``: evaluate only rules of that scope ("sensor" or "district"), so a deployment
    can run per-sensor rules where the readings are partitioned by sensor and
    district-wide rules where they are partitioned by district.
    """

    def __init__(
        self,
        ruleset: RuleSet,
        registry: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        scope: str | None = None,
        generator_url: str = "http://localhost:3000/alerting/list?search={alertname}",
        silences: SilenceStore | None = None,
    ) -> None:
        """``silences``: a store shared with other evaluators and fed from outside (a
        worker's); without one the evaluator keeps its own, persisted in its state."""
        self.registry = normalise_registry(registry)
        self.scope = scope
        self.generator_url = generator_url
        self._sensors: dict[str, SensorState] = {}
        self._alerts: dict[str, dict[str, dict[str, Any]]] = defaultdict(
            dict
        )  # rule id -> inst -> state
        self._own_silences = silences is None
        self._silences: SilenceStore = silences if silences is not None else SilenceStore()
        self._group_last: dict[str, int] = {}
        self._start: int | None = None
        self.watermark: int | None = None
        self._dirty: set[str] = set()
        # streaming mode (:meth:`process`): per-key event time and a due-time queue
        self._streaming = False
        self._timers: list[tuple[int, int, str, str]] = []  # (due, seq, rule id, instance)
        self._armed: set[tuple[str, str]] = set()  # (rule id, instance) with a queue entry
        self._seen_floor: int | None = None
        # streaming: each source's event time (max reading time), and the absence entries
        # parked until their sensor's source has passed them or gone idle
        self._src_wm: dict[int, int] = {}
        self._src_heap: list[tuple[int, int]] = []  # (wm, source): min over active sources
        self._src_moved: set[int] = set()
        self._parked: dict[int, list[tuple[str, str]]] = {}
        self._idle: Callable[[int], bool] | None = None
        # district scope: samples are kept behind the last tick, not only behind the newest
        # one (SensorState.add): a source far ahead of the clock must not push out what
        # the clock's windows still need. Before the first tick: everything is kept.
        self._keep_behind: int | None = -(2**62) if scope == "district" else None
        #: district scope: sensors with samples not yet folded into their baselines
        #: (time-of-day, weekly, EWMA). Why deferred: a district partition folds in the
        #: readings of every source as they come, and one source may run hours ahead of
        #: the district clock (a catch-up: 20 h in a live full-week replay). Folded into
        #: the baselines at once, those readings could move the baseline a grid point was
        #: judged against (the time-of-day state keeps two days apart, which covers a
        #: source up to a day ahead, not more). Now a baseline at ``t`` holds exactly the
        #: samples up to ``t`` (:meth:`_fold_baselines`, at every tick), whatever the
        #: arrival order.
        #: A due-time queue: (time of the sensor's oldest waiting sample, sensor), and
        #: sensor -> that time (entries of the heap that disagree are stale).
        self._unbased: list[tuple[int, str]] = []
        self._unbased_at: dict[str, int] = {}
        self._seq = 0
        self._next_sweep: int | None = None
        self.forgotten = 0  # sensors forgotten (FORGET_UNREGISTERED_MS), for the metrics
        self._set_rules(ruleset)

    # ------------------------------------------------------------------ rules / plans
    def _set_rules(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self._rules = [r for r in ruleset.rules if self.scope is None or r.scope == self.scope]
        self._rule_ids = {r.id for r in self._rules}
        self._plans: dict[str, SensorPlan] = {}
        self._cands: dict[str, list[str]] = {}
        self._ignored: set[str] = set()
        self._div_cache: dict[tuple[str, str | None], float] = {}
        self._scratch: dict[str, Any] = {}  # the kinds' caches (Engine.scratch)
        self._by_id = {r.id: r for r in self._rules}
        # district scope: reading times are kept this far behind the clock, for "last seen
        # at or before t" when sources ahead of the clock have been folded in
        self._absence_horizon = max((r.spec.horizon_ms(r.condition) for r in self._rules),
                                    default=0)
        self._group_of = {r.id: g for g in ruleset.groups for r in g.rules}
        #: sid -> its sensor-scope rules with what the per-reading loops ask of each
        #: (:meth:`_bound_for`), so that a reading costs no lookups per rule beyond these
        self._bound: dict[str, tuple[_Bound, ...]] = {}
        # sensor-scope rules that read only derived indices: evaluated at the index
        # samples' times (see _evaluate_sensor)
        self._index_rules = {
            r.id for r in self._rules
            if r.scope == "sensor" and not r.spec.timer_driven
            and r.probes() and all(p.metric in INDEX_METRICS for p in r.probes())}
        if self._streaming:
            self._rebuild_timers()

    def attrs(self, sensor_id: str) -> Mapping[str, Any]:
        a = self.registry.get(sensor_id)
        if a is not None:
            return a
        st = self._sensors.get(sensor_id)
        return (st.attrs or {}) if st else {}

    def _plan(self, sid: str, attrs: Mapping[str, Any]) -> SensorPlan:
        plan = SensorPlan()
        for r in self._rules:
            if r.selector.matches(sid, attrs):
                plan.keep_samples(r.retention_ms())
                r.spec.plan(r.condition, plan)
        if self.scope != "district":
            plan.absence = {}  # last-seen per metric: the district clock's need only
        return plan.finish()

    def _plan_for(self, sid: str, attrs: Mapping[str, Any]) -> SensorPlan:
        p = self._plans.get(sid)
        if p is None:
            p = self._plans[sid] = self._plan(sid, attrs)
        return p

    def _candidates(self, rule: Rule) -> list[str]:
        c = self._cands.get(rule.id)
        if c is None:
            pool = set(self.registry) | set(self._sensors)
            c = self._cands[rule.id] = sorted(
                s for s in pool if rule.selector.matches(s, self.attrs(s))
            )
        return c

    def _districts(self, rule: Rule) -> list[tuple[str, list[str]]]:
        """A district rule's candidates by district, sorted (cached like the candidates)."""
        key = "d|" + rule.id
        got = self._cands.get(key)
        if got is None:
            by_d: dict[str, list[str]] = defaultdict(list)
            for sid in self._candidates(rule):
                d = self.attrs(sid).get("district")
                if d:
                    by_d[str(d)].append(sid)
            got = self._cands[key] = sorted(by_d.items())  # type: ignore[assignment]
        return got  # type: ignore[return-value]

    # ------------------------------------------------------------------ observe
    def observe(self, readings: Iterable[Mapping[str, Any]], *, history: bool = False) -> int:
        """Feed normalised readings, or index samples (reading-shaped, ``"sample": True``,
        ``{"sensor_id", "ts", "metrics": {"aqi_us": 153}}``): a sample fills its metric's
        window but is no sign of life of the sensor (absence ignores it). Returns how
        many were used.

        District scope: a reading's baseline updates wait for the tick that reaches its
        time (see ``_unbased``), unless ``history`` (a warm start: readings older than
        anything this evaluator will judge, folded in at once)."""
        used = 0
        wm = self.watermark
        defer = self.scope == "district" and not history
        for r in readings:
            sid = r["sensor_id"]
            ts = int(r["ts"])
            # the input's event time moves with every reading it delivers, also one no rule
            # here uses: a source partition of sensors that only district rules read must
            # still carry its watermark to the district clock (a traffic-only rule file
            # once evaluated no district rule at all, while the full set did)
            if wm is None or ts > wm:
                wm = ts
            if sid in self._ignored:
                continue
            st = self._sensors.get(sid)
            if st is None:
                attrs = self.registry.get(sid)
                own = None
                if attrs is None:
                    own = {
                        k: r.get(k) for k in ("domain", "kind", "district") if r.get(k) is not None
                    }
                    attrs = own
                plan = self._plan_for(sid, attrs)
                if plan.empty:
                    self._ignored.add(sid)
                    continue
                st = self._sensors[sid] = SensorState()
                st.attrs = own
                self._cands.clear()
                if self.scope == "sensor":
                    # alerts of a sensor not seen before (its absence) move into its entry:
                    # their separate entries are deleted
                    for rule_id, states in self._alerts.items():
                        if sid in states:
                            self._dirty.add(_alert_key(rule_id, sid))
                            self._mark_alert(rule_id, sid)
            else:
                plan = self._plan_for(sid, self.attrs(sid))
            if r.get("sample"):
                pass  # an index sample says nothing about the sensor reporting
            else:
                if st.seen is None or ts > st.seen:
                    st.seen = ts
                src = r.get("src")
                if src is not None:
                    st.src = src
                    if ts > self._src_wm.get(src, ts - 1):
                        self._advance_source(src, ts)
            if plan.absence and not r.get("sample"):
                # district scope: readings of sources ahead of the district's clock are
                # folded in early, so absence asks "last seen at or before now"
                mets = r.get("metrics") or {}
                floor = self._seen_floor
                for m in plan.absence:
                    if not m or m in mets:
                        st.seen_at(m, ts, floor)
            wants = plan.metrics
            last = st.last
            for name, v in (r.get("metrics") or {}).items():
                mp = wants.get(name)
                if mp is None:
                    continue
                try:
                    x = float(v)
                except (TypeError, ValueError):
                    continue
                if not math.isfinite(x):
                    continue
                if ts > last.get(name, -1):
                    last[name] = ts
                if mp.retention_ms is not None:
                    st.add(name, ts, x, mp.retention_ms, self._keep_behind)
                # a record read again after a crash (or a late one) fills its window slot
                # but never counts twice in a baseline
                if not mp.baselines or ts <= st.based.get(name, -1):
                    continue
                if defer and mp.retention_ms is not None:
                    self._wait_for_clock(sid, ts)  # its window keeps it until then
                else:
                    _to_baselines(st, mp, name, ts, x)
            self._dirty.add("s|" + sid)
            used += 1
        if wm != self.watermark:
            self.watermark = wm
            self._dirty.add(META_KEY)
        return used

    # ------------------------------------------------------------------ for the kinds
    # (urbanbrain.rules.kinds.base.Engine: what a kind may ask of the evaluator)
    def sensor(self, sid: str) -> SensorState | None:
        return self._sensors.get(sid)

    @property
    def start(self) -> int | None:
        """Event time the evaluator started at (a never-seen sensor is silent since)."""
        return self._start

    def scratch(self, key: str, factory: Callable[[], Any]) -> Any:
        got = self._scratch.get(key)
        if got is None:
            got = self._scratch[key] = factory()
        return got

    def divisor(self, probe: Probe, sid: str, v: float) -> float | None:
        """What ``relative_to`` divides by for this sensor (and value); None: nothing."""
        key = (sid, probe.relative_attr)
        div = self._div_cache.get(key)
        if div is not None:
            return div
        d = self.attrs(sid).get(probe.relative_attr)  # type: ignore[arg-type]
        try:
            div = float(d) if d not in (None, "") else None
        except (TypeError, ValueError):
            div = None
        if div:
            self._div_cache[key] = div  # the sensor's own attribute: fixed
            return div
        if probe.relative_standard:
            div = min(probe.relative_standard, key=lambda lv: (abs(lv - v), lv))
        if div is None:
            div = probe.relative_default
        return div or None

    def relative(self, probe: Probe, sid: str, v: float) -> float | None:
        if probe.relative_attr is None:
            return v
        div = self.divisor(probe, sid, v)
        return None if div is None else v / div

    def probe_value(self, probe: Probe, sid: str, st: SensorState, now: int) -> float | None:
        end = now - probe.offset_ms
        _, vs = st.window(probe.metric, end - probe.span_ms, end)
        if len(vs) < probe.min_samples or not vs:
            return None
        return self.relative(probe, sid, windows.aggregate(probe.aggregate, vs))

    # ------------------------------------------------------------------ instances
    def labels(self, rule: Rule, sid: str | None, district: str | None) -> dict[str, str]:
        labels = {"alertname": rule.alert, **rule.labels}
        if sid is not None:
            labels["sensor"] = sid
        if district:
            labels["district"] = str(district)
        return labels

    def _evaluate(
        self, rule: Rule, now: int
    ) -> dict[str, tuple[float | None, dict[str, str], dict[str, Any]]]:
        """Instances whose condition holds: key -> (value, labels, template extras)."""
        out: dict[str, tuple[float | None, dict[str, str], dict[str, Any]]] = {}
        if rule.schedule is not None and not rule.schedule.contains(now):
            return out
        active_keys = self._alerts.get(rule.id, {})
        c = rule.condition
        spec = rule.spec
        if rule.scope == "sensor":
            timer = spec.timer_driven
            sensors = self._sensors
            for sid in self._candidates(rule):
                if timer:
                    hit = spec.judge(self, rule, c, sid, now)
                    if hit is not None:
                        out[sid] = hit
                    continue
                st = sensors.get(sid)
                if st is None:
                    continue
                ok, v, extra = spec.evaluate(self, c, sid, st, now, sid in active_keys)
                if ok:
                    district = self.attrs(sid).get("district")
                    out[sid] = (v, self.labels(rule, sid, district), extra)
            return out
        for d, sids in self._districts(rule):
            hit = spec.district(self, rule, c, d, sids, now, d in active_keys)
            if hit is not None:
                out[d] = hit
        return out

    # ------------------------------------------------------------------ lifecycle
    def _render(
        self, rule: Rule, value: float | None, labels: Mapping[str, str], extra: Mapping[str, Any]
    ) -> dict[str, str]:
        env = {"sensors": extra.get("sensors", ""), "observed": extra.get("observed")}
        return {k: t.render(value, labels, env) for k, t in rule.annotations.items()}

    def _silenced_by(self, labels: Mapping[str, str], now: int) -> list[str]:
        return self._silences.matching(labels, now)

    def _event(
        self, status: str, rule_id: str, st: dict[str, Any], now: int, silenced_by: list[str]
    ) -> AlertEvent:
        labels = st["labels"]
        return AlertEvent(
            status=status,
            rule=rule_id,
            labels=dict(labels),
            annotations=dict(st["ann"]),
            value=st.get("v"),
            starts_at=st["fired"] if st.get("fired") is not None else st["active"],
            ends_at=now if status == "resolved" else None,
            fingerprint=st["fp"],
            generator_url=self.generator_url.format(
                alertname=quote(labels["alertname"]),
                rule=quote(rule_id),
                sensor=quote(labels.get("sensor", "")),
                district=quote(labels.get("district", "")),
            ),
            silenced=bool(silenced_by),
            silenced_by=silenced_by,
            at=now,
        )

    def _advance(self, rule: Rule, now: int, true: Mapping[str, tuple]) -> list[AlertEvent]:
        """Lifecycle of every instance of ``rule`` at ``now``: those in ``true`` hold, every
        other active instance does not."""
        events: list[AlertEvent] = []
        for inst, hit in true.items():
            events += self._advance_one(rule, inst, now, hit)
        for inst in [i for i in self._alerts.get(rule.id, ()) if i not in true]:
            events += self._advance_one(rule, inst, now, None)
        return events

    def _advance_one(self, rule: Rule, inst: str, now: int,
                     hit: tuple[float | None, dict[str, str], Mapping[str, Any]] | None
                     ) -> list[AlertEvent]:
        """One instance's lifecycle at ``now``: ``hit`` = (value, labels, template extras)
        when the condition holds, None when it does not."""
        states = self._alerts.get(rule.id)
        st = states.get(inst) if states else None
        if hit is None and st is None:
            return []
        self._mark_alert(rule.id, inst)
        if hit is not None:
            value, labels, extra = hit
            if st is None:
                st = self._alerts[rule.id][inst] = {
                    "rule": rule.id,
                    "key": inst,
                    "s": "pending",
                    "active": now,
                    "fired": None,
                    "keep_since": None,
                    "v": value,
                    "labels": labels,
                    "fp": fingerprint(labels),
                    "ann": self._render(rule, value, labels, extra),
                    "notified": False,
                }
            else:
                st["v"] = value
                st["keep_since"] = None
            if st["s"] == "pending" and now - st["active"] >= rule.for_ms:
                st["s"] = "firing"
                st["fired"] = now
                st["ann"] = self._render(rule, value, st["labels"], extra)
                by = self._silenced_by(st["labels"], now)
                st["notified"] = not by
                self._after(rule, inst, st, now)
                return [self._event("firing", rule.id, st, now, by)]
            self._after(rule, inst, st, now)
            return []
        assert st is not None and states is not None
        if st["s"] == "pending":
            del states[inst]
            if not states:
                self._alerts.pop(rule.id, None)
            return []
        if rule.keep_firing_for_ms > 0:
            if st["keep_since"] is None:
                st["keep_since"] = now
            if now - st["keep_since"] < rule.keep_firing_for_ms:
                self._after(rule, inst, st, now)
                return []
        by = self._silenced_by(st["labels"], now)
        if not st["notified"] and not by:
            by = ["(never notified)"]
        del states[inst]
        if not states:
            self._alerts.pop(rule.id, None)
        return [self._event("resolved", rule.id, st, now, by)]

    def _after(self, rule: Rule, inst: str, st: Mapping[str, Any], now: int) -> None:
        """Hook: an instance is still active after ``now`` (the streaming mode schedules
        the evaluations that may end it, see :meth:`_schedule_active`)."""
        if self._streaming:
            self._schedule_active(rule, inst, st, now)

    # ------------------------------------------------------------------ streaming
    def process(
        self,
        readings: Sequence[Mapping[str, Any]],
        *,
        watermark: int | None = None,
        samples: Sequence[Mapping[str, Any]] = (),
        idle: Callable[[int], bool] | None = None,
    ) -> list[AlertEvent]:
        """Event-time evaluation of sensor-scope rules, as the pipeline runs it.

        * Each sensor is evaluated at the event times of its own readings, in order, at
          most once per group ``interval``. The result depends on that sensor's data
          only: never on how records interleave in a partition, how large a batch or a
          backlog is, or which worker holds the partition.
        * ``samples`` (index samples of closed windows, stamped with the event time at
          which they become visible: window end + allowed lateness) are observed only;
          they never trigger an evaluation themselves.
        * ``watermark`` (the event time every input of the source partition has reached)
          drives the due-time queue, each entry evaluated at exactly its due time: absence
          (``last seen + silent_for``), and active alerts whose sensor fell silent
          (window emptied, ``for`` of an absence, ``keep_firing_for``).
        * A reading older than its sensor's last evaluation is folded into the windows
          but evaluates nothing: it is late for the rules.
        * Absence is judged against the sensor's own *source* (the device or gateway it
          reports through, ``reading["src"]``): a sensor is silent at t only once its source
          has delivered something later than t, or ``idle(src)`` says the source itself
          went quiet (processing time: the stage knows it). Another gateway of the same
          partition running minutes ahead proves nothing. ``idle=None`` (the backtest,
          which feeds every source in event-time order): the partition watermark decides.

        Cost: one evaluation per reading time per sensor (rules matching that sensor)
        plus the due entries; nothing iterates over all sensors.
        """
        self._ensure_streaming()
        events: list[AlertEvent] = []
        # one pass per sensor in event-time order; at equal times a sample (visible from
        # then on) is folded in before the readings that are evaluated there
        items = [(str(r["sensor_id"]), int(r["ts"]), 0, r) for r in samples]
        items += [(str(r["sensor_id"]), int(r["ts"]), 1, r) for r in readings]
        if items:
            items.sort(key=lambda x: x[:3])  # stable: arrival order within a key
            lo = min(x[1] for x in items if x[2]) if readings else None
            if lo is not None and (self._start is None or lo < self._start):
                first = self._start is None
                self._start = lo
                self._dirty.add(META_KEY)
                if first:  # registered sensors that never report are silent from here
                    self._rebuild_timers()
            n, i = len(items), 0
            while i < n:
                sid, ts, is_reading, _ = items[i]
                j = i + 1
                while j < n and items[j][:3] == (sid, ts, is_reading):
                    j += 1
                if sid in self._sensors:
                    events += self._catch_up(sid, ts, index=not is_reading)
                self.observe([x[3] for x in items[i:j]])
                events += self._evaluate_sensor(sid, ts, index=not is_reading)
                i = j
        if watermark is not None:
            self._idle = idle
            self._unpark(int(watermark))
            events += self._run_timers(int(watermark))
            # a silence is over when event time passed its end: the newest reading's time,
            # not the watermark (which lags by the allowed lateness, and would find the
            # silence not yet begun)
            events += self._notify_unsilenced(max(int(watermark), self.watermark or 0))
            events += self._forget_unregistered(int(watermark))
        self._src_moved.clear()
        return events

    def sensor_count(self) -> int:
        """Sensors this evaluator holds state for (the metrics' ``rule_state_sensors``)."""
        return len(self._sensors)

    def _forget_unregistered(self, now: int) -> list[AlertEvent]:
        """Forget sensors missing from the registry that have been silent past
        :data:`FORGET_UNREGISTERED_MS` (and past every rule's window and absence), with no
        timer of their own; their alerts (an absence firing since they went quiet) are
        resolved, as Prometheus resolves the alerts of a target gone from discovery. Once
        per :data:`FORGET_SWEEP_MS` of event time, so the pass costs nothing per reading."""
        if self._next_sweep is not None and now < self._next_sweep:
            return []
        self._next_sweep = now + FORGET_SWEEP_MS
        horizon = max(FORGET_UNREGISTERED_MS, self._absence_horizon,
                      max((max(p.samples.values(), default=0) for p in self._plans.values()),
                          default=0))
        cutoff = now - horizon
        reg = self.registry
        armed = {inst for _, inst in self._armed}
        events: list[AlertEvent] = []
        gone = 0
        for sid, st in list(self._sensors.items()):
            if sid in reg or st.seen is None or st.seen >= cutoff or sid in armed:
                continue
            for rule_id in list(self._alerts):
                states = self._alerts[rule_id]
                alert = states.pop(sid, None)
                if alert is None:
                    continue
                if alert["s"] == "firing":
                    # stamped when it became forgettable, not when this sweep ran: the
                    # same time live and in a catch-up, whatever the batches
                    at = st.seen + horizon
                    by = self._silenced_by(alert["labels"], at) or (
                        [] if alert["notified"] else ["(never notified)"])
                    events.append(self._event("resolved", rule_id, alert, at, by))
                self._mark_alert(rule_id, sid)
                if not states:
                    del self._alerts[rule_id]
            del self._sensors[sid]
            self._bound.pop(sid, None)
            self._plans.pop(sid, None)
            self._dirty.add("s|" + sid)  # take_changes hands out a delete
            gone += 1
        if gone:
            self.forgotten += gone
            log.info("forgot %d sensors missing from the registry and silent for %d h",
                     gone, horizon // 3_600_000)
        return events

    def note_sources(self, readings: Iterable[Mapping[str, Any]],
                     idle: Callable[[int], bool] | None) -> int | None:
        """Learn the sources' progress from readings about to be processed (the windows
        close on it before the rules see the readings); returns :meth:`safe_watermark`."""
        self._ensure_streaming()  # the sources known from the state count too
        self._idle = idle
        src_wm = self._src_wm
        for r in readings:
            src = r.get("src")
            if src is not None:
                ts = int(r["ts"])
                if ts > src_wm.get(src, ts - 1):
                    self._advance_source(src, ts)
        return self.safe_watermark()

    def _ensure_streaming(self) -> None:
        if not self._streaming:
            self._streaming = True
            self._rebuild_timers()

    def _advance_source(self, src: int, ts: int) -> None:
        self._src_wm[src] = ts
        self._src_moved.add(src)
        heapq.heappush(self._src_heap, (ts, src))

    def safe_watermark(self) -> int | None:
        """The event time every *active* source of this evaluator has reached (Flink's
        operator watermark: the minimum over its inputs, idle ones left out); None
        without sources or an idleness judge (the backtest)."""
        idle = self._idle
        if idle is None or not self._src_wm:
            return None
        # a heap of (wm, source), stale entries dropped lazily: O(log n) per update, not a
        # pass over every source per record (a partition may hold thousands of devices)
        heap, src_wm = self._src_heap, self._src_wm
        while heap:
            wm, src = heap[0]
            if src_wm.get(src) != wm:
                heapq.heappop(heap)  # superseded by a later entry of the same source
            elif idle(src):
                heapq.heappop(heap)  # left out until it sends again (pushed anew then)
            else:
                return wm
        return None

    def _source_behind(self, inst: str, due: int) -> int | None:
        """The source of ``inst`` if it has not passed ``due`` and is not idle."""
        sen = self._sensors.get(inst)
        src = sen.src if sen is not None else None
        if src is None or self._idle is None or self._src_wm.get(src, due) >= due:
            return None
        return None if self._idle(src) else src

    def _unpark(self, watermark: int) -> None:
        """Back into the queue: entries whose source moved on, or went idle."""
        if not self._parked:
            return
        idle = self._idle
        for src in list(self._parked):
            if src in self._src_moved or idle is None or idle(src):
                for rid, inst in self._parked.pop(src):
                    rule = self._by_id.get(rid)
                    if rule is not None and (rid, inst) not in self._armed:
                        self._arm(rule, inst)

    def _bound_for(self, sid: str) -> tuple[_Bound, ...]:
        """Sensor-scope rules whose selector matches ``sid`` (cached per sensor)."""
        got = self._bound.get(sid)
        if got is None:
            attrs = self.attrs(sid)
            got = self._bound[sid] = tuple(
                _Bound(r, r.id, r.id in self._index_rules, self._group_of[r.id],
                       self._evald_key(r), r.spec.timer_driven)
                for r in self._rules if r.scope == "sensor" and r.selector.matches(sid, attrs))
        return got

    def _evald_key(self, rule: Rule) -> str:
        """Evaluation-time key of a rule's group for one sensor: index-driven rules keep
        their own (they run at index-sample times, the others at reading times)."""
        g = self._group_of[rule.id].name
        return INDEX_CLOCK + g if rule.id in self._index_rules else g

    def _evaluate_sensor(self, sid: str, t: int, *, index: bool = False) -> list[AlertEvent]:
        """Evaluate ``sid`` at ``t``: the rules that read raw readings at a reading's time
        (``index=False``), or those that read only derived indices at an index sample's
        time (``index=True``). Why the split: an index sample exists only once its window
        closed, which waits for every source of the partition; evaluated at the sensor's
        reading times, an index rule would see or miss a sample depending on how far the
        slowest gateway had got. At the samples' own times, in their order, it sees
        exactly the samples up to then, whatever the arrival order."""
        st = self._sensors.get(sid)
        if st is None:
            return []  # no rule needs this sensor
        events: list[AlertEvent] = []
        district = None
        due_groups: dict[str, bool] = {}
        evald = st.evald
        for b in self._bound_for(sid):
            if b.index != index:
                continue
            rule, gkey = b.rule, b.gkey
            ok_group = due_groups.get(gkey)
            if ok_group is None:
                last = evald.get(gkey)
                iv = b.group.interval_ms
                ok_group = last is None or (t >= last and (not iv or t >= last + iv))
                due_groups[gkey] = ok_group
                if ok_group:
                    evald[gkey] = t
            if not ok_group:
                continue
            if district is None:
                district = self.attrs(sid).get("district") or ""
            states = self._alerts.get(b.rid)
            active = states is not None and sid in states
            if b.timer:
                if (b.rid, sid) not in self._armed:
                    self._arm(rule, sid)
                if active:  # it reported: the absence ends (keep_firing_for permitting)
                    events += self._advance_one(rule, sid, t, self._timer_hit(rule, sid, t))
                continue
            ok, v, extra = self._holds(rule, sid, st, t, active)
            if ok or active:
                hit = (v, self.labels(rule, sid, district or None), extra) if ok else None
                events += self._advance_one(rule, sid, t, hit)
        self._dirty.add("s|" + sid)
        return events

    def _catch_up(self, sid: str, t: int, *, index: bool = False) -> list[AlertEvent]:
        """Due entries of ``sid`` earlier than its reading at ``t``, at their own times,
        before the reading is folded in. Why: in a backlog the watermark is known only at
        the end of a batch, by when a silence in the middle of it would be hidden by the
        readings after it. The sensor's own next reading proves that nothing of it
        arrived in between, so its timers can run now, in event-time order."""
        events: list[AlertEvent] = []
        armed = self._armed
        for b in self._bound_for(sid):
            timer = b.timer
            if b.index != index or (timer and index):
                continue  # a sample runs the index rules' entries, a reading the others'
            if not timer and (b.rid, sid) not in armed:
                continue  # nothing due: no active alert (parked absences count too)
            rule = b.rule
            due = self._due(rule, sid)
            while due is not None and due < t:
                events += self._fire_due(rule, sid, due)
                nxt = self._due(rule, sid)
                if nxt is not None and nxt <= due:
                    break
                due = nxt
        return events

    def _fire_due(self, rule: Rule, inst: str, t: int) -> list[AlertEvent]:
        """Evaluate ``rule`` for ``inst`` at its due time ``t`` (no new data since).

        The evaluation time is recorded like a reading's: a reading of ``inst`` older
        than ``t`` that arrives later (redelivered after a crash, a late one) is folded in
        but evaluates nothing, so the alert's history never runs backwards."""
        sen = self._sensors.get(inst)
        timer = rule.spec.timer_driven
        if sen is None and rule.schedule is not None and timer:
            # a never-seen sensor whose absence the schedule ends: keep when it was last
            # judged, or its due time (from the evaluator's start) would come round again
            sen = self._sensors[inst] = SensorState()
        if sen is not None:
            g = self._evald_key(rule)
            if t > sen.evald.get(g, t - 1):
                sen.evald[g] = t
            self._dirty.add("s|" + inst)
        if timer:
            return self._advance_one(rule, inst, t, self._timer_hit(rule, inst, t))
        if sen is None:
            return []
        ok, v, extra = self._holds(rule, inst, sen, t, True)
        hit = (v, self.labels(rule, inst, self.attrs(inst).get("district")),
               extra) if ok else None
        return self._advance_one(rule, inst, t, hit)

    def _holds(self, rule: Rule, sid: str, st: SensorState, now: int,
               active: bool) -> tuple[bool, float | None, Mapping[str, Any]]:
        """A value-driven rule's condition for one sensor at ``now``."""
        sch = rule.schedule
        if sch is not None and not sch.contains(now):
            return False, None, NO_EXTRA  # outside its schedule a condition never holds
        return rule.spec.evaluate(self, rule.condition, sid, st, now, active)

    def _timer_hit(self, rule: Rule, sid: str, t: int) -> Hit | None:
        """A timer-driven rule's condition for one sensor at ``t``."""
        if rule.schedule is not None and not rule.schedule.contains(t):
            return None
        return rule.spec.judge(self, rule, rule.condition, sid, t)

    # --- the due-time queue
    def _due(self, rule: Rule, inst: str) -> int | None:
        """When ``rule`` must next be evaluated for ``inst`` without new data, or None."""
        st = self._alerts.get(rule.id, {}).get(inst)
        dues: list[int] = []
        if st is not None and st.get("keep_since") is not None:
            dues.append(st["keep_since"] + rule.keep_firing_for_ms)
        if rule.spec.timer_driven:
            if st is None:
                due = rule.spec.quiet_due(self, rule.condition, inst)
                if due is not None and rule.schedule is not None:
                    # judged only inside the schedule, and never again at or before
                    # the last evaluation (the one that ended it when it closed)
                    sen = self._sensors.get(inst)
                    done = sen.evald.get(self._evald_key(rule)) if sen else None
                    due = rule.schedule.next_start(due if done is None else max(due, done + 1))
                if due is not None:
                    dues.append(due)
            elif st["s"] == "pending":
                dues.append(st["active"] + rule.for_ms)
            elif rule.schedule is not None and st.get("keep_since") is None:
                end = rule.schedule.next_end(st.get("fired") or st["active"])
                if end is not None:  # no reading will end it: the schedule closing does
                    dues.append(end)
        elif st is not None:
            sen = self._sensors.get(inst)
            last = sen.evald.get(self._evald_key(rule)) if sen else None
            if last is not None:
                reach = max((p.reach_ms for p in rule.probes()), default=0)
                dues.append(last + max(reach, 1))
        return min(dues) if dues else None

    def _arm(self, rule: Rule, inst: str) -> None:
        due = self._due(rule, inst)
        if due is None:
            self._armed.discard((rule.id, inst))
            return
        self._seq += 1
        heapq.heappush(self._timers, (due, self._seq, rule.id, inst))
        self._armed.add((rule.id, inst))

    def _schedule_active(self, rule: Rule, inst: str, st: Mapping[str, Any], now: int) -> None:
        if rule.scope == "sensor" and (rule.id, inst) not in self._armed:
            self._arm(rule, inst)

    def _run_timers(self, watermark: int) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        heap = self._timers
        later: list[tuple[str, str]] = []
        safe = self.safe_watermark()
        ran: dict[tuple[str, str], int] = {}
        while heap and heap[0][0] <= watermark:
            due, _, rid, inst = heapq.heappop(heap)
            self._armed.discard((rid, inst))
            rule = self._by_id.get(rid)
            if rule is None:
                continue
            now_due = self._due(rule, inst)
            if now_due is None:
                continue
            if now_due > due:  # data or a transition moved it: wait for the new time
                self._arm(rule, inst)
                continue
            src = self._source_behind(inst, now_due)
            if src is not None:  # its own source has not got there yet: park
                self._parked.setdefault(src, []).append((rid, inst))
                continue
            if rid in self._index_rules and safe is not None and safe < now_due:
                later.append((rid, inst))  # its index samples are not all closed yet
                continue
            if ran.get((rid, inst), now_due - 1) >= now_due:
                # event time never runs backwards for one instance: a due time at or
                # before one already run means a due-time bug, and looping on it would
                # hang the worker; leave it to the instance's next reading
                log.error("rule %s: %s due again at %d, not after %d; skipped", rid, inst,
                          now_due, ran[(rid, inst)])
                continue
            ran[(rid, inst)] = now_due
            events += self._fire_due(rule, inst, now_due)
            if (rid, inst) not in self._armed:
                self._arm(rule, inst)
        for rid, inst in later:
            rule = self._by_id.get(rid)
            if rule is not None and (rid, inst) not in self._armed:
                self._arm(rule, inst)
        return events

    def _rebuild_timers(self) -> None:
        """The queue is derived state: rebuilt from the alert and sensor state (after a
        restart, a rebalance or a rule reload), so it is never persisted."""
        self._timers, self._armed, self._parked = [], set(), {}
        self._src_wm = {}
        for st in self._sensors.values():
            if st.src is not None and st.seen is not None:
                self._src_wm[st.src] = max(self._src_wm.get(st.src, st.seen), st.seen)
        self._src_heap = [(wm, src) for src, wm in self._src_wm.items()]
        heapq.heapify(self._src_heap)
        for rule in self._rules:
            if rule.scope != "sensor":
                continue
            if rule.spec.timer_driven:
                for sid in self._candidates(rule):
                    self._arm(rule, sid)
            for inst in self._alerts.get(rule.id, {}):
                if (rule.id, inst) not in self._armed:
                    self._arm(rule, inst)

    def _notify_unsilenced(self, now: int) -> list[AlertEvent]:
        """Firing alerts that were silenced when they fired, once their silence is over."""
        events: list[AlertEvent] = []
        for rule_id, states in self._alerts.items():
            for inst, st in states.items():
                if (st["s"] == "firing" and not st["notified"]
                        and not self._silenced_by(st["labels"], now)):
                    st["notified"] = True
                    events.append(self._event("firing", rule_id, st, now, []))
                    self._mark_alert(rule_id, inst)
        return events

    def _wait_for_clock(self, sid: str, ts: int) -> None:
        at = self._unbased_at.get(sid)
        if at is None or ts < at:
            self._unbased_at[sid] = ts
            heapq.heappush(self._unbased, (ts, sid))

    def _fold_baselines(self, now: int) -> None:
        """Fold the samples up to ``now`` that wait for it into their sensors' baselines,
        in event-time order (see ``_unbased``)."""
        heap, at = self._unbased, self._unbased_at
        while heap and heap[0][0] <= now:
            ts, sid = heapq.heappop(heap)
            if at.get(sid) != ts:
                continue  # stale: an older sample of it was queued later
            del at[sid]
            st = self._sensors.get(sid)
            if st is None:  # forgotten meanwhile
                continue
            nxt: int | None = None
            for name, mp in self._plan_for(sid, self.attrs(sid)).metrics.items():
                series = st.series.get(name)
                if not mp.baselines or not series:
                    continue
                tsl, vl = series
                i = bisect_right(tsl, st.based.get(name, -1))
                j = bisect_right(tsl, now)
                for k in range(i, j):
                    _to_baselines(st, mp, name, tsl[k], vl[k])
                if j < len(tsl) and (nxt is None or tsl[j] < nxt):
                    nxt = tsl[j]
            if nxt is not None:
                self._wait_for_clock(sid, nxt)
            self._dirty.add("s|" + sid)

    def tick(self, now_ms: int | None = None) -> list[AlertEvent]:
        """Evaluate every group due at ``now_ms`` (event time; default: the watermark)
        and return the transitions (firing / resolved), each exactly once."""
        now = self.watermark if now_ms is None else int(now_ms)
        if now is None:
            return []
        self._fold_baselines(now)
        if self._absence_horizon:
            self._seen_floor = now - self._absence_horizon
        if self.scope == "district":
            self._keep_behind = now
        if self._start is None:
            self._start = now
        self._dirty.add(META_KEY)
        events: list[AlertEvent] = []
        for g in self.ruleset.groups:
            last = self._group_last.get(g.name)
            if last is not None and (now < last or (g.interval_ms and now < last + g.interval_ms)):
                continue
            self._group_last[g.name] = now
            for rule in g.rules:
                if rule.id in self._rule_ids:
                    events.extend(self._advance(rule, now, self._evaluate(rule, now)))
        # notify alerts that fired while silenced, once their silence is over
        return events + self._notify_unsilenced(now)

    def rule_status(self, now: int | None = None, *, examples: int = 5
                    ) -> dict[str, dict[str, Any]]:
        """Per rule of this evaluator: pending and firing alerts, candidate keys, and the
        keys whose baselines are still warming up (with a few examples), for operators
        (``urbanbrain rules list``, the console; published on ``alerts.rules``)."""
        now = self.watermark if now is None else now
        out: dict[str, dict[str, Any]] = {}
        for rule in self._rules:
            states = self._alerts.get(rule.id, {})
            pending = sum(1 for st in states.values() if st["s"] == "pending")
            cands = self._candidates(rule)
            cold: list[str] = []
            c, spec = rule.condition, rule.spec
            if now is not None and spec.warms_up(c):
                cold = [sid for sid in cands if spec.warming(self, c, sid, now)]
            out[rule.id] = {"pending": pending, "firing": len(states) - pending,
                            "candidates": len(cands), "warming": len(cold),
                            "warming_keys": cold[:examples]}
        return out

    @property
    def has_active(self) -> bool:
        """Whether any alert is pending or firing (cheap: no copy)."""
        return any(self._alerts.values())

    def active_alerts(self, state: str | None = None) -> list[dict[str, Any]]:
        """Pending and firing alerts (``state="firing"`` for firing only)."""
        out = []
        for states in self._alerts.values():
            for st in states.values():
                if state is None or st["s"] == state:
                    out.append(
                        {
                            k: st[k]
                            for k in ("rule", "s", "labels", "ann", "v", "active", "fired", "fp")
                        }
                    )
        return sorted(out, key=lambda a: (a["rule"], sorted(a["labels"].items())))

    # ------------------------------------------------------------------ silences
    def add_silence(self, silence: Silence) -> Silence:
        self._silences.put(silence)
        self._dirty.add(META_KEY)
        return silence

    def expire_silence(self, silence_id: str, now_ms: int) -> None:
        if self._silences.expire(silence_id, now_ms) is not None:
            self._dirty.add(META_KEY)

    def silences(self) -> list[Silence]:
        return list(self._silences)

    # ------------------------------------------------------------------ hot reload
    def replace_ruleset(self, ruleset: RuleSet, now_ms: int | None = None) -> list[AlertEvent]:
        """Swap rules, keeping sensor state and the alerts of rules that still exist
        with the same labels; alerts of removed/relabelled rules are resolved (returned)."""
        now = int(now_ms if now_ms is not None else (self.watermark or 0))
        self._set_rules(ruleset)
        new = {r.id: r for r in self._rules}
        events: list[AlertEvent] = []
        for rule_id in list(self._alerts):
            rule = new.get(rule_id)
            states = self._alerts[rule_id]
            for inst in list(states):
                st = states[inst]
                keep = False
                if rule is not None:
                    sid = inst if rule.scope == "sensor" else None
                    district = self.attrs(inst).get("district") if sid else inst
                    keep = self.labels(rule, sid, district) == st["labels"]
                if not keep:
                    if st["s"] == "firing":
                        by = self._silenced_by(st["labels"], now) or (
                            [] if st["notified"] else ["(never notified)"]
                        )
                        events.append(self._event("resolved", rule_id, st, now, by))
                    del states[inst]
                    self._mark_alert(rule_id, inst)
            if not states:
                del self._alerts[rule_id]
        return events

    # ------------------------------------------------------------------ state
    #
    # Where an alert's lifecycle entry lives (its "home"): inside the entry of its sensor
    # (sensor scope) or of the meta entry (district scope), so that the state a batch
    # changed for one key is written as ONE table entry. A worker killed while its changes
    # were being written leaves some keys at the new batch and others at the old one; each
    # key is still consistent in itself (its samples, its evaluation times, its alerts),
    # and a record read again only tops up what is missing (observe is idempotent per
    # sensor). Separate entries (``a|rule|instance``) remain for sensors never seen (the
    # absence of a registered sensor) and for evaluators of no scope (rule unit tests).
    def _home(self, rule_id: str, inst: str) -> str:
        if self.scope == "district":
            return META_KEY
        if self.scope == "sensor" and inst in self._sensors:
            return "s|" + inst
        return _alert_key(rule_id, inst)

    def _mark_alert(self, rule_id: str, inst: str) -> None:
        home = self._home(rule_id, inst)
        self._dirty.add(home)

    def _alerts_of(self, inst: str) -> dict[str, dict[str, Any]]:
        out = {}
        for rule_id, states in self._alerts.items():
            st = states.get(inst)
            if st is not None:
                out[rule_id] = _copy_alert(st)
        return out

    def _meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "v": STATE_VERSION,
            "start": self._start,
            "wm": self.watermark,
            "groups": dict(self._group_last),
            "silences": [s.to_dict() for s in self._silences] if self._own_silences else [],
        }
        if self.scope == "district":
            meta["al"] = {rule_id: {i: _copy_alert(st) for i, st in states.items()}
                          for rule_id, states in self._alerts.items() if states}
        return meta

    def _value(self, key: str, view: bool = False) -> dict[str, Any] | None:
        if key == META_KEY:
            return self._meta()
        if key.startswith("s|"):
            st = self._sensors.get(key[2:])
            if st is None:
                return None
            d = st.to_dict(view)
            if self.scope == "sensor":
                al = self._alerts_of(key[2:])
                if al:
                    d["al"] = al
            return d
        _, rule_id, inst = key.split("|", 2)
        if self._home(rule_id, inst) != key:
            return None  # lives in its home entry now
        st = self._alerts.get(rule_id, {}).get(inst)
        return _copy_alert(st) if st else None

    def take_changes(self) -> dict[str, dict[str, Any] | None]:
        """State entries changed since the last call: key -> JSON dict (None = delete).

        Write them to a changelog-backed table; :meth:`from_state` rebuilds from it."""
        return {k: self._value(k) for k in self._take_dirty()}

    def take_encoded(self) -> dict[str, bytes | None]:
        """:meth:`take_changes`, encoded (JSON bytes), without copying the state first
        (``SensorState.to_dict(view=True)``): what a worker writes at every batch."""
        out: dict[str, bytes | None] = {}
        for k in self._take_dirty():
            v = self._value(k, view=True)  # views: encoded at once, then dropped
            out[k] = None if v is None else orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY)
        return out

    def _take_dirty(self) -> list[str]:
        keys = sorted(self._dirty)
        self._dirty.clear()
        return keys

    def state_dict(self) -> dict[str, dict[str, Any]]:
        """Everything, as key -> JSON dict (same keys as :meth:`take_changes`)."""
        out: dict[str, dict[str, Any]] = {META_KEY: self._meta()}
        for sid in self._sensors:
            v = self._value("s|" + sid)
            if v is not None:
                out["s|" + sid] = v
        for rule_id, states in self._alerts.items():
            for inst, st in states.items():
                key = _alert_key(rule_id, inst)
                if self._home(rule_id, inst) == key:
                    out[key] = _copy_alert(st)
        return out

    def load_state(
        self, items: Mapping[str, Mapping[str, Any] | None] | Iterable[tuple[str, Any]]
    ) -> None:
        """Merge state entries (a table's items, or a :meth:`state_dict`)."""
        pairs = items.items() if isinstance(items, Mapping) else items
        for key, val in pairs:
            if val is None:
                continue
            if key == META_KEY:
                self._start = (
                    val.get("start")
                    if self._start is None
                    else min(self._start, val.get("start") or self._start)
                )
                wm = val.get("wm")
                if wm is not None and (self.watermark is None or wm > self.watermark):
                    self.watermark = wm
                for g, t in (val.get("groups") or {}).items():
                    self._group_last[g] = max(t, self._group_last.get(g, t))
                for s in val.get("silences") or []:
                    if self._own_silences:
                        self._silences.put(Silence.from_dict(s))
                for states in (val.get("al") or {}).values():
                    for a in states.values():
                        self._load_alert(a)
            elif key.startswith("s|"):
                self._sensors[key[2:]] = SensorState.from_dict(val)
                if self.scope == "district":
                    # samples of it may wait for the clock: the next tick looks
                    self._wait_for_clock(key[2:], -(2**62))
                for a in (val.get("al") or {}).values():
                    self._load_alert(a)
            elif key.startswith("a|"):
                self._load_alert(val)
        self._cands.clear()
        self._plans.clear()
        self._div_cache.clear()
        self._ignored.clear()
        self._bound.clear()
        if self._streaming:
            self._rebuild_timers()

    def _load_alert(self, val: Mapping[str, Any]) -> None:
        st = dict(val)
        st["labels"] = dict(st["labels"])
        st["ann"] = dict(st.get("ann") or {})
        self._alerts[st["rule"]][st["key"]] = st

    @classmethod
    def from_state(
        cls,
        ruleset: RuleSet,
        registry: Mapping[str, Mapping[str, Any]] | None,
        state: Mapping[str, Mapping[str, Any] | None] | Iterable[tuple[str, Any]],
        **kw: Any,
    ) -> Evaluator:
        ev = cls(ruleset, registry, **kw)
        ev.load_state(state)
        ev._dirty.clear()
        return ev
