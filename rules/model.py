"""Rules as immutable objects: what the loader builds and the evaluator runs.

One dataclass per concept (selector, probe, level, rule, group, rule set), all frozen: a
loaded rule set is shared by the evaluator, the checker and the unit-test runner, and hot
reload swaps the whole object. The condition of each kind lives with its kind
(rules/kinds/<kind>/); ``Rule.spec`` is that kind, resolved once at load.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from urbanbrain.rules.schedule import Schedule
from urbanbrain.rules.templating import Template

if TYPE_CHECKING:
    from urbanbrain.rules.kinds.base import RuleKind

#: Without a window, a probe reads the latest sample no older than this (Prometheus'
#: default lookback delta).
LOOKBACK_MS = 5 * 60_000

UPWARD = (">", ">=")
DOWNWARD = ("<", "<=")


@dataclass(frozen=True, slots=True)
class Selector:
    """Which sensors a rule looks at. ``None`` means "any"."""

    domain: frozenset[str] | None = None
    kind: frozenset[str] | None = None
    district: frozenset[str] | None = None
    sensors: frozenset[str] | None = None
    where: tuple[tuple[str, frozenset[str]], ...] = ()

    def matches(self, sensor_id: str, attrs: Mapping[str, Any]) -> bool:
        if self.sensors is not None and sensor_id not in self.sensors:
            return False
        if self.domain is not None and attrs.get("domain") not in self.domain:
            return False
        if self.kind is not None and attrs.get("kind") not in self.kind:
            return False
        if self.district is not None and attrs.get("district") not in self.district:
            return False
        for key, allowed in self.where:
            v = attrs.get(key)
            if isinstance(v, (list, tuple, set, frozenset)):
                if not any(_norm(x) in allowed for x in v):
                    return False
            elif _norm(v) not in allowed:
                return False
        return True


def _norm(v: Any) -> str:
    """Registry CSV values are strings, YAML values may be numbers/bools: compare as text."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return "" if v is None else str(v)


@dataclass(frozen=True, slots=True)
class Level:
    """A comparison with optional hysteresis.

    ``trigger(v)`` starts the condition; once active it holds while ``hold(v)``: for
    ``>``/``>=`` until the value falls below ``clear``, for ``<``/``<=`` until it rises
    above ``clear``, for ``outside`` until it is back inside the ``clear`` band, for
    ``inside`` until it leaves the (wider) ``clear`` band. Without ``clear`` hold = trigger.
    """

    op: str
    value: float | tuple[float, float]
    clear: float | tuple[float, float] | None = None

    def trigger(self, v: float) -> bool:
        op, x = self.op, self.value
        if op == ">":
            return v > x  # type: ignore[operator]
        if op == ">=":
            return v >= x  # type: ignore[operator]
        if op == "<":
            return v < x  # type: ignore[operator]
        if op == "<=":
            return v <= x  # type: ignore[operator]
        if op == "==":
            return v == x
        if op == "!=":
            return v != x
        lo, hi = x  # type: ignore[misc]
        if op == "outside":
            return v < lo or v > hi
        return lo <= v <= hi  # inside

    def hold(self, v: float) -> bool:
        c = self.clear
        if c is None:
            return self.trigger(v)
        op = self.op
        if op in UPWARD:
            return v >= c  # type: ignore[operator]
        if op in DOWNWARD:
            return v <= c  # type: ignore[operator]
        lo, hi = c  # type: ignore[misc]
        if op == "outside":
            return v < lo or v > hi
        if op == "inside":
            return lo <= v <= hi
        return self.trigger(v)

    def test(self, v: float, active: bool) -> bool:
        return self.hold(v) if active else self.trigger(v)


@dataclass(frozen=True, slots=True)
class Probe:
    """How a rule turns one sensor's samples of one metric into a number."""

    metric: str
    window_ms: int  # 0: latest sample within LOOKBACK_MS
    aggregate: str = "last"
    min_samples: int = 1
    relative_attr: str | None = None
    relative_default: float | None = None
    relative_standard: tuple[float, ...] = ()  # no attribute: nearest standard level
    offset_ms: int = 0  # look back this far (PromQL ``offset``): window ends at now - offset

    @property
    def span_ms(self) -> int:
        return self.window_ms or LOOKBACK_MS

    @property
    def reach_ms(self) -> int:
        """How far back from now the probe reads."""
        return self.span_ms + self.offset_ms


@dataclass(frozen=True)
class Rule:
    alert: str
    group: str
    kind: str
    scope: str  # sensor | district
    selector: Selector
    condition: Any  # the condition dataclass of the rule's kind (``spec``)
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    across: str = "mean"  # district scope of threshold/rate: how sensors' values combine
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, Template] = field(default_factory=dict)
    description: str = ""
    file: str = ""
    line: int = 0
    # when the condition may hold (local time-of-day / weekday windows); None: always
    schedule: Schedule | None = None
    # the kind object of ``kind`` (rules/kinds): the evaluator asks it, never the name
    spec: RuleKind = field(default=None, compare=False, repr=False)  # type: ignore[assignment]
    #: state key of the rule: group name + alert name (a field, not a property: the
    #: evaluator looks it up several times per reading)
    id: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.spec is None:
            from urbanbrain.rules.kinds import kind_of

            object.__setattr__(self, "spec", kind_of(self.kind))
        object.__setattr__(self, "id", f"{self.group}/{self.alert}")

    def probes(self) -> list[Probe]:
        return list(self.spec.probes(self.condition))

    def conditions(self) -> tuple[Any, ...]:
        """The rule's elementary conditions: its own, or a composite's parts."""
        return self.spec.leaves(self.condition)

    def retention_ms(self) -> dict[str, int]:
        """How much history of each metric this rule needs."""
        return self.spec.retention_ms(self.condition)


@dataclass(frozen=True)
class Group:
    name: str
    interval_ms: int
    rules: tuple[Rule, ...]
    file: str = ""


@dataclass(frozen=True)
class RuleSet:
    groups: tuple[Group, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def rules(self) -> list[Rule]:
        return [r for g in self.groups for r in g.rules]

    def rule(self, alert: str) -> Rule:
        for r in self.rules:
            if r.alert == alert or r.id == alert:
                return r
        raise KeyError(alert)

    def retention_ms(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rules:
            for m, ms in r.retention_ms().items():
                out[m] = max(out.get(m, 0), ms)
        return out

    @classmethod
    def load(
        cls, paths: Iterable[str] | str, registry: Mapping[str, Mapping] | None = None
    ) -> RuleSet:
        """Load and check rule files (files, directories or globs).

        Raises :class:`~urbanbrain.rules.loader.RuleFileError` listing every problem as
        ``file:line:col: message``.
        """
        from urbanbrain.rules.loader import load_rules

        return load_rules(paths, registry)


def valid_label_name(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None


#: condition classes that moved to their kind's folder, still importable from here
_MOVED = {
    "ThresholdCond": "threshold",
    "RateCond": "rate",
    "AbsenceCond": "absence",
    "AnomalyCond": "anomaly",
    "CompositeCond": "composite",
}


def __getattr__(name: str) -> Any:
    kind = _MOVED.get(name)
    if kind is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"urbanbrain.rules.kinds.{kind}"), name)
