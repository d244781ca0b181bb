"""The city map's data: district polygons and sensors, from files the deployment has.

Sensors come from the device registry (id, domain, kind, district, lat, lon). District
polygons come from a GeoJSON file when the deployment has one (a city's official
boundaries; ``urbanbrain up`` writes the simulated city's), otherwise each district is the
convex hull of its sensors, padded a little so border sensors sit inside. The browser draws
everything itself on a canvas: no map tiles, nothing fetched from the internet.

The sensor list is columnar (one array per attribute, districts and domains as indexes
into short lists) because 20,000 sensors as objects are ~2 MB of JSON; as columns they are
well under half of that before compression.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from urbanbrain.registry import Registry, Sensor

Point = tuple[float, float]  # (lon, lat)


def convex_hull(points: list[Point]) -> list[Point]:
    """Andrew's monotone chain; counter-clockwise, first point not repeated."""
    pts = sorted(set(points))
    if len(pts) <= 2:
        return pts

    def cross(o: Point, a: Point, b: Point) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[Point] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[Point] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def padded(ring: list[Point], pad_deg: float) -> list[Point]:
    """``ring`` pushed out from its centroid by ``pad_deg``; a point or a segment becomes
    a small square or diamond around it, so every district has an area to click."""
    if not ring:
        return ring
    cx = sum(p[0] for p in ring) / len(ring)
    cy = sum(p[1] for p in ring) / len(ring)
    if len(ring) < 3:
        return [(cx + dx * pad_deg, cy + dy * pad_deg)
                for dx, dy in ((1, 0), (0, 1), (-1, 0), (0, -1))]
    out = []
    for x, y in ring:
        d = math.hypot(x - cx, y - cy) or 1.0
        out.append((x + (x - cx) / d * pad_deg, y + (y - cy) / d * pad_deg))
    return out


def hull_polygons(sensors: list[Sensor]) -> dict[str, list[Point]]:
    by_district: dict[str, list[Point]] = {}
    for s in sensors:
        if s.lat is not None and s.lon is not None:
            by_district.setdefault(s.district, []).append((s.lon, s.lat))
    if not by_district:
        return {}
    lons = [p[0] for ps in by_district.values() for p in ps]
    lats = [p[1] for ps in by_district.values() for p in ps]
    pad = 0.01 * max(max(lons) - min(lons), max(lats) - min(lats), 1e-3)
    return {d: padded(convex_hull(ps), pad) for d, ps in by_district.items()}


def geojson_polygons(path: Path) -> dict[str, list[list[Point]]]:
    """District → outer rings, from a FeatureCollection of Polygon/MultiPolygon features
    whose ``district`` (or ``id``/``name``) property names the district."""
    doc = json.loads(path.read_text())
    out: dict[str, list[list[Point]]] = {}
    for f in doc.get("features", []):
        props = f.get("properties") or {}
        name = str(props.get("district") or f.get("id") or props.get("name") or "")
        geom = f.get("geometry") or {}
        if not name:
            continue
        if geom.get("type") == "Polygon":
            polys = [geom["coordinates"]]
        elif geom.get("type") == "MultiPolygon":
            polys = geom["coordinates"]
        else:
            continue
        out.setdefault(name, []).extend(
            [[(float(x), float(y)) for x, y, *_ in poly[0]] for poly in polys if poly])
    return out


def map_document(registry: Registry, districts_path: Path | None = None) -> dict[str, Any]:
    """What the browser needs to draw the city (see the module docstring)."""
    sensors = [s for s in registry.values() if s.lat is not None and s.lon is not None]
    polygons: dict[str, list[list[Point]]]
    source = "registry (convex hulls)"
    if districts_path is not None and districts_path.exists():
        polygons = geojson_polygons(districts_path)
        source = str(districts_path.name)
    else:
        polygons = {d: [ring] for d, ring in hull_polygons(sensors).items()}
    names = sorted({s.district for s in registry.values()} | set(polygons))
    index = {d: i for i, d in enumerate(names)}
    domains = sorted({s.domain for s in sensors})
    dindex = {d: i for i, d in enumerate(domains)}
    kinds = sorted({s.kind for s in sensors})
    kindex = {k: i for i, k in enumerate(kinds)}
    return {
        "districts": [{"id": d, "rings": [[[round(x, 6), round(y, 6)] for x, y in ring]
                                          for ring in polygons.get(d, [])]} for d in names],
        "district_source": source,
        "domains": domains,
        "kinds": kinds,
        "sensors": {
            "id": [s.sensor_id for s in sensors],
            "lon": [round(s.lon, 6) for s in sensors],  # type: ignore[arg-type]
            "lat": [round(s.lat, 6) for s in sensors],  # type: ignore[arg-type]
            "district": [index[s.district] for s in sensors],
            "domain": [dindex[s.domain] for s in sensors],
            "kind": [kindex[s.kind] for s in sensors],
        },
    }
