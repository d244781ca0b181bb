"""A tiny Grafana dashboard model: just enough JSON building to keep the spec compact.

Why our own and not grafanalib: no extra dependency, and the JSON we emit is small and
fully under test (tests/test_dashboards.py checks structure, tests/test_dashboards_data.py
runs every query against a real InfluxDB). Panels are laid out automatically left to right
on Grafana's 24-column grid, so gridPos can never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATASOURCE_UID = "urbanbrain-influx"
DATASOURCE = {"type": "influxdb", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39
GRID_COLUMNS = 24


def target(query: str, ref: str = "A", *, fmt: str = "time_series", alias: str = "") -> dict:
    """A raw InfluxQL target. ``fmt``: time_series | table."""
    t: dict[str, Any] = {
        "datasource": DATASOURCE, "refId": ref, "rawQuery": True, "query": query,
        "resultFormat": fmt,
    }
    if alias:
        t["alias"] = alias
    return t


def thresholds(*steps: tuple[float | None, str]) -> dict:
    """Absolute thresholds; the first step's value must be None (base colour)."""
    return {"mode": "absolute",
            "steps": [{"color": c, "value": v} for v, c in steps]}


@dataclass
class Panel:
    """One panel: type, title, raw InfluxQL queries and size (the layout places it)."""

    type: str  # timeseries | stat | table | geomap | bargauge
    title: str
    queries: list[str]
    w: int = 12
    h: int = 8
    fmt: str = "time_series"
    unit: str = ""
    description: str = ""
    thresholds: dict | None = None
    interval: str = ""  # min interval: Grafana's $__interval never goes below it
    options: dict = field(default_factory=dict)
    transformations: list[dict] = field(default_factory=list)
    overrides: list[dict] = field(default_factory=list)
    custom: dict = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    decimals: int | None = None
    mappings: list[dict] = field(default_factory=list)  # value → text (Grafana mappings)

    def to_json(self, pid: int, x: int, y: int) -> dict:
        refs = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        defaults: dict[str, Any] = {}
        if self.unit:
            defaults["unit"] = self.unit
        if self.thresholds:
            defaults["thresholds"] = self.thresholds
            defaults["color"] = {"mode": "thresholds"}
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        if self.custom:
            defaults["custom"] = self.custom
        if self.mappings:
            defaults["mappings"] = self.mappings
        out: dict[str, Any] = {
            "id": pid,
            "type": self.type,
            "title": self.title,
            "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": self.w, "h": self.h},
            "targets": [
                target(q, refs[i], fmt=self.fmt,
                       alias=self.aliases[i] if i < len(self.aliases) else "")
                for i, q in enumerate(self.queries)
            ],
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": self.options,
        }
        if self.description:
            out["description"] = self.description
        if self.interval:
            out["interval"] = self.interval
        if self.transformations:
            out["transformations"] = self.transformations
        return out


def query_variable(name: str, label: str, query: str, *, multi: bool = True,
                   include_all: bool = True) -> dict:
    """A template variable filled by an InfluxQL ``SHOW TAG VALUES`` query."""
    var: dict[str, Any] = {
        "type": "query", "name": name, "label": label, "datasource": DATASOURCE,
        "query": query, "definition": query, "refresh": 2, "sort": 1,
        "multi": multi, "includeAll": include_all,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all
        else {},
        "options": [], "hide": 0, "regex": "",
    }
    if include_all:
        var["allValue"] = ".*"  # also matches points without the tag (city-wide alerts)
    return var


@dataclass
class Dashboard:
    uid: str
    title: str
    panels: list[Panel]
    variables: list[dict] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    time_from: str = "now-6h"
    refresh: str = "30s"
    description: str = ""

    def layout(self) -> list[dict]:
        """Place panels in rows of 24 columns; a row is as tall as its tallest panel."""
        out, x, y, row_h = [], 0, 0, 0
        for pid, p in enumerate(self.panels, start=1):
            if p.w > GRID_COLUMNS:
                raise ValueError(f"{self.uid}: panel {p.title!r} wider than the grid")
            if x + p.w > GRID_COLUMNS:
                x, y, row_h = 0, y + row_h, 0
            out.append(p.to_json(pid, x, y))
            x += p.w
            row_h = max(row_h, p.h)
        return out

    def to_json(self) -> dict:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["urbanbrain", *self.tags],
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": self.refresh,
            "time": {"from": self.time_from, "to": "now"},
            "templating": {"list": self.variables},
            "annotations": {"list": []},
            "links": [{"type": "dashboards", "tags": ["urbanbrain"], "asDropdown": True,
                       "title": "urbanbrain", "includeVars": True, "keepTime": True}],
            "panels": self.layout(),
        }
