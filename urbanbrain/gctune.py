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

DEFAULT = (50_000, 50, 100)


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
