"""SUMO mode: traffic loops read from SUMO's own E1 induction loops (libsumo or TraCI).

Why: the statistical traffic model is cheap and good for load and alert tests; a
microsimulation gives queues that form and dissolve from real vehicle dynamics, which is
the better test for congestion analytics. A traffic engineer trusts such data only if it is
what the simulator's detectors measured, so every loop value here is SUMO's E1 (induction
loop) value of the interval, never something sampled or made up:

* **count** = E1 ``nVehContrib`` (vehicles whose back left the loop in the interval);
* **speed** = E1 ``speed``: the arithmetic mean of the passing vehicles' speeds (time-mean
  speed), and **no speed at all** when no vehicle passed (E1 writes -1; we send nothing);
* **occupancy** = E1 ``occupancy`` (% of the interval the loop was covered);
* **flow** = count × 3600 / interval, as E1's ``flow``.

SUMO 1.15's libsumo has no per-interval getters, so :class:`E1Reader` rebuilds each
interval from ``inductionloop.getVehicleData`` of every step with the arithmetic of SUMO's
``MSInductLoop::writeXMLOutput`` (entry and leave times are interpolated inside the step by
SUMO itself; a vehicle's speed is its length over its time on the loop). The same run writes
SUMO's own E1 XML, and tests hold the published values equal to it.

Point loops (E1 ``length`` 0, SUMO's default) measure speed right; a loop of length L reports
a vehicle of length l at l / (l + L) of its speed (5/8 for a 3 m loop and a 5 m car), so
:func:`read_loops` warns about such loops.

Scenarios: the built-in grid (``netgenerate`` + ``randomTrips.py`` with demand following the
city's daily profile + one point loop per lane at mid-edge), or a user's own network, routes
or trips, and additional files holding their detectors. Loops are placed on the map from the
network's geometry (geo-referenced nets: linear between ``convBoundary`` and
``origBoundary``; plain nets: metres around the city centre), take the city district they
fall in, their lane's speed limit as free-flow speed, and replace the city's first loops, so
the registry the simulator writes describes them.

SUMO comes from the Debian packages ``sumo`` and ``sumo-tools`` (or the PyPI wheels
``eclipse-sumo`` + ``libsumo``). Its Python modules live in /usr/lib/python3/dist-packages,
which is added to ``sys.path`` here only, at runtime.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from urbanbrain.simulators.city import KINDS, City, _district_at
from urbanbrain.simulators.signals import local_time, traffic_profile

log = logging.getLogger(__name__)

SUMO_HOME_CANDIDATES = ("/usr/share/sumo", "/usr/local/share/sumo")
DIST_PACKAGES = "/usr/lib/python3/dist-packages"
INSTALL_HINT = ("install SUMO: apt-get install -y --no-install-recommends sumo sumo-tools "
                "(or pip install eclipse-sumo libsumo)")
_KM_PER_DEG_LAT = 111.32
_BAD_ID = re.compile(r"[\x00-\x1f\x7f\\+#/,\s\"=]")
#: XML output of the built-in grid's loops, beside the network (tests compare against it)
E1_OUTPUT = "e1.xml"


class SumoUnavailable(RuntimeError):
    """SUMO (binaries, tools or Python bindings) is missing; the message says what to do."""


class SumoScenarioError(ValueError):
    """A user's scenario can't be used as given (missing file, no loops, bad ids)."""


def sumo_home() -> Path:
    env = os.environ.get("SUMO_HOME")
    for cand in ([env] if env else []) + list(SUMO_HOME_CANDIDATES):
        if cand and (Path(cand) / "tools" / "randomTrips.py").exists():
            return Path(cand)
    raise SumoUnavailable(f"SUMO tools (randomTrips.py) not found; {INSTALL_HINT}")


def _add_dist_packages() -> None:
    if DIST_PACKAGES not in sys.path and Path(DIST_PACKAGES).exists():
        sys.path.append(DIST_PACKAGES)


def load_sumo(prefer_libsumo: bool = True) -> ModuleType:
    """libsumo (in-process, fast) or traci (TCP); raises SumoUnavailable with a hint."""
    _add_dist_packages()
    errors = []
    for name in (("libsumo", "traci") if prefer_libsumo else ("traci",)):
        try:
            return __import__(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise SumoUnavailable(f"no SUMO Python bindings ({'; '.join(errors)}); {INSTALL_HINT}")


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    if proc.returncode != 0:
        raise SumoUnavailable(f"{' '.join(argv[:2])} failed ({proc.returncode}): "
                              f"{(proc.stderr or proc.stdout)[-800:]}")


# -- scenario ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Scenario:
    """What SUMO runs: a network, route/trip files and additional files (the detectors)."""

    net: Path
    routes: tuple[Path, ...]
    additional: tuple[Path, ...]
    e1_output: Path | None = None  # SUMO's own XML of the built-in loops (None: user's files)

    @classmethod
    def user(cls, net: str | Path, routes: Sequence[str | Path],
             additional: Sequence[str | Path]) -> Scenario:
        """A user's scenario; every file must exist and there must be detectors."""
        paths = [Path(net)] + [Path(p) for p in routes] + [Path(p) for p in additional]
        for p in paths:
            if not p.is_file():
                raise SumoScenarioError(f"{p}: no such file")
        if not routes:
            raise SumoScenarioError("a scenario needs --routes or --trips (route/trip files)")
        if not additional:
            raise SumoScenarioError("a scenario needs --additional with E1 induction loops")
        return cls(Path(net).resolve(), tuple(Path(p).resolve() for p in routes),
                   tuple(Path(p).resolve() for p in additional))


def grid_scenario(workdir: str | Path, *, seed: int = 42, grid: int = 5,
                  edge_length_m: float = 200.0, lane_speed_ms: float = 13.89,
                  interval_s: int = 60, start_ms: int = 0, hours: float = 24.0,
                  utc_offset_h: float = 1.0) -> Scenario:
    """The built-in scenario: a ``grid`` × ``grid`` network, random trips whose hourly rate
    follows the city's daily traffic profile, and one point E1 loop at the middle of every
    lane writing SUMO's XML every ``interval_s`` to ``e1.xml`` beside the network."""
    for binary in ("netgenerate",):
        if not shutil.which(binary):
            raise SumoUnavailable(f"'{binary}' not found; {INSTALL_HINT}")
    home = sumo_home()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, SUMO_HOME=str(home))
    net = workdir / "grid.net.xml"
    _run(["netgenerate", "--grid", "--grid.number", str(grid), "--grid.length",
          str(edge_length_m), "--default.lanenumber", "1", "--default.speed", str(lane_speed_ms),
          "--no-turnarounds", "true", "-o", str(net)], workdir, env)
    parts = []
    for h in range(max(1, int(np.ceil(hours)))):
        hod, dow = local_time(start_ms + h * 3_600_000, utc_offset_h)
        period = max(0.5, 1.5 / max(traffic_profile(hod, dow), 0.05))
        part = workdir / f"trips_{h:03d}.trips.xml"
        _run([sys.executable, str(home / "tools" / "randomTrips.py"), "-n", str(net),
              "-o", str(part), "--seed", str(seed + h), "-b", str(h * 3600), "-e",
              str((h + 1) * 3600), "-p", f"{period:.3f}", "--prefix", f"h{h}_",
              "--min-distance", "300"], workdir, env)
        parts.append(part)
    add = workdir / "loops.add.xml"
    root = ET.Element("additional")
    for edge in ET.parse(net).getroot().iter("edge"):
        if edge.get("function") == "internal":
            continue
        for lane in edge.findall("lane"):
            lid = lane.get("id", "")
            ET.SubElement(root, "inductionLoop", id=f"e1_{lid}", lane=lid,
                          pos=f"{float(lane.get('length', '0')) / 2:.2f}",
                          freq=str(int(interval_s)), file=E1_OUTPUT)
    ET.ElementTree(root).write(add, encoding="utf-8", xml_declaration=True)
    return Scenario(net, tuple(parts), (add,), workdir / E1_OUTPUT)


# -- loops and geometry -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class E1Loop:
    """An E1 detector of the scenario, placed on the map."""

    det_id: str
    lane: str
    edge: str
    pos_m: float
    length_m: float  # 0 = a point loop
    x_m: float  # network coordinates
    y_m: float
    lane_speed_kmh: float  # the lane's speed limit: the loop's free-flow speed


@dataclass(frozen=True, slots=True)
class NetGeometry:
    """Network coordinates → lat/lon. Geo-referenced nets map linearly from convBoundary to
    origBoundary (a UTM patch of a city is flat to a few metres); plain nets are laid out in
    metres with their centre on ``centre``."""

    conv: tuple[float, float, float, float]
    orig: tuple[float, float, float, float] | None  # lon0, lat0, lon1, lat1

    @classmethod
    def of(cls, net: Path) -> NetGeometry:
        for _, el in ET.iterparse(net, events=("start",)):
            if el.tag == "location":
                conv = tuple(float(v) for v in el.get("convBoundary", "0,0,0,0").split(","))
                proj = el.get("projParameter", "!")
                orig = None
                if proj not in ("!", "") and el.get("origBoundary"):
                    orig = tuple(float(v) for v in el.get("origBoundary", "").split(","))
                return cls(conv, orig)  # type: ignore[arg-type]
            if el.tag in ("edge", "junction"):
                break
        return cls((0.0, 0.0, 0.0, 0.0), None)

    @property
    def georeferenced(self) -> bool:
        return self.orig is not None

    def centre_latlon(self) -> tuple[float, float] | None:
        if self.orig is None:
            return None
        lon0, lat0, lon1, lat1 = self.orig
        return ((lat0 + lat1) / 2, (lon0 + lon1) / 2)

    def latlon(self, x: float, y: float, centre: tuple[float, float]) -> tuple[float, float]:
        x0, y0, x1, y1 = self.conv
        if self.orig is not None and x1 > x0 and y1 > y0:
            lon0, lat0, lon1, lat1 = self.orig
            return (lat0 + (y - y0) / (y1 - y0) * (lat1 - lat0),
                    lon0 + (x - x0) / (x1 - x0) * (lon1 - lon0))
        dx_km, dy_km = (x - (x0 + x1) / 2) / 1000.0, (y - (y0 + y1) / 2) / 1000.0
        lat = centre[0] + dy_km / _KM_PER_DEG_LAT
        return lat, centre[1] + dx_km / (_KM_PER_DEG_LAT * math.cos(math.radians(centre[0])))


def _position(shape: list[tuple[float, float]], offset: float) -> tuple[float, float]:
    """The point ``offset`` metres along a polyline (clamped to its ends)."""
    for (ax, ay), (bx, by) in zip(shape, shape[1:]):
        seg = math.hypot(bx - ax, by - ay)
        if offset <= seg:
            t = offset / seg if seg else 0.0
            return ax + (bx - ax) * t, ay + (by - ay) * t
        offset -= seg
    return shape[-1]


def read_loops(net: Path, additional: Sequence[Path]) -> list[E1Loop]:
    """The E1 detectors (``inductionLoop``/``e1Detector``) of ``additional``, placed on the
    lanes of ``net``. Raises :class:`SumoScenarioError` for a loop on an unknown lane or an id
    that can't be a sensor id; warns about loops with a length (biased speeds)."""
    lanes: dict[str, tuple[str, float, float, list[tuple[float, float]]]] = {}
    for edge in ET.parse(net).getroot().iter("edge"):
        for lane in edge.findall("lane"):
            shape = [tuple(float(c) for c in p.split(",")[:2])
                     for p in lane.get("shape", "").split()]
            lanes[lane.get("id", "")] = (edge.get("id", ""), float(lane.get("length", "0")),
                                         float(lane.get("speed", "0")), shape)  # type: ignore[misc]
    loops: list[E1Loop] = []
    seen: set[str] = set()
    for path in additional:
        for el in ET.parse(path).getroot().iter():
            if el.tag not in ("inductionLoop", "e1Detector"):
                continue
            det, lane = el.get("id", ""), el.get("lane", "")
            where = f"{path}: {el.tag} {det!r}"
            if not det or _BAD_ID.search(det) or len(det) > 128:
                raise SumoScenarioError(f"{where}: the id must be a valid sensor id (no spaces, "
                                        "commas, quotes, '=', '/', '+', '#' or backslash)")
            if det in seen:
                raise SumoScenarioError(f"{where}: duplicate detector id")
            seen.add(det)
            if lane not in lanes:
                raise SumoScenarioError(f"{where}: lane {lane!r} is not in {net.name}")
            edge, length, speed_ms, shape = lanes[lane]
            pos = float(el.get("pos", "0"))
            if pos < 0:
                pos += length
            det_len = float(el.get("length", "0") or 0)
            if det_len > 0:
                log.warning("%s has length %.1f m: SUMO reports a vehicle of length l at "
                            "l/(l+%.1f) of its speed; use point loops (no length) for speed",
                            where, det_len, det_len)
            scale = (sum(math.dist(a, b) for a, b in zip(shape, shape[1:])) / length
                     if length and len(shape) > 1 else 1.0)
            x, y = _position(shape, pos * scale) if shape else (0.0, 0.0)
            loops.append(E1Loop(det, lane, edge, pos, det_len, x, y, round(speed_ms * 3.6, 2)))
    if not loops:
        raise SumoScenarioError(f"no E1 induction loops (inductionLoop/e1Detector) in "
                                f"{', '.join(str(p) for p in additional)}")
    return sorted(loops, key=lambda lp: lp.det_id)


def road_class_of(free_flow_kmh: float) -> str:
    """A road class from a speed limit, for rules that select on it (the free-flow speed
    itself comes from the lane)."""
    if free_flow_kmh >= 85:
        return "motorway"
    if free_flow_kmh >= 55:
        return "arterial"
    if free_flow_kmh >= 40:
        return "collector"
    return "local"


def attach_loops(city: City, loops: Sequence[E1Loop], geometry: NetGeometry) -> np.ndarray:
    """Make the city's first ``len(loops)`` traffic loops *be* the SUMO loops: id, place,
    district (by geometry), free-flow speed and road class (by lane), neighbours (loops
    before/after on the same lane). Returns their indices among the city's loops.

    Must run before anything indexes the city's sensors (registry, schedule, encoders)."""
    city_loops = city.of_kind("loop")
    if len(loops) > len(city_loops):
        raise SumoScenarioError(f"{len(loops)} SUMO loops but the city has only "
                                f"{len(city_loops)} traffic loops: use a larger --size")
    ids = [lp.det_id for lp in loops]
    clash = set(ids) & {s.sensor_id for s in city.sensors[len(loops):]}
    if clash:
        raise SumoScenarioError(f"detector ids {sorted(clash)[:5]} clash with city sensor ids")
    by_lane: dict[str, list[E1Loop]] = {}
    for lp in loops:
        by_lane.setdefault(lp.lane, []).append(lp)
    order = {lp.det_id: i for lane in by_lane.values()
             for i, lp in enumerate(sorted(lane, key=lambda q: q.pos_m))}
    cos0 = math.cos(math.radians(city.centre[0]))
    for k, lp in enumerate(loops):
        s = city_loops[k]
        lat, lon = geometry.latlon(lp.x_m, lp.y_m, city.centre)
        x_km = (lon - city.centre[1]) * _KM_PER_DEG_LAT * cos0
        y_km = (lat - city.centre[0]) * _KM_PER_DEG_LAT
        lane = sorted(by_lane[lp.lane], key=lambda q: q.pos_m)
        i = order[lp.det_id]
        s.sensor_id = lp.det_id
        s.lat, s.lon = round(lat, 6), round(lon, 6)
        s.x_km, s.y_km = x_km, y_km
        s.district = _district_at(x_km, y_km, city.districts)
        s.road_id = lp.edge
        s.free_flow_kmh = lp.lane_speed_kmh
        s.road_class = road_class_of(lp.lane_speed_kmh)
        s.upstream = lane[i - 1].det_id if i > 0 else ""
        s.downstream = lane[i + 1].det_id if i + 1 < len(lane) else ""
        s.metrics = KINDS["loop"][2]
    city.__init__(city.seed, city.size, city.centre, city.utc_offset_h,  # type: ignore[misc]
                  city.districts, city.roads, city.sensors)  # re-index ids and districts
    return np.arange(len(loops))


# -- E1 values per interval ---------------------------------------------------------------------
class E1Reader:
    """Per-interval E1 values (as SUMO's XML output writes them) from per-step vehicle data.

    Call :meth:`step` after every simulation step and :meth:`interval` at the interval's
    end. Mirrors ``MSInductLoop::writeXMLOutput`` of SUMO 1.15: vehicles that left the loop
    in the interval contribute count and speed (length / time on the loop); occupancy adds
    each one's time on the loop inside the interval, plus the time of those still on it.
    A vehicle that left the lane without crossing the loop (lane change, teleport) is not
    reported by ``getVehicleData`` and so neither counted nor timed (E1 times it).
    """

    def __init__(self, traci: ModuleType, det_ids: Sequence[str]) -> None:
        self.get = traci.inductionloop.getVehicleData
        self.now = traci.simulation.getTime
        self.ids = list(det_ids)
        n = len(self.ids)
        self.count = np.zeros(n)
        self.speed_sum = np.zeros(n)
        self.occ_s = np.zeros(n)
        self.on: list[dict[str, float]] = [{} for _ in range(n)]  # vehicle → entry time
        self.left_last: list[frozenset[str]] = [frozenset()] * n  # reported last step
        self.start: float | None = None

    def step(self) -> None:
        t = self.now()
        if self.start is None:
            self.start = t - 1.0 if t >= 1.0 else 0.0
        start = self.start
        get = self.get
        for k, det in enumerate(self.ids):
            data = get(det)
            if not data:
                if self.left_last[k]:
                    self.left_last[k] = frozenset()
                continue
            left = []
            on = self.on[k]
            for vid, length, entry, leave, _type in data:
                if leave >= 0:
                    left.append(vid)
                    if vid in self.left_last[k]:
                        continue  # the same passage, reported again
                    self.count[k] += 1
                    self.speed_sum[k] += length / max(leave - entry, 1e-9)
                    self.occ_s[k] += leave - max(start, entry)
                    on.pop(vid, None)
                else:
                    on[vid] = entry
            self.left_last[k] = frozenset(left)

    def interval(self, length_s: float) -> np.ndarray:
        """[n, 4] vehicle_count, occupancy_pct, speed_kmh (NaN: no vehicle), flow_vph of the
        interval ending now; starts the next one."""
        end = self.now()
        start = end - length_s
        occ = self.occ_s.copy()
        for k, on in enumerate(self.on):
            if on:
                occ[k] += sum(end - max(start, e) for e in on.values())
        out = np.empty((len(self.ids), 4))
        out[:, 0] = self.count
        out[:, 1] = np.clip(occ / length_s * 100.0, 0.0, 100.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, 2] = np.where(self.count > 0, self.speed_sum / self.count * 3.6, np.nan)
        out[:, 3] = self.count * 3600.0 / length_s
        self.count[:] = 0
        self.speed_sum[:] = 0
        self.occ_s[:] = 0
        self.start = end
        return out


def read_e1_xml(path: str | Path) -> dict[tuple[str, float], dict[str, float]]:
    """SUMO's E1 XML output: (detector id, interval begin s) → its attributes as numbers."""
    out = {}
    for it in ET.parse(path).getroot().iter("interval"):
        attrs = {k: float(v) for k, v in it.attrib.items() if k not in ("id",)}
        out[(it.get("id", ""), float(it.get("begin", "0")))] = attrs
    return out


# -- the driver -------------------------------------------------------------------------------
class SumoTraffic:
    """SUMO's E1 loops standing in for (the first) traffic loops of the city."""

    def __init__(self, city: City, workdir: str | Path, *, seed: int = 42, grid: int = 5,
                 edge_length_m: float = 200.0, interval_s: float = 60.0,
                 start_ms: int = 0, hours: float = 24.0, prefer_libsumo: bool = True,
                 scenario: Scenario | None = None) -> None:
        if not shutil.which("sumo"):
            raise SumoUnavailable(f"'sumo' not found; {INSTALL_HINT}")
        self.traci = load_sumo(prefer_libsumo)
        self.city = city
        self.interval_s = int(interval_s)
        if self.interval_s != interval_s or self.interval_s < 1:
            raise SumoScenarioError("SUMO mode needs a whole number of seconds per interval")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.scenario = scenario or grid_scenario(
            self.workdir, seed=seed, grid=grid, edge_length_m=edge_length_m,
            interval_s=self.interval_s, start_ms=start_ms, hours=hours,
            utc_offset_h=city.utc_offset_h)
        sc = self.scenario
        self.loops = read_loops(sc.net, sc.additional)
        self.geometry = NetGeometry.of(sc.net)
        self.loop_index = attach_loops(city, self.loops, self.geometry)
        self.loop_ids = [lp.det_id for lp in self.loops]
        self.traci.start(["sumo", "-n", str(sc.net), "-r", ",".join(map(str, sc.routes)),
                          "-a", ",".join(map(str, sc.additional)),
                          "--step-length", "1", "--no-step-log", "true", "--no-warnings", "true",
                          "--ignore-route-errors", "true", "--time-to-teleport", "600",
                          "--precision", "6", "--xml-validation", "never", "--seed", str(seed)])
        self.reader = E1Reader(self.traci, self.loop_ids)
        self._stopped: dict[str, tuple[str, int]] = {}  # incident id -> (vehicle, end step)
        self._pending: dict[str, tuple[int, float]] = {}  # incident id -> (loop, duration)

    # -- per tick -------------------------------------------------------------------------
    def step(self) -> np.ndarray:
        """Advance one interval; [n, 4] count, occupancy %, speed km/h (NaN when no vehicle
        passed), flow veh/h: the E1 values of the interval."""
        tr, reader = self.traci, self.reader
        for _ in range(self.interval_s):
            tr.simulationStep()
            self._release()
            reader.step()
        return reader.interval(self.interval_s)

    def block(self, incident_id: str, sensor_id: str, duration_s: float) -> None:
        """An accident: the next vehicle reaching the loop of ``sensor_id`` stops on it.

        Stopped over the loop, it holds the loop occupied (a stopped car *behind* a point
        loop can leave it in a 2.5 m gap of the queue, reading empty); the queue grows back
        on to the upstream edges. Applied at the first step a vehicle's body covers the
        loop."""
        k = self.loop_ids.index(sensor_id)
        self._pending[incident_id] = (k, duration_s)

    def _try_pending(self) -> None:
        tr = self.traci
        for inc, (k, duration_s) in list(self._pending.items()):
            lp = self.loops[k]
            for vid in tr.lane.getLastStepVehicleIDs(lp.lane):
                front = tr.vehicle.getLanePosition(vid)
                if front > lp.pos_m + 0.5 and front - tr.vehicle.getLength(vid) < lp.pos_m - 0.5:
                    tr.vehicle.setSpeedMode(vid, 0)
                    tr.vehicle.setSpeed(vid, 0.0)
                    self._stopped[inc] = (vid, int(tr.simulation.getTime() + duration_s))
                    del self._pending[inc]
                    break

    def _release(self) -> None:
        if self._pending:
            self._try_pending()
        if not self._stopped:
            return
        now = self.traci.simulation.getTime()
        for inc, (vid, end) in list(self._stopped.items()):
            if now >= end:
                try:
                    self.traci.vehicle.setSpeed(vid, -1)
                    self.traci.vehicle.setSpeedMode(vid, 31)
                except Exception:  # noqa: BLE001 - the vehicle may have left/teleported
                    pass
                del self._stopped[inc]

    def close(self) -> None:
        """End SUMO (this also flushes its XML output)."""
        try:
            self.traci.close()
        except Exception:  # noqa: BLE001
            pass
