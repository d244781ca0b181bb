"""Composite: several conditions of other kinds on the same sensor (``all`` / ``any``),
and at district scope how many sensors (``min_sensors``), possibly adjacent
(``neighbours``), must match. Each part is parsed and evaluated by its own kind.
See README.md."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from urbanbrain.rules.kinds import kind_of
from urbanbrain.rules.kinds.base import Engine, Hit, RuleKind, Verdict
from urbanbrain.rules.kinds.composite.neighbours import Neighbours
from urbanbrain.rules.kinds.level import LEVEL_PROPERTIES

if TYPE_CHECKING:
    from urbanbrain.rules.loader import Builder, Ctx
    from urbanbrain.rules.model import Probe, Rule, Selector
    from urbanbrain.rules.plan import SensorPlan
    from urbanbrain.rules.state import SensorState

#: the kind of a part that names none
DEFAULT_PART = "threshold"


@dataclass(frozen=True, slots=True)
class CompositeCond:
    mode: str  # all | any
    parts: tuple[Any, ...]  # conditions of part-capable kinds
    min_sensors: int = 1
    neighbours: int = 0  # 0: any sensors; n: connected through <= n registry-neighbour hops
    # (part, its kind), resolved at load: evaluation looks nothing up per sensor
    pairs: tuple[tuple[Any, RuleKind], ...] = field(default=(), compare=False, repr=False)


class Composite(RuleKind):
    name = "composite"
    rank = 50
    narrows_domain = False  # parts may read metrics of several domains
    sets_observed = True  # of its first anomaly part
    condition_def = "composite_condition"
    schema_defs: ClassVar[dict[str, Any]] = {
        "part": {
            "if": {"properties": {"kind": {"const": "anomaly"}}, "required": ["kind"]},
            "then": {"$ref": "#/$defs/anomaly_part"},
            "else": {"$ref": "#/$defs/level_part"},
        },
        "level_part": {
            "type": "object",
            "required": ["metric", "op", "value"],
            "additionalProperties": False,
            "properties": {
                "kind": {"enum": ["threshold", "rate"]},
                "metric": {"type": "string"},
                "window": {"$ref": "#/$defs/duration"},
                "offset": {"$ref": "#/$defs/offset"},
                "aggregate": {"$ref": "#/$defs/aggregate"},
                "min_samples": {"type": "integer", "minimum": 1},
                **LEVEL_PROPERTIES,
                "relative_to": {"$ref": "#/$defs/relative_to"},
                "method": {"enum": ["delta", "slope"]},
                "relative": {"type": "boolean"},
            },
        },
        "composite_condition": {
            "type": "object",
            "additionalProperties": False,
            "x-message": "a composite condition needs exactly one of 'all' or 'any' (a list of parts)",
            "oneOf": [{"required": ["all"]}, {"required": ["any"]}],
            "properties": {
                "all": {"type": "array", "items": {"$ref": "#/$defs/part"}, "minItems": 1},
                "any": {"type": "array", "items": {"$ref": "#/$defs/part"}, "minItems": 1},
                "min_sensors": {"type": "integer", "minimum": 1},
                "neighbours": {
                    "description": "district scope: the matching sensors must be connected through the registry's neighbours; an integer n allows up to n-1 non-matching sensors between two matching ones (true = 1)",
                    "oneOf": [{"type": "boolean"}, {"type": "integer", "minimum": 1, "maximum": 5}],
                },
            },
        },
    }

    # --- loading ------------------------------------------------------------------------
    def parse(self, b: Builder, ctx: Ctx, r: Mapping[str, Any], path: tuple,
              sel: Selector, scope: str) -> CompositeCond:
        cp = path + ("condition",)
        cond_obj = r["condition"]
        mode = "all" if "all" in cond_obj else "any"
        pairs = []
        for i, part in enumerate(cond_obj.get(mode) or []):
            kind = kind_of(part.get("kind", DEFAULT_PART))
            cond = kind.parse_part(b, ctx, part, cp + (mode, i), sel)
            if cond is not None:
                pairs.append((cond, kind))
                if scope == "district" and kind.follows_arrival(cond):
                    ctx.err(cp + (mode, i), "this part's state follows arrival order (an "
                            "EWMA), which scope: district cannot look up at a past time; "
                            "use method: zscore or a seasonal baseline")
        min_sensors = int(cond_obj.get("min_sensors", 1))
        nb = cond_obj.get("neighbours", False)
        neighbours = int(nb) if not isinstance(nb, bool) else (1 if nb else 0)
        if scope == "sensor" and (min_sensors > 1 or neighbours):
            ctx.err(cp, "min_sensors > 1 and neighbours need scope: district")
        return CompositeCond(mode, tuple(p for p, _ in pairs), min_sensors, neighbours,
                             tuple(pairs))

    # --- what the engine keeps -------------------------------------------------------------
    def probes(self, c: CompositeCond) -> Sequence[Probe]:
        return [p for part, k in c.pairs for p in k.probes(part)]

    def retention_ms(self, c: CompositeCond) -> dict[str, int]:
        out: dict[str, int] = {}
        for part, k in c.pairs:
            for m, ms in k.retention_ms(part).items():
                out[m] = max(out.get(m, 0), ms)
        return out

    def plan(self, c: CompositeCond, plan: SensorPlan) -> None:
        for part, k in c.pairs:
            k.plan(part, plan)

    def leaves(self, c: CompositeCond) -> tuple[Any, ...]:
        return c.parts

    # --- evaluation -----------------------------------------------------------------------
    def evaluate(self, ev: Engine, c: CompositeCond, sid: str, st: SensorState, now: int,
                 active: bool) -> Verdict:
        values: list[float | None] = []
        extra: dict[str, Any] = {}
        ok = c.mode == "all"
        for part, k in c.pairs:
            pok, v, ex = k.evaluate(ev, part, sid, st, now, active)
            if "observed" not in extra and "observed" in ex:
                extra["observed"] = ex["observed"]  # $observed of the first anomaly
            values.append(v)
            if c.mode == "all" and not pok:
                ok = False
                break  # the rest cannot change the outcome (district scope: per loop)
            if c.mode == "any" and pok:
                ok = True
        first = next((v for v in values if v is not None), None)
        extra["values"] = values + [None] * (len(c.parts) - len(values))
        return ok, first, extra

    def _matches(self, ev: Engine, c: CompositeCond, sid: str, st: SensorState, now: int,
                 active: bool) -> bool:
        """Whether one sensor matches (district scope: only the verdict counts, so stop
        at the first part that decides it)."""
        want = c.mode == "all"
        for part, k in c.pairs:
            if k.evaluate(ev, part, sid, st, now, active)[0] != want:
                return not want
        return want

    def district(self, ev: Engine, rule: Rule, c: CompositeCond, district: str,
                 sids: Sequence[str], now: int, active: bool) -> Hit | None:
        hits = []
        for s in sids:
            st = ev.sensor(s)
            if st is not None and self._matches(ev, c, s, st, now, active):
                hits.append(s)
        if c.neighbours:
            graph = ev.scratch("composite.neighbours", lambda: Neighbours(ev.registry))
            group = graph.largest_component(hits, c.neighbours)
        else:
            group = hits
        if len(group) >= c.min_sensors:
            return (float(len(group)), ev.labels(rule, None, district),
                    {"sensors": ",".join(sorted(group))})
        return None

    def warms_up(self, c: CompositeCond) -> bool:
        return any(k.warms_up(part) for part, k in c.pairs)

    def warming(self, ev: Engine, c: CompositeCond, sid: str, now: int) -> bool:
        return any(k.warming(ev, part, sid, now) for part, k in c.pairs if k.warms_up(part))

    # --- backtest -----------------------------------------------------------------------------
    def min_fault_ms(self, c: CompositeCond) -> int:
        if c.mode != "all":
            return 0  # any one part may fire without the fault
        return max((k.min_fault_ms(part) for part, k in c.pairs), default=0)

    def plot(self, c: CompositeCond) -> tuple[Probe | None, list[float], list[float]]:
        part, k = c.pairs[0]
        return k.plot(part)


KIND = Composite()
