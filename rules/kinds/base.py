"""The interface every rule kind implements, and what the engine offers a kind.

A kind owns one ``condition:`` syntax end to end: its JSON-schema fragment, how its YAML
is parsed and checked, how it is evaluated, and what the engine must keep for it (samples,
baselines, last-seen times). The core (loader, model, evaluator, backtest) asks the kind
object, resolved once per rule at load time (``Rule.spec``), so it never branches on the
kind's name or condition class.

Two evaluation shapes exist, told apart by :attr:`RuleKind.timer_driven`:

* value-driven kinds (the default) are judged at a sensor's readings: :meth:`evaluate`
  turns the sensor's state into (holds, value, template extras);
* timer-driven kinds (absence) are judged when nothing arrives: the evaluator's due-time
  queue asks :meth:`quiet_due` when to look next and :meth:`judge` whether the condition
  holds then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from urbanbrain.rules.loader import Builder, Ctx
    from urbanbrain.rules.model import Probe, Rule, Selector
    from urbanbrain.rules.plan import SensorPlan
    from urbanbrain.rules.state import SensorState

#: Template extras of a condition that sets none: shared and read-only, so evaluating a
#: threshold allocates no dict per sensor.
NO_EXTRA: Mapping[str, Any] = MappingProxyType({})

#: (holds, value, template extras) of one condition for one sensor at one time.
Verdict = tuple[bool, "float | None", Mapping[str, Any]]
#: (value, labels, template extras) of an alert instance whose condition holds.
Hit = tuple["float | None", dict[str, str], Mapping[str, Any]]


class Engine(Protocol):
    """What the evaluator offers kinds (implemented by ``Evaluator``)."""

    registry: Mapping[str, Mapping[str, Any]]

    def sensor(self, sid: str) -> SensorState | None: ...
    def attrs(self, sid: str) -> Mapping[str, Any]: ...
    def labels(self, rule: Rule, sid: str | None, district: str | None) -> dict[str, str]: ...
    def probe_value(self, probe: Probe, sid: str, st: SensorState, now: int) -> float | None: ...
    def relative(self, probe: Probe, sid: str, v: float) -> float | None: ...
    def divisor(self, probe: Probe, sid: str, v: float) -> float | None: ...
    def scratch(self, key: str, factory: Callable[[], Any]) -> Any:
        """A kind's per-evaluator cache under ``key`` (made by ``factory``; dropped when
        the rules change)."""

    @property
    def start(self) -> int | None: ...


class RuleKind:
    """One kind of rule. Subclass it in ``rules/kinds/<name>/__init__.py`` and expose an
    instance as ``KIND``; the registry finds the folder.

    The defaults describe a value-driven kind with no probes; override what applies."""

    #: the ``kind:`` value of rule files
    name: ClassVar[str]
    #: where the kind is listed (schema enum, error messages, docs): lower first
    rank: ClassVar[int] = 100
    #: JSON-schema ``$defs`` this kind adds; they may use the core's (op, level, duration…)
    schema_defs: ClassVar[Mapping[str, Any]] = {}
    #: which of :attr:`schema_defs` a rule's ``condition:`` must match
    condition_def: ClassVar[str] = ""
    #: rule-level keys a rule of this kind must have (e.g. ``metric``)
    rule_requires: ClassVar[tuple[str, ...]] = ()
    #: whether the rule's ``metric`` picks the selector's domain when none is given
    narrows_domain: ClassVar[bool] = True
    #: whether evaluation sets ``$observed`` for annotations (the checker warns otherwise)
    sets_observed: ClassVar[bool] = False
    #: judged by the clock (due times, source watermarks), not at the sensor's readings
    timer_driven: ClassVar[bool] = False

    # --- loading ------------------------------------------------------------------------
    def parse(self, b: Builder, ctx: Ctx, r: Mapping[str, Any], path: tuple,
              sel: Selector, scope: str) -> Any:
        """The condition of rule ``r`` (schema-valid), or None after reporting problems
        through ``ctx`` (``file:line:col`` from ``path``)."""
        raise NotImplementedError

    def parse_part(self, b: Builder, ctx: Ctx, part: Mapping[str, Any], path: tuple,
                   sel: Selector) -> Any:
        """A composite part of this kind, or None (kinds that cannot be parts raise)."""
        raise NotImplementedError(f"kind {self.name!r} cannot be a composite part")

    # --- what the engine keeps -------------------------------------------------------------
    def probes(self, c: Any) -> Sequence[Probe]:
        """The probes the condition reads (reach of its windows, registry checks)."""
        return ()

    def retention_ms(self, c: Any) -> dict[str, int]:
        """How much history of each metric the condition needs."""
        out: dict[str, int] = {}
        for p in self.probes(c):
            out[p.metric] = max(out.get(p.metric, 0), p.reach_ms)
        return out

    def plan(self, c: Any, plan: SensorPlan) -> None:
        """Add what a matching sensor must keep beyond samples (baselines, last-seen)."""

    def horizon_ms(self, c: Any) -> int:
        """How long after a sensor's last reading the condition may still depend on it."""
        return 0

    def leaves(self, c: Any) -> tuple[Any, ...]:
        """The condition's elementary conditions (a composite's parts; else itself)."""
        return (c,)

    def follows_arrival(self, c: Any) -> bool:
        """Whether the condition's state at t depends on readings *after* t already folded
        in (a running average that cannot be looked up at a past time). District scope
        folds the readings of sources ahead of its clock early, so it refuses such
        conditions: their alerts would depend on how far ahead a worker happens to be."""
        return False

    # --- evaluation -----------------------------------------------------------------------
    def evaluate(self, ev: Engine, c: Any, sid: str, st: SensorState, now: int,
                 active: bool) -> Verdict:
        """Value-driven kinds: the condition for one sensor at ``now`` (``active``: the
        instance is pending or firing, so hysteresis applies)."""
        raise NotImplementedError

    def district(self, ev: Engine, rule: Rule, c: Any, district: str, sids: Sequence[str],
                 now: int, active: bool) -> Hit | None:
        """District scope: the instance of ``district`` (its matching ``sids``) at ``now``."""
        raise NotImplementedError(f"kind {self.name!r} has no district scope")

    def judge(self, ev: Engine, rule: Rule, c: Any, sid: str, now: int) -> Hit | None:
        """Timer-driven kinds: whether the condition holds for ``sid`` at ``now``."""
        raise NotImplementedError

    def quiet_due(self, ev: Engine, c: Any, sid: str) -> int | None:
        """Timer-driven kinds: when, without new data, the condition next may start
        holding for ``sid`` (None: never)."""
        raise NotImplementedError

    def warms_up(self, c: Any) -> bool:
        """Whether the condition has a baseline that needs history before it can fire."""
        return False

    def warming(self, ev: Engine, c: Any, sid: str, now: int) -> bool:
        """Whether ``sid``'s baseline is still too short to judge at ``now``."""
        return False

    # --- backtest -----------------------------------------------------------------------------
    def min_fault_ms(self, c: Any) -> int:
        """The shortest sensor fault the condition can see by its own definition."""
        return 0

    def plot(self, c: Any) -> tuple[Probe | None, list[float], list[float]]:
        """What a backtest plot draws: the probed signal (None: the gaps between
        readings) and its trigger and clear lines, in the plotted unit."""
        probes = self.probes(c)
        return (probes[0] if probes else None), [], []
