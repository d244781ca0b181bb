"""InfluxQL results as Grafana's tables: one frame per panel, with the panel's transformations.

Grafana's InfluxQL data source turns a ``GROUP BY`` result into one table per series, tag
columns first, then the time and field columns; a panel's ``transformations`` then merge,
filter, hide and sort them. Snapshots render tables and bar gauges from the same steps, so
"Firing now" shows only active alerts, newest first, exactly as the panel is defined.
Supported: ``merge``, ``filterByValue`` (equal, greater, lower), ``organize``
(``excludeByName``, ``renameByName``), ``sortBy`` and ``limit`` — the ones our dashboards use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TIME = "Time"


@dataclass
class Frame:
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def drop(self, names: set[str]) -> Frame:
        keep = [i for i, c in enumerate(self.columns) if c not in names]
        return Frame([self.columns[i] for i in keep], [[r[i] for i in keep] for r in self.rows])


def from_results(results: Sequence[Sequence[Mapping[str, Any]]]) -> Frame:
    """Every series of every target as rows of one frame (tags, then Time, then fields);
    Grafana's ``merge`` of per-series tables, which is what a single table shows."""
    columns: list[str] = []
    records: list[dict[str, Any]] = []
    for series_list in results:
        for s in series_list:
            tags = s.get("tags") or {}
            cols = ["time" if c == "time" else c for c in s.get("columns", [])]
            for name in [*tags, TIME, *(c for c in cols if c != "time")]:
                if name not in columns:
                    columns.append(name)
            for values in s.get("values", []):
                rec = dict(tags)
                for c, v in zip(cols, values):
                    rec[TIME if c == "time" else c] = v
                records.append(rec)
    return Frame(columns, [[rec.get(c) for c in columns] for rec in records])


def _sort_key(v: Any) -> tuple[int, Any]:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return (0, v)
    return (1, str(v)) if v is not None else (2, "")


def _matches(value: Any, config: Mapping[str, Any]) -> bool:
    kind = config.get("id")
    want = (config.get("options") or {}).get("value")
    try:
        if kind == "equal":
            return value == want or (value is not None and float(value) == float(want))
        if kind == "greater":
            return value is not None and float(value) > float(want)
        if kind == "lower":
            return value is not None and float(value) < float(want)
        if kind == "isNull":
            return value is None
        if kind == "isNotNull":
            return value is not None
    except (TypeError, ValueError):
        return False
    return True


def apply(frame: Frame, transformations: Sequence[Mapping[str, Any]]) -> Frame:
    """``frame`` after the panel's transformations (unknown ones are skipped)."""
    for t in transformations:
        tid, opts = t.get("id"), t.get("options") or {}
        if tid == "filterByValue":
            include = opts.get("type", "include") == "include"
            every = opts.get("match", "any") == "all"
            tests = [f for f in opts.get("filters", []) if f.get("fieldName") in frame.columns]
            if not tests:
                continue
            kept = []
            for r in frame.rows:
                hits = [_matches(r[frame.columns.index(f["fieldName"])], f.get("config", {}))
                        for f in tests]
                hit = all(hits) if every else any(hits)
                if hit == include:
                    kept.append(r)
            frame = Frame(frame.columns, kept)
        elif tid == "organize":
            frame = frame.drop({k for k, v in (opts.get("excludeByName") or {}).items() if v})
            renames = opts.get("renameByName") or {}
            frame = Frame([renames.get(c) or c for c in frame.columns], frame.rows)
        elif tid == "sortBy":
            for spec in reversed(opts.get("sort") or []):
                name = spec.get("field")
                if name in frame.columns:
                    i = frame.columns.index(name)
                    present = [r for r in frame.rows if r[i] is not None]
                    missing = [r for r in frame.rows if r[i] is None]
                    present.sort(key=lambda r: _sort_key(r[i]), reverse=bool(spec.get("desc")))
                    frame = Frame(frame.columns, present + missing)
        elif tid == "limit":
            frame = Frame(frame.columns, frame.rows[: int(opts.get("limitField", 10))])
    return frame
