"""Anomaly: a probed value far from the sensor's own usual, as a z-score against a
baseline (the window before, the same hour last week, the usual at this local time of
day, or an EWMA). See README.md."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from urbanbrain.rules import seasonal, windows
from urbanbrain.rules.kinds.base import Engine, RuleKind, Verdict
from urbanbrain.rules.model import Probe

if TYPE_CHECKING:
    from urbanbrain.rules.loader import Builder, Ctx
    from urbanbrain.rules.model import Selector
    from urbanbrain.rules.plan import SensorPlan
    from urbanbrain.rules.state import SensorState

_ANOMALY_PROPS: dict[str, Any] = {
    "method": {"enum": ["zscore", "ewma"]},
    "baseline": {"$ref": "#/$defs/duration"},
    "halflife": {"$ref": "#/$defs/duration"},
    "seasonal": {"$ref": "#/$defs/seasonal"},
    "timezone": {"$ref": "#/$defs/timezone"},
    "resolution": {"$ref": "#/$defs/duration"},
    "day_types": {"$ref": "#/$defs/day_types"},
    "relative_to": {"$ref": "#/$defs/relative_to"},
    "threshold": {"type": "number", "exclusiveMinimum": 0},
    "clear": {"type": "number", "minimum": 0},
    "direction": {"enum": ["up", "down", "both"]},
    "min_samples": {"type": "integer", "minimum": 2},
    "min_std": {"type": "number", "minimum": 0},
}


# (the field ``seasonal`` hides the module in the class body)
_HOUR_MS, _WORKDAY_WEEKEND, _HOURLY = seasonal.HOUR_MS, seasonal.WORKDAY_WEEKEND, seasonal.HOURLY


@dataclass(frozen=True, slots=True)
class AnomalyCond:
    probe: Probe  # the observation compared with the baseline
    method: str = "zscore"  # zscore | ewma
    baseline_ms: int = 3_600_000
    halflife_ms: int = 900_000
    seasonal: str = "none"  # none | same_hour_last_week | time_of_day
    threshold: float = 3.0
    clear: float | None = None
    direction: str = "both"
    min_samples: int = 10
    min_std: float = 1e-9
    timezone: str = "UTC"  # time_of_day: local time (hour, working day / weekend)
    resolution_ms: int = _HOUR_MS  # time_of_day: width of a time-of-day bucket
    day_types: tuple[int, ...] = _WORKDAY_WEEKEND  # time_of_day: type of each weekday
    # state key of the time-of-day baseline (shared by rules with equal settings); set
    # once here because the evaluator reads it for every sensor at every tick
    tod_key: str = field(init=False, default="", compare=False)
    # rules with the same z_key compute the same time-of-day z-score for a sensor
    z_key: str = field(init=False, default="", compare=False)
    # weight of one day in the time-of-day baseline (a lookup folds unfolded days with it)
    alpha: float = field(init=False, default=0.0, compare=False)
    layout: seasonal.Layout = field(init=False, default=_HOURLY, compare=False)

    def __post_init__(self) -> None:
        tod = f"{self.probe.metric}|{self.timezone}|{self.halflife_ms}"
        lay = seasonal.Layout(self.resolution_ms, self.day_types)
        if lay != seasonal.HOURLY:  # the keys of hourly working-day/weekend states predate it
            tod += f"|{self.resolution_ms}|{''.join(map(str, self.day_types))}"
        object.__setattr__(self, "layout", lay)
        object.__setattr__(self, "tod_key", tod)
        object.__setattr__(self, "alpha", seasonal.alpha_for(self.halflife_ms))
        p = self.probe
        object.__setattr__(
            self, "z_key",
            f"{tod}|{p.window_ms}|{p.aggregate}|{p.offset_ms}|{self.min_std}|{self.min_samples}"
            f"|{p.relative_attr}|{p.relative_default}|{p.relative_standard}",
        )

    @property
    def key(self) -> str:
        """State key of the EWMA this rule needs (shared by rules with equal halflife)."""
        return f"{self.probe.metric}|{self.halflife_ms}"


class _ZMemo:
    """Time-of-day z-scores of the current tick: rules that share the observation and
    baseline (Congestion / ProbableAccident) share a sensor's z-score at a tick."""

    __slots__ = ("now", "z")

    def __init__(self) -> None:
        self.now: int | None = None
        self.z: dict[tuple[str, str], tuple[float | None, float]] = {}


@functools.lru_cache(maxsize=64)
def _positions(tz: str, lay: seasonal.Layout, now: int) -> seasonal.Position:
    """seasonal.positions for a tick (the same for every sensor)."""
    return seasonal.positions(now, seasonal.clock(tz), lay)


def _tod_z(ev: Engine, c: AnomalyCond, sid: str, st: SensorState,
           now: int) -> tuple[float | None, float]:
    """(z-score, observation) against the time-of-day baseline; z None: no value.
    With ``relative_to`` the deviation and the spread are divided by the sensor's
    divisor first, so ``min_std`` is in relative units (speed / free-flow speed)."""
    # baseline first: it is a few list reads, and without history nothing else counts
    b = st.tod.get(c.tod_key)
    if b is None:
        return None, 0.0
    base = seasonal.baseline_at(b, _positions(c.timezone, c.layout, now), c.alpha)
    if base is None or base[0] < c.min_samples:
        return None, 0.0
    p = c.probe
    _, vs = st.window(p.metric, now - p.span_ms, now)
    if not vs:
        return None, 0.0
    observed = windows.aggregate(p.aggregate, vs) if p.window_ms else vs[-1]
    diff, sd = observed - base[1], base[2]
    if p.relative_attr is not None:
        div = ev.divisor(p, sid, base[1])
        if div is None:
            return None, 0.0
        diff, sd = diff / div, sd / div
    sd = max(sd, c.min_std)
    z = (0.0 if diff == 0 else math.copysign(math.inf, diff)) if sd == 0 else diff / sd
    return z, observed


class Anomaly(RuleKind):
    name = "anomaly"
    rank = 40
    sets_observed = True
    condition_def = "anomaly_condition"
    rule_requires = ("metric",)
    schema_defs: ClassVar[dict[str, Any]] = {
        "anomaly_condition": {
            "type": "object",
            "required": ["threshold"],
            "additionalProperties": False,
            "properties": _ANOMALY_PROPS,
        },
        "day_types": {
            "description": "time_of_day: groups of weekdays that share buckets, e.g. [mon-thu, fri, sat-sun]; default [mon-fri, sat-sun]",
            "type": "array",
            "minItems": 1,
            "maxItems": 7,
            "items": {"type": "string"},
        },
        "seasonal": {
            "description": "baseline: the window before the observation (none), the same hour one week earlier, or the usual value at this local time of day (buckets of `resolution`, default 1h, for working days and for weekends, weighted across days by halflife, default 2d)",
            "enum": ["none", "same_hour_last_week", "time_of_day"],
        },
        "anomaly_part": {
            "description": "an anomaly condition on one sensor (min_samples: of the baseline)",
            "type": "object",
            "required": ["kind", "metric", "threshold"],
            "additionalProperties": False,
            "properties": {
                "kind": {"const": "anomaly"},
                "metric": {"type": "string"},
                "window": {"$ref": "#/$defs/duration"},
                "aggregate": {"$ref": "#/$defs/aggregate"},
                **_ANOMALY_PROPS,
            },
        },
    }

    # --- loading ------------------------------------------------------------------------
    def parse(self, b: Builder, ctx: Ctx, r: Mapping[str, Any], path: tuple,
              sel: Selector, scope: str) -> AnomalyCond | None:
        pr = b.probe(ctx, r, path, sel)
        cond = self._condition(ctx, r["condition"], path + ("condition",), pr)
        if "offset" in r:
            ctx.err(path + ("offset",), "offset is not supported by anomaly rules", key=True)
        if scope != "sensor":
            ctx.err(path + ("scope",), "anomaly rules are evaluated per sensor (scope: sensor)")
        return cond

    def parse_part(self, b: Builder, ctx: Ctx, part: Mapping[str, Any], path: tuple,
                   sel: Selector) -> AnomalyCond | None:
        # min_samples of an anomaly part is the baseline's, as in an anomaly rule
        pr = b.probe(ctx, {k: v for k, v in part.items() if k != "min_samples"}, path, sel)
        return self._condition(ctx, part, path, pr)

    def _condition(self, ctx: Ctx, cond_obj: Mapping, cp: tuple,
                   pr: Probe | None) -> AnomalyCond | None:
        thr = float(cond_obj["threshold"])
        clear = cond_obj.get("clear")
        if clear is not None and float(clear) > thr:
            ctx.err(
                cp + ("clear",),
                f"clear {clear:g} is above the threshold {thr:g}: clear must be <= threshold",
            )
        method = cond_obj.get("method", "zscore")
        seas = cond_obj.get("seasonal", "none")
        baseline = ctx.duration(cond_obj, "baseline", cp, 3_600_000)
        # time_of_day: the halflife weighs whole days (how fast "usual" forgets)
        halflife = ctx.duration(
            cond_obj, "halflife", cp, 2 * seasonal.DAY_MS if seas == "time_of_day" else 900_000
        )
        if method == "zscore" and baseline <= 0:
            ctx.err(cp + ("baseline",), "baseline must be > 0")
        if (method == "ewma" or seas == "time_of_day") and halflife <= 0:
            ctx.err(cp + ("halflife",), "halflife must be > 0")
        if seas != "none" and method != "zscore":
            ctx.err(cp + ("seasonal",), f"seasonal {seas!r} needs method: zscore")
        tz = str(cond_obj.get("timezone", "UTC"))
        if "timezone" in cond_obj:
            if seas != "time_of_day":
                ctx.err(cp + ("timezone",), "timezone is used by seasonal: time_of_day only")
            elif not seasonal.valid_timezone(tz):
                ctx.err(cp + ("timezone",), f"unknown time zone {tz!r} (use an IANA name, e.g. Europe/Paris)")
        if "relative_to" in cond_obj and seas != "time_of_day":
            ctx.err(cp + ("relative_to",), "relative_to is used by seasonal: time_of_day only")
        resolution = ctx.duration(cond_obj, "resolution", cp, seasonal.HOUR_MS)
        if "resolution" in cond_obj:
            if seas != "time_of_day":
                ctx.err(cp + ("resolution",), "resolution is used by seasonal: time_of_day only")
            elif (resolution < seasonal.MIN_SLOT_MS or resolution > 6 * seasonal.HOUR_MS
                  or seasonal.DAY_MS % resolution):
                ctx.err(cp + ("resolution",),
                        "resolution must divide a day and lie between 5m and 6h (e.g. 15m, 30m, 1h)")
                resolution = seasonal.HOUR_MS
        day_types = seasonal.WORKDAY_WEEKEND
        if "day_types" in cond_obj:
            if seas != "time_of_day":
                ctx.err(cp + ("day_types",), "day_types is used by seasonal: time_of_day only")
            else:
                try:
                    day_types = seasonal.parse_day_types(list(cond_obj["day_types"]))
                except (seasonal.BadDayTypes, TypeError) as exc:
                    ctx.err(cp + ("day_types",), f"bad day_types: {exc}")
        if pr is None:
            return None
        return AnomalyCond(
            pr,
            method,
            baseline,
            halflife,
            seas,
            thr,
            float(clear) if clear is not None else None,
            cond_obj.get("direction", "both"),
            int(cond_obj.get("min_samples", 10)),
            float(cond_obj.get("min_std", 1e-9)),
            tz,
            resolution,
            day_types,
        )

    # --- what the engine keeps -------------------------------------------------------------
    def probes(self, c: AnomalyCond) -> Sequence[Probe]:
        return (c.probe,)

    def retention_ms(self, c: AnomalyCond) -> dict[str, int]:
        need = c.probe.reach_ms
        if c.method == "zscore" and c.seasonal == "none":
            need += c.baseline_ms  # the baseline is the window before the observation
        return {c.probe.metric: need}

    def plan(self, c: AnomalyCond, plan: SensorPlan) -> None:
        m = c.probe.metric
        if c.method == "ewma":
            keys = plan.ewma.setdefault(m, [])
            if (c.key, c.halflife_ms) not in keys:
                keys.append((c.key, c.halflife_ms))
        if c.seasonal == "same_hour_last_week":
            plan.weekly.add(m)
        if c.seasonal == "time_of_day":
            tod = plan.tod.setdefault(m, [])
            if all(k != c.tod_key for k, *_ in tod):
                tod.append((c.tod_key, seasonal.clock(c.timezone), c.alpha, c.layout))

    # --- evaluation -----------------------------------------------------------------------
    def evaluate(self, ev: Engine, c: AnomalyCond, sid: str, st: SensorState, now: int,
                 active: bool) -> Verdict:
        """(anomalous, z-score, {"observed": the observation}) of ``sid`` at ``now``."""
        p = c.probe
        if c.method == "ewma":
            e = st.ewma.get(c.key)
            if not e or e[2] - 1 < c.min_samples or now - e[3] > p.span_ms or e[3] > now:
                return False, None, {}
            z = windows.ewma_z(e, c.min_std)
            observed = e[4]
        elif c.seasonal == "time_of_day":
            memo = ev.scratch("anomaly.z", _ZMemo)
            if now != memo.now:
                memo.now, memo.z = now, {}
            mkey = (c.z_key, sid)
            got = memo.z.get(mkey)
            if got is None:
                got = memo.z[mkey] = _tod_z(ev, c, sid, st, now)
            z, observed = got
            if z is None:
                return False, None, {}
        else:
            ts, vs = st.window(p.metric, now - p.span_ms, now)
            if not vs:
                return False, None, {}
            if p.window_ms == 0:
                ts, vs = ts[-1:], vs[-1:]
            observed = windows.aggregate(p.aggregate, vs)
            if c.seasonal == "same_hour_last_week":
                base = st.weekly_baseline(p.metric, now)
                if base is None or base[0] < c.min_samples:
                    return False, None, {}
                _, m, sd = base
            else:
                _, bv = st.window(p.metric, ts[0] - c.baseline_ms - 1, ts[0] - 1)
                if len(bv) < c.min_samples:
                    return False, None, {}
                m, sd = windows.mean(bv), windows.stdev(bv)
            sd = max(sd, c.min_std)
            diff = observed - m
            z = (0.0 if diff == 0 else math.copysign(math.inf, diff)) if sd == 0 else diff / sd
        s = z if c.direction == "up" else (-z if c.direction == "down" else abs(z))
        if active and c.clear is not None:
            cond = s >= c.clear
        else:
            cond = s > c.threshold
        return cond, z, {"observed": observed}

    def warms_up(self, c: AnomalyCond) -> bool:
        return True

    def follows_arrival(self, c: AnomalyCond) -> bool:
        return c.method == "ewma"  # the time-of-day and weekly baselines are looked up by time

    def warming(self, ev: Engine, c: AnomalyCond, sid: str, now: int) -> bool:
        st = ev.sensor(sid)
        if st is None:
            return True
        if c.method == "ewma":
            e = st.ewma.get(c.key)
            return not e or e[2] - 1 < c.min_samples
        if c.seasonal == "time_of_day":
            b = st.tod.get(c.tod_key)
            if b is None:
                return True
            base = seasonal.baseline_at(b, _positions(c.timezone, c.layout, now), c.alpha)
            return base is None or base[0] < c.min_samples
        if c.seasonal == "same_hour_last_week":
            base = st.weekly_baseline(c.probe.metric, now)
            return base is None or base[0] < c.min_samples
        _, bv = st.window(c.probe.metric, now - c.baseline_ms - c.probe.span_ms, now)
        return len(bv) < c.min_samples


KIND = Anomaly()
