"""Optional SUMO mode: traffic loops driven by a real microsimulation (libsumo or TraCI).

Why: the statistical traffic model is cheap and good for load and alert tests; a
microsimulation gives queues that form and dissolve from real vehicle dynamics, which is
the better test for congestion analytics. SUMO builds a small grid (``netgenerate``),
random trips (``randomTrips.py``, demand scaled by our daily profile), and one 3 m
induction loop at the middle of every edge; each is mapped to one of the city's loops. An
accident is a vehicle stopped just downstream of a detector: the queue backs up over it.

SUMO comes from the Debian packages ``sumo`` and ``sumo-tools`` (or the PyPI wheels
``eclipse-sumo`` + ``libsumo``). Its Python modules live in /usr/lib/python3/dist-packages,
which is added to ``sys.path`` here only, at runtime.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from urbanbrain.simulators.city import City
from urbanbrain.simulators.signals import local_time, traffic_profile

SUMO_HOME_CANDIDATES = ("/usr/share/sumo", "/usr/local/share/sumo")
DIST_PACKAGES = "/usr/lib/python3/dist-packages"
LOOP_LENGTH_M = 3.0
VEHICLE_LENGTH_M = 5.0  # SUMO's default passenger car
INSTALL_HINT = ("install SUMO: apt-get install -y --no-install-recommends sumo sumo-tools "
                "(or pip install eclipse-sumo libsumo)")


class SumoUnavailable(RuntimeError):
    """SUMO (binaries, tools or Python bindings) is missing; the message says what to do."""


def sumo_home() -> Path:
    env = os.environ.get("SUMO_HOME")
    for cand in ([env] if env else []) + list(SUMO_HOME_CANDIDATES):
        if cand and (Path(cand) / "tools" / "randomTrips.py").exists():
            return Path(cand)
    raise SumoUnavailable(f"SUMO tools (randomTrips.py) not found; {INSTALL_HINT}")


def load_sumo(prefer_libsumo: bool = True) -> ModuleType:
    """libsumo (in-process, fast) or traci (TCP); raises SumoUnavailable with a hint."""
    if DIST_PACKAGES not in sys.path and Path(DIST_PACKAGES).exists():
        sys.path.append(DIST_PACKAGES)
    errors = []
    for name in (("libsumo", "traci") if prefer_libsumo else ("traci",)):
        try:
            return __import__(name)
        except ImportError as exc:  # noqa: PERF203
            errors.append(f"{name}: {exc}")
    raise SumoUnavailable(f"no SUMO Python bindings ({'; '.join(errors)}); {INSTALL_HINT}")


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise SumoUnavailable(f"{' '.join(argv[:2])} failed ({proc.returncode}): "
                              f"{(proc.stderr or proc.stdout)[-800:]}")


class SumoTraffic:
    """A SUMO grid whose virtual loops stand in for (some of) the city's traffic loops."""

    def __init__(self, city: City, workdir: str | Path, *, seed: int = 42, grid: int = 5,
                 edge_length_m: float = 200.0, interval_s: float = 60.0,
                 start_ms: int = 0, hours: float = 24.0, prefer_libsumo: bool = True) -> None:
        for binary in ("sumo", "netgenerate"):
            if not shutil.which(binary):
                raise SumoUnavailable(f"'{binary}' not found; {INSTALL_HINT}")
        self.home = sumo_home()
        self.traci = load_sumo(prefer_libsumo)
        self.city = city
        self.interval_s = int(interval_s)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, SUMO_HOME=str(self.home))
        net = self.workdir / "grid.net.xml"
        _run(["netgenerate", "--grid", "--grid.number", str(grid), "--grid.length",
              str(edge_length_m), "--default.lanenumber", "1", "--default.speed", "13.89",
              "--no-turnarounds", "true", "-o", str(net)], self.workdir, env)
        trips = self._trips(net, seed, start_ms, hours, env)
        self.lanes = self._detector_lanes(net)
        loops = city.of_kind("loop")
        n = min(len(loops), len(self.lanes))
        self.loop_index = np.arange(n)  # city loops 0..n-1 are driven by SUMO
        self.loop_ids = [loops[i].sensor_id for i in range(n)]
        self.detectors = [f"loop_{lane}" for lane, _ in self.lanes[:n]]
        self.ff = np.array([loops[i].free_flow_kmh for i in range(n)])
        self.traci.start(["sumo", "-n", str(net), "-r", trips,
                          "--step-length", "1", "--no-step-log", "true", "--no-warnings", "true",
                          "--ignore-route-errors", "true", "--time-to-teleport", "600",
                          "--seed", str(seed)])
        self._stopped: dict[str, tuple[str, int]] = {}  # incident id -> (vehicle, end step)
        self._pending: dict[str, tuple[int, float]] = {}  # incident id -> (detector, duration)
        self._on_loop: list[tuple[str, ...]] = [()] * len(self.detectors)

    def _trips(self, net: Path, seed: int, start_ms: int, hours: float,
               env: dict[str, str]) -> str:
        """Random trips per hour, their rate following the city's daily traffic profile.

        Returns the comma-separated list of trip files (SUMO reads them side by side).
        """
        parts = []
        for h in range(max(1, int(np.ceil(hours)))):
            hod, dow = local_time(start_ms + h * 3_600_000, self.city.utc_offset_h)
            period = max(0.5, 1.5 / max(traffic_profile(hod, dow), 0.05))
            part = self.workdir / f"trips_{h:03d}.trips.xml"
            _run([sys.executable, str(self.home / "tools" / "randomTrips.py"), "-n", str(net),
                  "-o", str(part), "--seed", str(seed + h), "-b", str(h * 3600), "-e",
                  str((h + 1) * 3600), "-p", f"{period:.3f}", "--prefix", f"h{h}_",
                  "--min-distance", "300"], self.workdir, env)
            parts.append(str(part))
        return ",".join(parts)

    def _detector_lanes(self, net: Path) -> list[tuple[str, float]]:
        import xml.etree.ElementTree as ET

        lanes = []
        for edge in ET.parse(net).getroot().iter("edge"):
            if edge.get("function") == "internal":
                continue
            lane = edge.find("lane")
            if lane is not None:
                lanes.append((lane.get("id"), float(lane.get("length"))))
        return sorted(lanes)

    # -- per tick -------------------------------------------------------------------------
    def step(self) -> np.ndarray:
        """Advance one interval; [n, 4] count, occupancy %, speed km/h, flow veh/h.

        The loop is measured from vehicle positions every step, as a 3 m loop at mid-edge
        (SUMO's E1 is a point, which a standing queue can straddle in the 2.5 m gaps
        between cars; and 1.15's libsumo lacks the ``getLastInterval*`` getters).
        """
        tr = self.traci
        lane_ids, get_pos, get_speed = (tr.lane.getLastStepVehicleIDs,
                                        tr.vehicle.getLanePosition, tr.vehicle.getSpeed)
        n = len(self.detectors)
        count = np.zeros(n)  # distinct vehicles that entered the loop
        occ = np.zeros(n)  # steps the loop was covered
        speed_sum = np.zeros(n)  # speeds of vehicles over the loop, sampled every step
        samples = np.zeros(n)
        half = LOOP_LENGTH_M / 2
        for _ in range(self.interval_s):
            tr.simulationStep()
            self._release()
            for k in range(n):
                lane, length = self.lanes[k]
                det = length / 2
                over = []
                for v in lane_ids(lane):
                    p = get_pos(v)  # front bumper
                    if p >= det - half and p - VEHICLE_LENGTH_M <= det + half:
                        over.append(v)
                if not over:
                    self._on_loop[k] = ()
                    continue
                occ[k] += 1
                prev = self._on_loop[k]
                count[k] += sum(1 for v in over if v not in prev)
                self._on_loop[k] = tuple(over)
                for v in over:
                    speed_sum[k] += get_speed(v)
                    samples[k] += 1
        occ *= 100.0
        occ /= self.interval_s
        # a loop nobody drove over reads free-flow speed (what a real loop would report as
        # "no data"; we keep the metric defined)
        speed = np.where(samples > 0, speed_sum / np.maximum(samples, 1) * 3.6, self.ff)
        out = np.empty((n, 4))
        out[:, 0] = count
        out[:, 1] = np.round(np.clip(occ, 0, 100), 1)
        out[:, 2] = np.round(speed, 1)
        out[:, 3] = np.round(count * 3600.0 / self.interval_s, 0)
        return out

    def block(self, incident_id: str, sensor_id: str, duration_s: float) -> None:
        """An accident: the next vehicle past the detector of ``sensor_id`` stops there.

        Stopping it downstream of the loop makes the queue grow back over the loop and on
        to the upstream edges. Applied at the next step a vehicle is available.
        """
        k = self.loop_ids.index(sensor_id)
        self._pending[incident_id] = (k, duration_s)

    def _try_pending(self) -> None:
        tr = self.traci
        for inc, (k, duration_s) in list(self._pending.items()):
            lane, length = self.lanes[k]
            for vid in tr.lane.getLastStepVehicleIDs(lane):
                if length / 2 + 6 < tr.vehicle.getLanePosition(vid) < length / 2 + 30:
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
        try:
            self.traci.close()
        except Exception:  # noqa: BLE001
            pass
