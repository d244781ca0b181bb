"""The device registry CSV (docs/DATA_CONTRACTS.md) as the dict the engine takes.

Columns: sensor_id,domain,kind,district,lat,lon,metrics,road_class,free_flow_kmh,
neighbours. ``metrics`` and ``neighbours`` are ';'-joined; empty cells are left out;
numeric columns become floats.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

_FLOATS = ("lat", "lon", "free_flow_kmh")
_LISTS = ("metrics", "neighbours")


def load_registry_csv(path: str | Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            sid = (row.get("sensor_id") or "").strip()
            if not sid:
                continue
            attrs: dict[str, Any] = {}
            for k, v in row.items():
                if k is None or k == "sensor_id" or v is None or v.strip() == "":
                    continue
                v = v.strip()
                if k in _LISTS:
                    attrs[k] = [x for x in v.split(";") if x]
                elif k in _FLOATS:
                    try:
                        attrs[k] = float(v)
                    except ValueError:
                        attrs[k] = v
                else:
                    attrs[k] = v
            out[sid] = attrs
    return out
