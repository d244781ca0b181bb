"""Threshold: a probed value (latest sample, or an aggregate over a window) against a
level, with optional hysteresis. See README.md in this folder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from urbanbrain.rules.kinds.level import LevelKind, level_condition, parse_level
from urbanbrain.rules.model import Level, Probe

if TYPE_CHECKING:
    from urbanbrain.rules.kinds.base import Engine
    from urbanbrain.rules.loader import Builder, Ctx
    from urbanbrain.rules.model import Selector
    from urbanbrain.rules.state import SensorState


@dataclass(frozen=True, slots=True)
class ThresholdCond:
    probe: Probe
    level: Level


class Threshold(LevelKind):
    name = "threshold"
    rank = 10
    condition_def = "threshold_condition"
    schema_defs: ClassVar[dict[str, Any]] = {
        "threshold_condition": level_condition(relative_to={"$ref": "#/$defs/relative_to"}),
    }

    def parse(self, b: Builder, ctx: Ctx, r: Mapping[str, Any], path: tuple,
              sel: Selector, scope: str) -> ThresholdCond | None:
        pr = b.probe(ctx, r, path, sel)
        lv = parse_level(ctx, r["condition"], path + ("condition",))
        return ThresholdCond(pr, lv) if pr else None

    def parse_part(self, b: Builder, ctx: Ctx, part: Mapping[str, Any], path: tuple,
                   sel: Selector) -> ThresholdCond | None:
        pr = b.probe(ctx, part, path, sel)
        lv = parse_level(ctx, part, path)
        return ThresholdCond(pr, lv) if pr else None

    def value(self, ev: Engine, c: ThresholdCond, sid: str, st: SensorState,
              now: int) -> float | None:
        return ev.probe_value(c.probe, sid, st, now)

    def min_fault_ms(self, c: ThresholdCond) -> int:
        # a stuck detector (stddev/range over the window) sees a value frozen that long
        return c.probe.window_ms if c.probe.aggregate in ("stddev", "range") else 0


KIND = Threshold()
