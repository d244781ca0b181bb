"""Rate: how fast a metric changes per minute over a window (first-to-last delta or
least-squares slope, optionally relative to the window's level). See README.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from urbanbrain.rules import windows
from urbanbrain.rules.kinds.level import LevelKind, level_condition, parse_level
from urbanbrain.rules.model import Level, Probe

if TYPE_CHECKING:
    from urbanbrain.rules.kinds.base import Engine
    from urbanbrain.rules.loader import Builder, Ctx
    from urbanbrain.rules.model import Selector
    from urbanbrain.rules.state import SensorState


@dataclass(frozen=True, slots=True)
class RateCond:
    probe: Probe  # aggregate unused; window = rate window
    level: Level
    method: str = "delta"  # delta | slope
    relative: bool = False  # percent of the first value, per minute


class Rate(LevelKind):
    name = "rate"
    rank = 20
    condition_def = "rate_condition"
    rule_requires = ("metric", "window")
    schema_defs: ClassVar[dict[str, Any]] = {
        "rate_condition": level_condition(
            method={"enum": ["delta", "slope"]},
            relative={"type": "boolean",
                      "description": "percent of the window's first value per minute"},
        ),
    }

    def parse(self, b: Builder, ctx: Ctx, r: Mapping[str, Any], path: tuple,
              sel: Selector, scope: str) -> RateCond | None:
        cond = r["condition"]
        pr = b.probe(ctx, r, path, sel, rate=True)
        lv = parse_level(ctx, cond, path + ("condition",))
        return RateCond(pr, lv, cond.get("method", "delta"), bool(cond.get("relative"))) if pr else None

    def parse_part(self, b: Builder, ctx: Ctx, part: Mapping[str, Any], path: tuple,
                   sel: Selector) -> RateCond | None:
        if "window" not in part:
            ctx.err(path, "a rate part needs a window")
        pr = b.probe(ctx, part, path, sel, rate=True)
        lv = parse_level(ctx, part, path)
        return RateCond(pr, lv, part.get("method", "delta"), bool(part.get("relative"))) if pr else None

    def value(self, ev: Engine, c: RateCond, sid: str, st: SensorState, now: int) -> float | None:
        end = now - c.probe.offset_ms
        ts, vs = st.window(c.probe.metric, end - c.probe.span_ms, end)
        if len(vs) < max(2, c.probe.min_samples):
            return None
        r = windows.rate_per_minute(ts, vs, c.method)
        if r is None:
            return None
        if c.relative:
            base = vs[0] if c.method == "delta" else windows.mean(vs)
            if base == 0:
                return None
            r = r / abs(base) * 100.0
        return ev.relative(c.probe, sid, r)

    def plot(self, c: RateCond) -> tuple[Probe | None, list[float], list[float]]:
        return c.probe, [], []  # the level is a rate: not in the plotted metric's unit


KIND = Rate()
