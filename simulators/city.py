"""A synthetic city, fully determined by ``(seed, size)``.

Why a model and not random points: incidents need structure to be realistic (an accident
backs traffic up *along a road*, a burst main drops pressure *in an area*, an outage
silences *a district's* devices), and dashboards need coordinates that look like a city.

Layout: a central district ringed by annular-sector districts around a configurable
centre; radial arterials (both directions) plus a ring road, and short local roads inside
each district. Traffic loops sit along the roads in driving order, so every loop knows its
upstream and downstream neighbour. Environment, water and power sensors are spread over
the districts, at least one of each per district.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from urbanbrain.errors import BadValue

# kind -> (domain, id prefix, canonical metrics in a fixed order)
KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "loop": ("traffic", "tl", ("vehicle_count", "occupancy_pct", "speed_kmh", "flow_vph")),
    "air_quality": (
        "environment", "aq", ("pm25_ugm3", "pm10_ugm3", "no2_ugm3", "o3_ugm3", "co_mgm3"),
    ),
    "noise": ("environment", "nz", ("noise_dba",)),
    "weather": (
        "environment", "wx", ("temperature_c", "humidity_pct", "wind_speed_ms", "rain_mmh"),
    ),
    "water_main": ("water", "wm", ("pressure_kpa", "flow_ls", "chlorine_mgl", "turbidity_ntu")),
    "substation": ("power", "ps", ("load_mw", "voltage_kv", "frequency_hz")),
}
KIND_ORDER: tuple[str, ...] = tuple(KINDS)

SIZES: dict[str, int] = {"tiny": 120, "small": 400, "medium": 1200, "large": 5000, "xl": 20000}

DEFAULT_CENTRE = (45.7600, 4.8400)  # a plausible mid-latitude river city
DEFAULT_UTC_OFFSET_H = 1.0

_DISTRICT_NAMES = (
    "centrum", "harbour", "riverside", "northgate", "eastfield", "southbank", "westend",
    "hillcrest", "millbrook", "parkview", "oakwood", "brookside", "stonebridge", "greenhill",
    "marketside", "lakeshore", "fairview", "ashford", "kingsmead", "redcliff", "elmgrove",
    "bayfront", "highfield", "cedarvale", "foxley", "ironworks", "meadowbank", "old-quarter",
    "university", "docklands", "station", "westgate", "sunnyside", "larkhill", "thornbury",
    "willowdale", "quarry", "airport-road",
)

_KM_PER_DEG_LAT = 111.32


@dataclass(frozen=True, slots=True)
class District:
    id: str
    name: str
    centre: tuple[float, float]  # lat, lon
    polygon: tuple[tuple[float, float], ...]  # closed ring of (lat, lon)
    ring: int
    a0: float  # angular sector [a0, a1) in radians (ring 0: whole circle)
    a1: float
    r0: float  # radial band [r0, r1) in km
    r1: float


@dataclass(frozen=True, slots=True)
class Road:
    id: str
    road_class: str  # arterial | local
    free_flow_kmh: float
    points: tuple[tuple[float, float], ...]  # (x_km, y_km) in driving order


@dataclass(slots=True)
class Sensor:
    sensor_id: str
    kind: str
    domain: str
    district: str
    lat: float
    lon: float
    x_km: float
    y_km: float
    metrics: tuple[str, ...]
    road_id: str = ""
    road_class: str = ""
    free_flow_kmh: float = 0.0
    upstream: str = ""
    downstream: str = ""
    capacity_vph: float = 0.0
    params: dict[str, float] = field(default_factory=dict)

    @property
    def neighbours(self) -> list[str]:
        """Adjacent loops on the same road, upstream first."""
        return [s for s in (self.upstream, self.downstream) if s]


def _size_to_count(size: str | int) -> int:
    if isinstance(size, str):
        if size.isdigit():
            return int(size)
        try:
            return SIZES[size]
        except KeyError:
            raise BadValue(f"unknown size {size!r}: use {', '.join(SIZES)} or a number") from None
    return int(size)


class City:
    """Districts, roads and sensors; build with :meth:`generate`."""

    def __init__(
        self,
        seed: int,
        size: str | int,
        centre: tuple[float, float],
        utc_offset_h: float,
        districts: list[District],
        roads: list[Road],
        sensors: list[Sensor],
    ) -> None:
        self.seed = seed
        self.size = size
        self.centre = centre
        self.utc_offset_h = utc_offset_h
        self.districts = districts
        self.roads = roads
        self.sensors = sensors  # ordered by KIND_ORDER, then id
        self.by_id: dict[str, Sensor] = {s.sensor_id: s for s in sensors}
        self.index: dict[str, int] = {s.sensor_id: i for i, s in enumerate(sensors)}
        self.kind_slices: dict[str, slice] = {}
        start = 0
        for kind in KIND_ORDER:
            n = sum(1 for s in sensors if s.kind == kind)
            self.kind_slices[kind] = slice(start, start + n)
            start += n
        self.district_ids = [d.id for d in districts]
        dindex = {d: i for i, d in enumerate(self.district_ids)}
        self.district_of = np.array([dindex[s.district] for s in sensors], dtype=np.int32)
        self.xy = np.array([[s.x_km, s.y_km] for s in sensors], dtype=np.float64).reshape(-1, 2)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def generate(
        cls,
        seed: int = 42,
        size: str | int = "small",
        centre: tuple[float, float] = DEFAULT_CENTRE,
        utc_offset_h: float = DEFAULT_UTC_OFFSET_H,
    ) -> City:
        n_total = max(_size_to_count(size), 40)
        rng = np.random.default_rng([seed, n_total, 7])
        n_d = 4 if n_total < 300 else 7 if n_total < 1000 else 13 if n_total < 4000 else (
            19 if n_total < 15000 else 37)
        radius = 3.0 + 1.2 * math.sqrt(n_total / 100.0)
        districts = _make_districts(rng, n_d, radius, centre)
        roads = _make_roads(rng, districts, radius)

        # how many of each kind: fixed minimums per district, the rest are traffic loops
        n_aq = max(n_d, round(0.07 * n_total))
        n_nz = max(n_d, round(0.06 * n_total))
        n_wx = max(1, round(n_d / 3), round(0.01 * n_total))
        n_wm = max(n_d, round(0.14 * n_total))
        n_ps = max(n_d, round(0.05 * n_total))
        n_tl = max(2 * n_d, n_total - n_aq - n_nz - n_wx - n_wm - n_ps)

        sensors: list[Sensor] = []
        sensors += _place_loops(rng, roads, districts, n_tl, centre)
        for kind, n in (("air_quality", n_aq), ("noise", n_nz), ("weather", n_wx),
                        ("water_main", n_wm), ("substation", n_ps)):
            sensors += _place_points(rng, kind, n, districts, radius, centre)
        return cls(seed, size, centre, utc_offset_h, districts, roads, sensors)

    # -- queries --------------------------------------------------------------------------
    def of_kind(self, kind: str) -> list[Sensor]:
        return self.sensors[self.kind_slices[kind]]

    def in_district(self, district: str, kind: str | None = None) -> list[Sensor]:
        return [s for s in self.sensors
                if s.district == district and (kind is None or s.kind == kind)]

    def near(self, sensor_id: str, radius_km: float, kind: str | None = None) -> list[Sensor]:
        """Sensors within ``radius_km`` of a sensor (itself included)."""
        s = self.by_id[sensor_id]
        d = np.hypot(self.xy[:, 0] - s.x_km, self.xy[:, 1] - s.y_km)
        return [self.sensors[i] for i in np.flatnonzero(d <= radius_km)
                if kind is None or self.sensors[i].kind == kind]

    def upstream_chain(self, sensor_id: str, n: int) -> list[str]:
        """Up to ``n`` loops upstream of ``sensor_id`` on the same road, nearest first."""
        out: list[str] = []
        cur = self.by_id[sensor_id].upstream
        while cur and len(out) < n:
            out.append(cur)
            cur = self.by_id[cur].upstream
        return out

    def summary(self) -> dict[str, int]:
        return {k: self.kind_slices[k].stop - self.kind_slices[k].start for k in KIND_ORDER}

    # -- exports --------------------------------------------------------------------------
    REGISTRY_COLUMNS = ("sensor_id", "domain", "kind", "district", "lat", "lon", "metrics",
                        "road_class", "free_flow_kmh", "neighbours", "nominal_kv")

    def write_registry(self, path: str | Path) -> Path:
        """The device registry CSV in the columns of the data contract (docs/DATA_CONTRACTS.md)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(self.REGISTRY_COLUMNS)
            for s in self.sensors:
                traffic = s.domain == "traffic"
                w.writerow([
                    s.sensor_id, s.domain, s.kind, s.district, f"{s.lat:.6f}", f"{s.lon:.6f}",
                    ";".join(s.metrics), s.road_class if traffic else "",
                    f"{s.free_flow_kmh:g}" if traffic else "",
                    ";".join(s.neighbours) if traffic else "",
                    f"{s.params['nominal_kv']:g}" if "nominal_kv" in s.params else "",
                ])
        return path

    def districts_geojson(self) -> dict:
        feats = []
        for d in self.districts:
            ring = [[lon, lat] for lat, lon in d.polygon]
            feats.append({
                "type": "Feature", "id": d.id,
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"district": d.id, "name": d.name,
                               "centre_lat": d.centre[0], "centre_lon": d.centre[1]},
            })
        return {"type": "FeatureCollection", "features": feats}

    def sensors_geojson(self) -> dict:
        feats = []
        for s in self.sensors:
            props: dict[str, object] = {"sensor_id": s.sensor_id, "domain": s.domain,
                                        "kind": s.kind, "district": s.district,
                                        "metrics": list(s.metrics)}
            if s.domain == "traffic":
                props.update(road_id=s.road_id, road_class=s.road_class,
                             free_flow_kmh=s.free_flow_kmh, neighbours=s.neighbours)
            feats.append({"type": "Feature", "id": s.sensor_id,
                          "geometry": {"type": "Point", "coordinates": [s.lon, s.lat]},
                          "properties": props})
        return {"type": "FeatureCollection", "features": feats}

    def roads_geojson(self) -> dict:
        feats = []
        for r in self.roads:
            coords = [list(reversed(_to_latlon(x, y, self.centre))) for x, y in r.points]
            feats.append({"type": "Feature", "id": r.id,
                          "geometry": {"type": "LineString", "coordinates": coords},
                          "properties": {"road_id": r.id, "road_class": r.road_class,
                                         "free_flow_kmh": r.free_flow_kmh}})
        return {"type": "FeatureCollection", "features": feats}

    def write_geojson(self, directory: str | Path) -> list[Path]:
        """districts.geojson, sensors.geojson and roads.geojson for dashboards."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        out = []
        for name, doc in (("districts", self.districts_geojson()),
                          ("sensors", self.sensors_geojson()), ("roads", self.roads_geojson())):
            p = directory / f"{name}.geojson"
            p.write_text(json.dumps(doc))
            out.append(p)
        return out


# ---------------------------------------------------------------------------------------
# geometry helpers (flat-earth around the centre is fine at city scale)

def _to_latlon(x_km: float, y_km: float, centre: tuple[float, float]) -> tuple[float, float]:
    lat0, lon0 = centre
    lat = lat0 + y_km / _KM_PER_DEG_LAT
    lon = lon0 + x_km / (_KM_PER_DEG_LAT * math.cos(math.radians(lat0)))
    return round(float(lat), 6), round(float(lon), 6)


def _polar(r: float, a: float) -> tuple[float, float]:
    return r * math.cos(a), r * math.sin(a)


def _make_districts(rng: np.random.Generator, n_d: int, radius: float,
                    centre: tuple[float, float]) -> list[District]:
    rings = {4: [1, 3], 7: [1, 6], 13: [1, 6, 6], 19: [1, 6, 12], 37: [1, 6, 12, 18]}[n_d]
    n_rings = len(rings)
    bounds = [0.0, radius * 0.3] + [radius * 0.3 + (radius * 0.7) * i / (n_rings - 1)
                                    for i in range(1, n_rings)]
    names = list(_DISTRICT_NAMES)
    order = rng.permutation(len(names) - 1) + 1  # "centrum" always the centre
    districts: list[District] = []
    for ring, count in enumerate(rings):
        r0, r1 = bounds[ring], bounds[ring + 1]
        offset = float(rng.uniform(0, 2 * math.pi))
        for k in range(count):
            name = "centrum" if ring == 0 else names[order[len(districts) - 1]]
            if ring == 0:
                a0, a1 = 0.0, 2 * math.pi
                poly_xy = [_polar(r1, 2 * math.pi * i / 24) for i in range(24)]
                cx, cy = 0.0, 0.0
            else:
                a0 = offset + 2 * math.pi * k / count
                a1 = offset + 2 * math.pi * (k + 1) / count
                steps = 6
                outer = [_polar(r1, a0 + (a1 - a0) * i / steps) for i in range(steps + 1)]
                inner = [_polar(r0, a1 - (a1 - a0) * i / steps) for i in range(steps + 1)]
                poly_xy = outer + inner
                cx, cy = _polar((r0 + r1) / 2, (a0 + a1) / 2)
            poly = [_to_latlon(x, y, centre) for x, y in poly_xy]
            poly.append(poly[0])
            districts.append(District(
                id=name, name=name.replace("-", " ").title(), centre=_to_latlon(cx, cy, centre),
                polygon=tuple(poly), ring=ring, a0=a0, a1=a1, r0=r0, r1=r1))
    return districts


def _district_at(x: float, y: float, districts: list[District]) -> str:
    """The district containing (x, y); points beyond the edge belong to the outer ring."""
    r = math.hypot(x, y)
    a = math.atan2(y, x)
    outer = max(d.ring for d in districts)
    for d in districts:
        if d.ring == 0:
            if r < d.r1:
                return d.id
            continue
        if d.r0 <= r < d.r1 or (d.ring == outer and r >= d.r1):
            if (a - d.a0) % (2 * math.pi) < (d.a1 - d.a0):
                return d.id
    return districts[0].id


def _make_roads(rng: np.random.Generator, districts: list[District], radius: float) -> list[Road]:
    roads: list[Road] = []
    n_spokes = 6 if radius < 8 else 8
    off = float(rng.uniform(0, 2 * math.pi))
    for i in range(n_spokes):
        a = off + 2 * math.pi * i / n_spokes
        pts = [_polar(radius * 0.97 * j / 12, a + 0.05 * math.sin(j)) for j in range(13)]
        ff = float(rng.choice([50.0, 60.0, 70.0]))
        roads.append(Road(f"a{i + 1:02d}-in", "arterial", ff, tuple(reversed(pts))))
        roads.append(Road(f"a{i + 1:02d}-out", "arterial", ff, tuple(pts)))
    ring_r = radius * 0.55
    ring = [_polar(ring_r, 2 * math.pi * j / 48) for j in range(49)]
    roads.append(Road("ring-cw", "arterial", 70.0, tuple(reversed(ring))))
    roads.append(Road("ring-ccw", "arterial", 70.0, tuple(ring)))
    # local roads: a few short straight streets per district, one direction each
    for d in districts:
        cx, cy = _xy_of(d)
        span = max(0.6, (d.r1 - d.r0) * 0.8) if d.ring else d.r1 * 1.4
        for k in range(4):
            ang = float(rng.uniform(0, math.pi))
            dx, dy = math.cos(ang) * span / 2, math.sin(ang) * span / 2
            ox, oy = rng.normal(0, span / 6, 2)
            p0 = (cx + ox - dx, cy + oy - dy)
            p1 = (cx + ox + dx, cy + oy + dy)
            pts = tuple((p0[0] + (p1[0] - p0[0]) * t / 6, p0[1] + (p1[1] - p0[1]) * t / 6)
                        for t in range(7))
            roads.append(Road(f"l-{d.id}-{k + 1}", "local", float(rng.choice([30.0, 40.0, 50.0])),
                              pts))
    return roads


def _xy_of(d: District) -> tuple[float, float]:
    if d.ring == 0:
        return 0.0, 0.0
    return _polar((d.r0 + d.r1) / 2, (d.a0 + d.a1) / 2)


def _road_length(r: Road) -> float:
    return sum(math.dist(a, b) for a, b in zip(r.points, r.points[1:]))


def _point_along(r: Road, dist: float) -> tuple[float, float]:
    for a, b in zip(r.points, r.points[1:]):
        seg = math.dist(a, b)
        if dist <= seg or b == r.points[-1]:
            t = min(1.0, dist / seg) if seg else 0.0
            return a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t
        dist -= seg
    return r.points[-1]


def _place_loops(rng: np.random.Generator, roads: list[Road], districts: list[District],
                 n: int, centre: tuple[float, float]) -> list[Sensor]:
    """Loops spread along every road in driving order; arterials get ~55% of them."""
    art = [r for r in roads if r.road_class == "arterial"]
    loc = [r for r in roads if r.road_class == "local"]
    n_art = max(len(art) * 2, round(n * 0.55))
    n_loc = max(len(loc) * 1, n - n_art)
    n_art = n - n_loc if n - n_loc >= len(art) * 2 else n_art
    plan: list[tuple[Road, int]] = []
    for group, count in ((art, n_art), (loc, n_loc)):
        lengths = np.array([_road_length(r) for r in group])
        share = np.floor(count * lengths / lengths.sum()).astype(int)
        share = np.maximum(share, 1)
        i = 0
        while share.sum() < count:
            share[i % len(share)] += 1
            i += 1
        while share.sum() > count:
            j = int(np.argmax(share))
            share[j] -= 1
        plan += list(zip(group, share.tolist()))
    sensors: list[Sensor] = []
    seq = 0
    for road, k in plan:
        if k <= 0:
            continue
        length = _road_length(road)
        ids = [f"tl-{seq + j + 1:04d}" for j in range(k)]
        for j in range(k):
            x, y = _point_along(road, length * (j + 0.5) / k)
            lat, lon = _to_latlon(x, y, centre)
            lanes = 2 if road.road_class == "arterial" else 1
            sensors.append(Sensor(
                sensor_id=ids[j], kind="loop", domain="traffic",
                district=_district_at(x, y, districts), lat=lat, lon=lon,
                x_km=float(x), y_km=float(y),
                metrics=KINDS["loop"][2], road_id=road.id, road_class=road.road_class,
                free_flow_kmh=road.free_flow_kmh,
                upstream=ids[j - 1] if j > 0 else "", downstream=ids[j + 1] if j + 1 < k else "",
                capacity_vph=1800.0 * lanes,
                params={"demand": float(rng.uniform(0.55, 1.1))},
            ))
        seq += k
    return sensors


def _place_points(rng: np.random.Generator, kind: str, n: int, districts: list[District],
                  radius: float, centre: tuple[float, float]) -> list[Sensor]:
    domain, prefix, metrics = KINDS[kind]
    out: list[Sensor] = []
    # round-robin over districts first (at least one per district where n allows), then random
    for i in range(n):
        d = districts[i % len(districts)]
        if d.ring == 0:
            r = float(np.sqrt(rng.uniform(0, 1)) * d.r1 * 0.9)
            a = float(rng.uniform(0, 2 * math.pi))
        else:
            r = float(rng.uniform(d.r0 + 0.05 * (d.r1 - d.r0), d.r1 - 0.05 * (d.r1 - d.r0)))
            a = float(d.a0 + (d.a1 - d.a0) * rng.uniform(0.05, 0.95))
        x, y = _polar(r, a)
        lat, lon = _to_latlon(x, y, centre)
        params: dict[str, float] = {}
        if kind == "water_main":
            params = {"static_kpa": float(rng.uniform(420, 560)),
                      "base_flow_ls": float(rng.lognormal(3.0, 0.5)),
                      "chlorine": float(rng.uniform(0.3, 0.8))}
        elif kind == "substation":
            params = {"rating_mw": float(rng.uniform(15, 60)),
                      "nominal_kv": float(rng.choice([10.0, 20.0]))}
        elif kind == "air_quality":
            params = {"exposure": float(rng.uniform(0.6, 1.3))}
        elif kind == "noise":
            params = {"exposure": float(rng.uniform(0.7, 1.2))}
        out.append(Sensor(sensor_id=f"{prefix}-{i + 1:04d}", kind=kind, domain=domain,
                          district=d.id, lat=lat, lon=lon, x_km=float(x), y_km=float(y),
                          metrics=metrics,
                          params=params))
    return out
