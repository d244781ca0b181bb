"""Which metric names a rule may refer to, and which domain each belongs to.

Rules see the canonical reading metrics (urbanbrain.metrics) plus the indices the streams
room derives (AQI, congestion index ...), which arrive as reading-shaped aggregates. The
index table is here, not in the catalogue, because ingest must never accept an index from
a sensor; :func:`register_index` lets the streams room add one without editing this file.
"""

from __future__ import annotations

import difflib

from urbanbrain.indexes import INDEXES
from urbanbrain.metrics import METRICS

#: Derived indices: name -> (domain, description). Declared once in urbanbrain/indexes.py
#: (with the window each comes from and when rules see it); extensions via register_index.
INDEX_METRICS: dict[str, tuple[str, str]] = {
    name: (ix.domain, ix.description) for name, ix in INDEXES.items()
}

DOMAINS: tuple[str, ...] = ("traffic", "environment", "water", "power")


def register_index(name: str, domain: str, description: str = "") -> None:
    """Make a derived index known to the checker (call before loading rules)."""
    INDEX_METRICS[name] = (domain, description)


def metric_domain(name: str) -> str | None:
    """Domain of a canonical metric or index, None if the name is unknown."""
    m = METRICS.get(name)
    if m is not None:
        return m.domain
    idx = INDEX_METRICS.get(name)
    return idx[0] if idx else None


def known_metrics() -> list[str]:
    return sorted([*METRICS, *INDEX_METRICS])


def suggest(name: str, candidates: list[str]) -> str:
    """`` (did you mean 'x'?)`` or an empty string."""
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
