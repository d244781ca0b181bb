"""Absence: a sensor (or one of its metrics) silent for longer than ``silent_for``.

Timer-driven: nothing arrives to evaluate it at, so the evaluator's due-time queue asks
:meth:`Absence.quiet_due` when the silence would be long enough and :meth:`Absence.judge`
whether it is (the queue also waits for the sensor's own source to pass that time).
See README.md."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from urbanbrain.rules.kinds.base import Engine, Hit, RuleKind

if TYPE_CHECKING:
    from urbanbrain.rules.loader import Builder, Ctx
    from urbanbrain.rules.model import Probe, Rule, Selector
    from urbanbrain.rules.plan import SensorPlan


@dataclass(frozen=True, slots=True)
class AbsenceCond:
    silent_for_ms: int
    metric: str | None = None


def silent_ms(ev: Engine, c: AbsenceCond, sid: str, now: int) -> int | None:
    """How long ``sid`` (or its metric) has been silent at ``now``; a sensor never seen
    counts from the evaluator's start. None: nothing to judge by yet."""
    st = ev.sensor(sid)
    last = None
    if st is not None:
        last = st.last.get(c.metric) if c.metric else st.seen
        if last is not None and last > now and st.times:
            last = st.last_seen_before(c.metric or "", now)
    if last is None:
        last = ev.start
    if last is None or last > now:
        return None if last is None else 0
    return now - last


class Absence(RuleKind):
    name = "absence"
    rank = 30
    timer_driven = True
    condition_def = "absence_condition"
    schema_defs: ClassVar[dict[str, Any]] = {
        "absence_condition": {
            "type": "object",
            "required": ["silent_for"],
            "additionalProperties": False,
            "properties": {"silent_for": {"$ref": "#/$defs/duration"}},
        },
    }

    def parse(self, b: Builder, ctx: Ctx, r: Mapping[str, Any], path: tuple,
              sel: Selector, scope: str) -> AbsenceCond:
        cp = path + ("condition",)
        silent = ctx.duration(r["condition"], "silent_for", cp)
        if silent <= 0:
            ctx.err(cp + ("silent_for",), "silent_for must be > 0")
        metric = None
        if "metric" in r:
            metric = b.metric(ctx, r["metric"], path + ("metric",), sel)
        return AbsenceCond(silent, metric)

    def plan(self, c: AbsenceCond, plan: SensorPlan) -> None:
        # "" marks a sensor that matters for absence even without samples
        m = c.metric or ""
        plan.last.add(m)
        plan.absence[m] = max(plan.absence.get(m, 0), c.silent_for_ms)

    def horizon_ms(self, c: AbsenceCond) -> int:
        return c.silent_for_ms

    def judge(self, ev: Engine, rule: Rule, c: AbsenceCond, sid: str, now: int) -> Hit | None:
        silent = silent_ms(ev, c, sid, now)
        if silent is None or silent < c.silent_for_ms:
            return None
        return silent / 1000.0, ev.labels(rule, sid, ev.attrs(sid).get("district")), {}

    def quiet_due(self, ev: Engine, c: AbsenceCond, sid: str) -> int | None:
        sen = ev.sensor(sid)
        last = (sen.last.get(c.metric) if c.metric else sen.seen) if sen else None
        if last is None:
            last = ev.start
        return None if last is None else last + c.silent_for_ms

    def district(self, ev: Engine, rule: Rule, c: AbsenceCond, district: str,
                 sids: Sequence[str], now: int, active: bool) -> Hit | None:
        silences = [silent_ms(ev, c, s, now) for s in sids]
        if silences and all(s is not None and s >= c.silent_for_ms for s in silences):
            return (min(silences) / 1000.0,  # type: ignore[type-var]
                    ev.labels(rule, None, district), {"sensors": ",".join(sids)})
        return None

    def min_fault_ms(self, c: AbsenceCond) -> int:
        return c.silent_for_ms  # a shorter silence is not "silent for" it

    def plot(self, c: AbsenceCond) -> tuple[Probe | None, list[float], list[float]]:
        return None, [c.silent_for_ms / 60_000.0], []


KIND = Absence()
