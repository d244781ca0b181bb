"""What the evaluator keeps from one sensor's readings, built from the rules matching it.

Built once per sensor (cached by the evaluator), read for every reading: the kinds add to
it through :meth:`RuleKind.plan`, so the per-reading loop in ``Evaluator.observe`` stays
a few dict and set lookups whatever kinds exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from urbanbrain.rules import seasonal


@dataclass(frozen=True, slots=True)
class MetricPlan:
    """What a sample of one metric feeds in one sensor's state."""

    retention_ms: int | None  # its window (None: only its last-seen time)
    ewma: tuple[tuple[str, int], ...]  # (key, halflife)
    weekly: bool
    tod: tuple[tuple[str, seasonal.LocalClock, float, seasonal.Layout], ...]
    baselines: bool  # feeds any of the three (a district evaluator folds those in order)


@dataclass(slots=True)
class SensorPlan:
    samples: dict[str, int] = field(default_factory=dict)  # metric -> retention ms
    last: set[str] = field(default_factory=set)  # metrics whose last-seen time is needed
    ewma: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # metric -> [(key, halflife)]
    weekly: set[str] = field(default_factory=set)
    # metric -> [(state key, local clock, across-days weight, layout)] of time-of-day baselines
    tod: dict[str, list[tuple[str, seasonal.LocalClock, float, seasonal.Layout]]] = field(
        default_factory=dict)
    # metric ("" = any reading) -> longest silent_for of the absence rules on it
    absence: dict[str, int] = field(default_factory=dict)
    #: metric -> what one sample of it feeds (:meth:`finish`): one lookup per metric of a
    #: reading instead of five
    metrics: dict[str, MetricPlan] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.samples or self.last or self.ewma or self.weekly or self.tod)

    def finish(self) -> SensorPlan:
        """Index the plan by metric, once the rules have added to it."""
        names = set(self.samples) | self.last  # a metric in neither is not observed at all
        self.metrics = {
            m: MetricPlan(self.samples.get(m), tuple(self.ewma.get(m, ())), m in self.weekly,
                          tuple(self.tod.get(m, ())),
                          bool(self.ewma.get(m) or m in self.weekly or self.tod.get(m)))
            for m in names}
        return self

    def keep_samples(self, retention: dict[str, int]) -> None:
        for m, ms in retention.items():
            self.samples[m] = max(self.samples.get(m, 0), ms)
