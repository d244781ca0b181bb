"""Garbage-collector settings for our long-running, allocation-heavy processes.

Why: a worker holds millions of long-lived objects (rule windows, window panes, caches)
and allocates tens of thousands of short-lived ones per batch (decoded readings). With
CPython's default thresholds (700, 10, 10) the young generations fill many times per
batch and every tenth-of-a-tenth collection walks the whole old heap: measured, that made
``orjson.loads`` look like the worker's biggest cost. Readings are plain dicts/lists with
no reference cycles, so collecting less often only delays freeing what refcounting can't,
and ``gc.freeze()`` moves everything allocated at start-up (modules, settings, registry)
out of the collector's way for good.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field

DEFAULT = (50_000, 50, 100)


@dataclass
class Pauses:
    """Collections and the time they stopped the process, per generation (0, 1, 2), since
    :func:`pauses` was first called. A full collection walks every tracked object of the
    heap, so its pause grows with the state a worker holds: the one number that says
    whether the thresholds above still fit a city of this size."""

    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    longest: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    _t0: float = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        g = info.get("generation", 2)
        dt = time.perf_counter() - self._t0
        self.collections[g] += 1
        self.seconds[g] += dt
        if dt > self.longest[g]:
            self.longest[g] = dt


_PAUSES: Pauses | None = None


def pauses() -> Pauses:
    """The process's collector pauses, measured from the first call on (a ``gc.callbacks``
    hook: two clock reads per collection, nothing per allocation)."""
    global _PAUSES
    if _PAUSES is None:
        _PAUSES = Pauses()
        gc.callbacks.append(_PAUSES)
    return _PAUSES


def tune(thresholds: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """Apply ``URBANBRAIN_GC_THRESHOLDS`` ("g0,g1,g2") or ``thresholds`` or the default;
    freeze what exists now. Returns the thresholds in force."""
    env = os.environ.get("URBANBRAIN_GC_THRESHOLDS")
    if env:
        thresholds = tuple(int(x) for x in env.split(","))  # type: ignore[assignment]
    th = thresholds or DEFAULT
    gc.collect()
    gc.freeze()
    gc.set_threshold(*th)
    return th
