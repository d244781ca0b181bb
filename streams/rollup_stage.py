"""State of the roll-up agent: partials per (domain, window), kept in a changelog-backed table,
and the decision when to write a district/city roll-up.

The table is the only state (scanned on every tick, a few hundred small entries), so a worker
that takes the roll-up partition over needs no rebuild step; what it does not know is which
roll-ups the failed worker already wrote, so it writes them again after the grace period
(same points, same values).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from .processor import Store
from .rollups import merge_partials, rollup_points


@dataclass
class RollupStats:
    partials: int = 0
    emitted: int = 0
    dropped_late: int = 0


class RollupStage:
    def __init__(self, store: Store, *, expected_sources: int, grace_s: float,
                 retention_ms: int) -> None:
        self.store = store
        self.expected = expected_sources
        self.grace_s, self.retention_ms = grace_s, retention_ms
        self.first_seen: dict[tuple[str, int], float] = {}
        self.emitted: dict[tuple[str, int], tuple] = {}
        self.max_start: dict[str, int] = {}
        self.stats = RollupStats()
        self._cache: dict[str, tuple[bytes, dict[str, Any]]] = {}

    def add(self, partition: int, part: dict[str, Any]) -> bool:
        """Store one partial (idempotent per source); False if too old to be kept."""
        domain, start = _stream(part), int(part["start"])
        top = max(self.max_start.get(domain, start), start)
        self.max_start[domain] = top
        if start < top - self.retention_ms:
            self.stats.dropped_late += 1
            return False
        key = f"{domain}|{start}|{part['src']}"
        self.store.put(partition, key, orjson.dumps({"partition": partition, "partial": part}))
        self.stats.partials += 1
        return True

    def _entries(self, active: set[int] | None) -> dict[tuple[str, int], dict[str, tuple]]:
        groups: dict[tuple[str, int], dict[str, tuple]] = {}
        seen = set()
        for key, value in self.store.items():
            if value is None:
                continue
            cached = self._cache.get(key)
            if cached is None or cached[0] is not value:
                cached = (value, orjson.loads(value))
                self._cache[key] = cached
            seen.add(key)
            doc = cached[1]
            if active is not None and doc["partition"] not in active:
                continue
            p = doc["partial"]
            groups.setdefault((_stream(p), int(p["start"])), {})[p["src"]] = (
                key, doc["partition"], hash(value), p)
        for key in set(self._cache) - seen:
            del self._cache[key]
        return groups

    def due(self, active: set[int] | None = None, now: float | None = None
            ) -> list[tuple[str, int, list[tuple[str, dict[str, str], dict[str, float]]]]]:
        """Roll-ups to write now: (domain, window start, points). Also prunes old windows."""
        now = time.monotonic() if now is None else now
        out = []
        for (domain, start), srcs in sorted(self._entries(active).items()):
            g = (domain, start)
            top = max(self.max_start.get(domain, start), start)
            self.max_start[domain] = top
            if start < top - self.retention_ms:
                for key, partition, _, _ in srcs.values():
                    self.store.delete(partition, key)
                self.first_seen.pop(g, None)
                self.emitted.pop(g, None)
                continue
            first = self.first_seen.setdefault(g, now)
            sig = tuple(sorted((s, h) for s, (_, _, h, _) in srcs.items()))
            if self.emitted.get(g) == sig:
                continue
            if len(srcs) < self.expected and now - first < self.grace_s and g not in self.emitted:
                continue
            dom, _, size = domain.partition("@")  # "traffic" or "traffic@1h"
            points = rollup_points(dom, merge_partials(v[3] for v in srcs.values()),
                                   size or "1m")
            self.emitted[g] = sig
            self.stats.emitted += 1
            out.append((dom, start, points))
        return out

    def forget(self) -> None:
        """After a rebalance: which roll-ups were written is unknown for new partitions."""
        self.first_seen.clear()
        self.emitted.clear()


def _stream(part: dict[str, Any]) -> str:
    """What a partial is grouped by: its domain, plus ``@<size>`` for other than 1-min
    windows (hourly partials, streams/hourly.py), so an hour and the minute that starts it
    never merge, and each size keeps its own event-time horizon (``max_start``)."""
    size = part.get("size", "1m")
    return part["domain"] if size == "1m" else f"{part['domain']}@{size}"


def points_to_lines(items: Iterable[tuple[str, int, list]]) -> list[str]:
    from urbanbrain.lineprotocol import line

    return [line(m, tags, fields, start) for _, start, pts in items for m, tags, fields in pts]
