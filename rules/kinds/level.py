"""What threshold and rate share: a value per sensor compared with a :class:`Level`.

Both kinds parse the same ``op``/``value``/``clear`` fragment and, at district scope,
combine their sensors' values ``across`` (mean, max, ...) before comparing; only how one
sensor's value is computed differs (:meth:`LevelKind.value`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from urbanbrain.rules import windows
from urbanbrain.rules.kinds.base import NO_EXTRA, Engine, Hit, RuleKind, Verdict
from urbanbrain.rules.model import DOWNWARD, UPWARD, Level, Probe

if TYPE_CHECKING:
    from urbanbrain.rules.loader import Ctx
    from urbanbrain.rules.model import Rule
    from urbanbrain.rules.state import SensorState


#: the schema properties of a level (a condition's, or a composite part's)
LEVEL_PROPERTIES: dict[str, Any] = {
    "op": {"$ref": "#/$defs/op"},
    "value": {"$ref": "#/$defs/level"},
    "clear": {"$ref": "#/$defs/level"},
}


def level_condition(**properties: Any) -> dict[str, Any]:
    """The schema of a level condition with a kind's own ``properties`` besides the level."""
    return {"type": "object", "required": ["op", "value"], "additionalProperties": False,
            "properties": {**LEVEL_PROPERTIES, **properties}}


def parse_level(ctx: Ctx, cond: Mapping, path: tuple) -> Level:
    """``op``/``value``/``clear`` as a :class:`Level`; hysteresis on the wrong side of the
    firing value (which would never clear, or clear at once) is reported."""
    op = cond["op"]
    value = cond["value"]
    clear = cond.get("clear")
    band = op in ("outside", "inside")
    for k, v in (("value", value), ("clear", clear)):
        if v is None:
            continue
        if band and not isinstance(v, list):
            ctx.err(path + (k,), f"op {op!r} needs {k} as [low, high]")
            return Level(">", float("inf"))
        if not band and isinstance(v, list):
            ctx.err(path + (k,), f"op {op!r} needs a number, not a band")
            return Level(">", float("inf"))
        if band and v[0] > v[1]:
            ctx.err(path + (k,), f"band {v} has low > high")
    if band:
        value = (float(value[0]), float(value[1]))
        clear = (float(clear[0]), float(clear[1])) if clear is not None else None
    else:
        value = float(value)
        clear = float(clear) if clear is not None else None
    if clear is not None:
        bad = ""
        if op in UPWARD and clear > value:
            bad = f"clear {clear:g} is above the firing value {value:g} for op {op!r}: clear must be <= value"
        elif op in DOWNWARD and clear < value:
            bad = f"clear {clear:g} is below the firing value {value:g} for op {op!r}: clear must be >= value"
        elif op in ("==", "!="):
            bad = f"op {op!r} takes no clear level"
        elif op == "outside" and not (value[0] <= clear[0] <= clear[1] <= value[1]):
            bad = f"clear band {list(clear)} must lie inside the firing band {list(value)} for 'outside'"
        elif op == "inside" and not (clear[0] <= value[0] and value[1] <= clear[1]):
            bad = (
                f"clear band {list(clear)} must contain the firing band {list(value)} for 'inside'"
            )
        if bad:
            ctx.err(path + ("clear",), bad)
    return Level(op, value, clear)


class LevelKind(RuleKind):
    """A kind whose condition has ``probe`` and ``level``: one value per sensor."""

    rule_requires = ("metric",)

    def value(self, ev: Engine, c: Any, sid: str, st: SensorState, now: int) -> float | None:
        raise NotImplementedError

    def probes(self, c: Any) -> Sequence[Probe]:
        return (c.probe,)

    def evaluate(self, ev: Engine, c: Any, sid: str, st: SensorState, now: int,
                 active: bool) -> Verdict:
        v = self.value(ev, c, sid, st, now)
        return (v is not None and c.level.test(v, active)), v, NO_EXTRA

    def district(self, ev: Engine, rule: Rule, c: Any, district: str, sids: Sequence[str],
                 now: int, active: bool) -> Hit | None:
        vals: list[float] = []
        used: list[str] = []
        for s in sids:
            st = ev.sensor(s)
            if st is None:
                continue
            v = self.value(ev, c, s, st, now)
            if v is not None:
                vals.append(v)
                used.append(s)
        if not vals:
            return None
        agg = float(len(vals)) if rule.across == "count" else windows.aggregate(rule.across, vals)
        if c.level.test(agg, active):
            return agg, ev.labels(rule, None, district), {"sensors": ",".join(used)}
        return None

    def plot(self, c: Any) -> tuple[Probe | None, list[float], list[float]]:
        lv = c.level
        vals = list(lv.value) if isinstance(lv.value, tuple) else [lv.value]
        clr = [] if lv.clear is None else (list(lv.clear) if isinstance(lv.clear, tuple)
                                          else [lv.clear])
        return c.probe, vals, clr
