"""The registry's neighbour graph, for composites that need their matching sensors to be
adjacent (``neighbours: n``): a queue along a road, not two loops across town."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any


class Neighbours:
    def __init__(self, registry: Mapping[str, Mapping[str, Any]]) -> None:
        adj: dict[str, set[str]] = defaultdict(set)
        for sid, a in registry.items():
            for n in a.get("neighbours") or []:
                adj[sid].add(n)
                adj[n].add(sid)
        self._adj = adj
        self._hops: dict[tuple[str, int], set[str]] = {}

    def within(self, sid: str, hops: int) -> set[str]:
        """Sensors at most ``hops`` registry-neighbour steps from ``sid`` (cached)."""
        key = (sid, hops)
        out = self._hops.get(key)
        if out is None:
            seen, frontier = {sid}, {sid}
            for _ in range(hops):
                frontier = {n for s in frontier for n in self._adj.get(s, ())} - seen
                seen |= frontier
            seen.discard(sid)
            out = self._hops[key] = seen
        return out

    def largest_component(self, hits: list[str], hops: int = 1) -> list[str]:
        """Largest group of ``hits`` connected through chains of at most ``hops``
        neighbour steps each (hops 2: one loop in between may be quiet)."""
        todo = set(hits)
        best: list[str] = []
        while todo:
            seed = todo.pop()
            comp, stack = [seed], [seed]
            while stack:
                cur = stack.pop()
                near = self._adj.get(cur, ()) if hops <= 1 else self.within(cur, hops)
                for n in near:
                    if n in todo:
                        todo.remove(n)
                        comp.append(n)
                        stack.append(n)
            if len(comp) > len(best) or (len(comp) == len(best) and sorted(comp) < sorted(best)):
                best = comp
        return best
