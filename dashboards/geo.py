"""District outlines from sensor coordinates, offline: a padded convex hull per district.

Why hulls: the registry knows where each sensor stands and which district it belongs to,
not the district's boundary. The hull of a district's sensors, pushed out a little so that
sensors on its edge sit inside, is an honest outline of "where this district's sensors are"
and needs no map tiles, no internet and no GIS dependency (Andrew's monotone chain, numpy).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np


def convex_hull(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Counter-clockwise hull of ``points`` (x, y), without repeating the first point.

    Fewer than three distinct points give those points (a segment or a single point)."""
    pts = sorted(set((float(x), float(y)) for x, y in points))
    if len(pts) < 3:
        return pts

    def cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def pad(polygon: list[tuple[float, float]], margin: float, segments: int = 8
        ) -> list[tuple[float, float]]:
    """``polygon`` grown by ``margin``: the hull of circles of that radius around each
    vertex (a rounded outline; a single point becomes a circle)."""
    if not polygon:
        return []
    angles = np.linspace(0, 2 * math.pi, segments, endpoint=False)
    ring = [(x + margin * math.cos(a), y + margin * math.sin(a))
            for x, y in polygon for a in angles]
    return convex_hull(ring)


def district_outlines(points: Mapping[str, list[tuple[float, float]]], *,
                      margin_frac: float = 0.02) -> dict[str, list[tuple[float, float]]]:
    """district → padded hull in (lon, lat), computed in a local metric projection (so a
    degree of longitude is not taken for a degree of latitude)."""
    all_pts = [p for ps in points.values() for p in ps]
    if not all_pts:
        return {}
    lat0 = float(np.mean([lat for _, lat in all_pts]))
    kx = math.cos(math.radians(lat0))
    xs = [lon * kx for lon, _ in all_pts]
    ys = [lat for _, lat in all_pts]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 0.01
    out = {}
    for district, ps in points.items():
        hull = pad(convex_hull((lon * kx, lat) for lon, lat in ps), span * margin_frac)
        out[district] = [(x / kx, y) for x, y in hull]
    return out


def centroid(polygon: list[tuple[float, float]]) -> tuple[float, float]:
    """Area centroid of a simple polygon (the mean of its vertices when degenerate)."""
    if len(polygon) < 3:
        xs, ys = zip(*polygon) if polygon else ((0.0,), (0.0,))
        return float(np.mean(xs)), float(np.mean(ys))
    a = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1]):
        c = x0 * y1 - x1 * y0
        a += c
        cx += (x0 + x1) * c
        cy += (y0 + y1) * c
    if a == 0:
        xs, ys = zip(*polygon)
        return float(np.mean(xs)), float(np.mean(ys))
    return cx / (3 * a), cy / (3 * a)
