"""Incidents with ground truth: what happened, when, where, and which sensors show it.

Alert rules and anomaly detectors are judged against this ground truth (backtests), so an
incident's ``sensors`` lists exactly the sensors whose readings it changes, and its effect
is strong enough to be visible there and absent elsewhere.

Kinds and signatures:
- ``accident``: speed collapses and occupancy rises at a loop; the queue grows upstream one
  loop every ``propagation_s`` (default 150 s) through the road's ``upstream`` chain.
- ``congestion``: a stretch of consecutive loops on one road slows down (an event, works).
- ``pollution``: PM2.5/PM10 (and NO2) of a district's air-quality stations rise several-fold.
- ``water_burst``: pressure drops at the burst main and the mains around it, flow spikes
  at the burst main, turbidity rises.
- ``power_outage``: a substation's voltage collapses and its load falls to zero; a minute
  later every other sensor of the area (same district, within ``radius_km``) goes silent.
- ``voltage_excursion``: a substation's voltage is held 9 % x severity off nominal, below
  (``direction="under"``, e.g. a stuck tap changer) or above (``"over"``, e.g. a capacitor
  bank left in at light load), for the incident's duration.
- ``frequency_excursion``: the grid frequency, seen by every substation of the city, sits
  0.3 Hz x severity below 50 Hz (loss of a large infeed, slow recovery); city-wide, so the
  incident's district is "".
- ``backhaul_loss``: every substation of a district stops reporting (the SCADA backhaul of
  the district is down); the grid itself is fine.

A :class:`Schedule` is either explicit or generated day by day from the seed (so an
endless live run and an offline run with the same seed produce the same incidents).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from urbanbrain.errors import BadValue
from urbanbrain.simulators.city import City

KINDS = ("accident", "congestion", "pollution", "water_burst", "power_outage",
         "voltage_excursion", "frequency_excursion", "backhaul_loss")
DAY_MS = 86_400_000

# expected incidents per simulated day, scaled by city size for the local ones
DEFAULT_RATES: dict[str, float] = {
    "accident": 4.0, "congestion": 2.0, "pollution": 0.4, "water_burst": 0.4, "power_outage": 0.3,
    "voltage_excursion": 0.3, "frequency_excursion": 0.05, "backhaul_loss": 0.1,
}
LOCAL_KINDS = ("accident", "congestion", "water_burst", "power_outage", "voltage_excursion",
               "backhaul_loss")  # rates scale with the city's size


@dataclass
class Incident:
    incident_id: str
    kind: str
    start_ms: int
    end_ms: int
    district: str
    sensors: list[str]  # every sensor whose readings this incident changes (ground truth)
    epicentre: str = ""  # where it starts (loop, main, substation); "" for district-wide
    severity: float = 1.0
    details: dict = field(default_factory=dict)

    def to_record(self) -> dict:
        return asdict(self)


def _active(t: int, start: int, end: int) -> bool:
    return start <= t < end


class IncidentEngine:
    """Applies active incidents to a tick's value matrices and silences sensors."""

    def __init__(self, city: City, incidents: list[Incident] | None = None,
                 propagation_s: float = 150.0) -> None:
        self.city = city
        self.propagation_ms = int(propagation_s * 1000)
        self.incidents: list[Incident] = []
        self._loop_index = {s.sensor_id: i for i, s in enumerate(city.of_kind("loop"))}
        self._local = {k: {s.sensor_id: i for i, s in enumerate(city.of_kind(k))}
                       for k in ("air_quality", "water_main", "substation")}
        for inc in incidents or []:
            self.add(inc)

    def add(self, inc: Incident) -> None:
        self.incidents.append(inc)

    def prune(self, t_ms: int) -> None:
        self.incidents = [i for i in self.incidents if i.end_ms > t_ms]

    def active(self, t_ms: int) -> list[Incident]:
        return [i for i in self.incidents if _active(t_ms, i.start_ms, i.end_ms)]

    # -- traffic --------------------------------------------------------------------------
    def traffic_effects(self, t_ms: int, n_loops: int) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray] | None:
        """(flow factor, speed factor, occupancy floor) per loop, or None if nothing active."""
        flow_f = speed_f = occ_floor = None
        for inc in self.incidents:
            if inc.kind not in ("accident", "congestion") or not _active(
                    t_ms, inc.start_ms, inc.end_ms):
                continue
            if flow_f is None:
                flow_f, speed_f, occ_floor = np.ones(n_loops), np.ones(n_loops), np.zeros(n_loops)
            if inc.kind == "accident":
                for k, sid in enumerate(inc.sensors):
                    if t_ms < inc.start_ms + k * self.propagation_ms:
                        break
                    i = self._loop_index[sid]
                    sev = inc.severity * (0.93 ** k)
                    speed_f[i] = min(speed_f[i], 1.0 - 0.82 * sev)
                    flow_f[i] = min(flow_f[i], 1.0 - 0.55 * sev)
                    occ_floor[i] = max(occ_floor[i], 35.0 + 40.0 * sev)
            else:
                for sid in inc.sensors:
                    i = self._loop_index[sid]
                    speed_f[i] = min(speed_f[i], 1.0 - 0.5 * inc.severity)
                    flow_f[i] = min(flow_f[i], 1.0 - 0.2 * inc.severity)
                    occ_floor[i] = max(occ_floor[i], 25.0 + 20.0 * inc.severity)
        if flow_f is None:
            return None
        return flow_f, speed_f, occ_floor

    # -- the others ------------------------------------------------------------------------
    def apply_others(self, t_ms: int, values: dict[str, np.ndarray]) -> None:
        """Pollution, bursts and outages on the environment/water/power matrices (in place)."""
        for inc in self.incidents:
            if not _active(t_ms, inc.start_ms, inc.end_ms):
                continue
            if inc.kind == "pollution":
                # ramp up over the first quarter, down over the last quarter
                span = inc.end_ms - inc.start_ms
                ramp = min(1.0, (t_ms - inc.start_ms) / (0.25 * span),
                           (inc.end_ms - t_ms) / (0.25 * span))
                f = 1.0 + inc.severity * 3.0 * max(ramp, 0.15)
                idx = [self._local["air_quality"][s] for s in inc.sensors]
                aq = values["air_quality"]
                aq[idx, 0] *= f
                aq[idx, 1] *= 1.0 + (f - 1.0) * 0.8
                aq[idx, 2] *= 1.0 + (f - 1.0) * 0.2
            elif inc.kind == "water_burst":
                wm = values["water_main"]
                for sid in inc.sensors:
                    i = self._local["water_main"][sid]
                    w = inc.details["weights"][sid]
                    wm[i, 0] = max(wm[i, 0] - 220.0 * inc.severity * w, 5.0)
                    if sid == inc.epicentre:
                        wm[i, 1] *= 1.0 + 2.5 * inc.severity
                        wm[i, 3] += 6.0 * inc.severity
                    else:
                        wm[i, 1] *= 1.0 + 0.4 * inc.severity * w
            elif inc.kind == "power_outage":
                i = self._local["substation"][inc.epicentre]
                ps = values["substation"]
                ps[i, 0] = 0.0
                ps[i, 1] = round(ps[i, 1] * 0.01, 3)
            elif inc.kind == "voltage_excursion":
                i = self._local["substation"][inc.epicentre]
                values["substation"][i, 1] *= 1.0 + inc.details["deviation"]
            elif inc.kind == "frequency_excursion":
                idx = [self._local["substation"][s] for s in inc.sensors]
                values["substation"][idx, 2] += inc.details["offset_hz"]

    def silenced(self, t_ms: int) -> list[int]:
        """Global sensor indices that do not report at ``t_ms`` (areas without power, or
        without a backhaul)."""
        out: list[int] = []
        for inc in self.incidents:
            if inc.kind == "power_outage" and _active(
                    t_ms, inc.start_ms + int(inc.details.get("silent_after_s", 60) * 1000),
                    inc.end_ms):
                out += [self.city.index[s] for s in inc.sensors if s != inc.epicentre]
            elif inc.kind == "backhaul_loss" and _active(t_ms, inc.start_ms, inc.end_ms):
                out += [self.city.index[s] for s in inc.sensors]
        return out


# ---------------------------------------------------------------------------------------
# building incidents

def make_incident(city: City, kind: str, start_ms: int, duration_s: float, *,
                  incident_id: str, where: str | None = None, severity: float = 1.0,
                  rng: np.random.Generator | None = None, max_upstream: int = 6,
                  radius_km: float = 1.2, propagation_s: float = 150.0,
                  direction: str | None = None) -> Incident:
    """One incident with its affected sensors resolved from the city model.

    ``where`` is a loop id (accident, congestion), a district id (pollution,
    backhaul_loss), a water main id (water_burst) or a substation id (power_outage,
    voltage_excursion); None picks one with ``rng``. ``direction`` ("under"/"over") is
    the side of a voltage excursion (None: drawn with ``rng``).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    end_ms = start_ms + int(duration_s * 1000)

    def pick(kind_: str) -> str:
        items = city.of_kind(kind_)
        return items[int(rng.integers(len(items)))].sensor_id

    if kind == "accident":
        loop = where or pick("loop")
        reach = min(max_upstream, int((duration_s - 1) // propagation_s))
        chain = [loop] + city.upstream_chain(loop, reach)
        s = city.by_id[loop]
        return Incident(incident_id, kind, start_ms, end_ms, s.district, chain, loop, severity,
                        {"road_id": s.road_id, "propagation_s": propagation_s})
    if kind == "congestion":
        loop = where or pick("loop")
        chain = [loop] + city.upstream_chain(loop, 4)
        s = city.by_id[loop]
        return Incident(incident_id, kind, start_ms, end_ms, s.district, chain, loop,
                        severity * 0.8, {"road_id": s.road_id})
    if kind == "pollution":
        district = where or city.district_ids[int(rng.integers(len(city.district_ids)))]
        stations = [s.sensor_id for s in city.in_district(district, "air_quality")]
        return Incident(incident_id, kind, start_ms, end_ms, district, stations, "", severity)
    if kind == "water_burst":
        main = where or pick("water_main")
        s = city.by_id[main]
        area = [m for m in city.near(main, radius_km, "water_main")]
        weights = {m.sensor_id: round(max(0.35, 1.0 - math.hypot(m.x_km - s.x_km, m.y_km - s.y_km)
                                          / radius_km), 3) for m in area}
        weights[main] = 1.0
        sensors = [main] + sorted(w for w in weights if w != main)
        return Incident(incident_id, kind, start_ms, end_ms, s.district, sensors, main, severity,
                        {"weights": weights, "radius_km": radius_km})
    if kind == "power_outage":
        sub = where or pick("substation")
        s = city.by_id[sub]
        area = [x.sensor_id for x in city.near(sub, radius_km)
                if x.district == s.district and x.sensor_id != sub and x.kind != "substation"]
        return Incident(incident_id, kind, start_ms, end_ms, s.district, [sub] + sorted(area), sub,
                        severity, {"radius_km": radius_km, "silent_after_s": 60})
    if kind == "voltage_excursion":
        sub = where or pick("substation")
        side = direction or ("under" if rng.random() < 0.6 else "over")
        if side not in ("under", "over"):
            raise BadValue(f"voltage excursion direction {side!r}: use under or over")
        dev = round((-0.09 if side == "under" else 0.09) * severity, 4)
        return Incident(incident_id, kind, start_ms, end_ms, city.by_id[sub].district, [sub], sub,
                        severity, {"direction": side, "deviation": dev})
    if kind == "frequency_excursion":
        subs = [s.sensor_id for s in city.of_kind("substation")]
        return Incident(incident_id, kind, start_ms, end_ms, "", subs, "", severity,
                        {"offset_hz": round(-0.3 * severity, 4)})
    if kind == "backhaul_loss":
        district = where or city.district_ids[int(rng.integers(len(city.district_ids)))]
        subs = [s.sensor_id for s in city.in_district(district, "substation")]
        return Incident(incident_id, kind, start_ms, end_ms, district, subs, "", severity, {})
    raise BadValue(f"unknown incident kind {kind!r}; use one of {', '.join(KINDS)}")


_DURATIONS_S: dict[str, tuple[float, float]] = {
    "accident": (20 * 60, 75 * 60), "congestion": (45 * 60, 150 * 60),
    "pollution": (3 * 3600, 10 * 3600), "water_burst": (40 * 60, 3 * 3600),
    "power_outage": (10 * 60, 50 * 60), "voltage_excursion": (20 * 60, 120 * 60),
    "frequency_excursion": (10 * 60, 30 * 60), "backhaul_loss": (10 * 60, 90 * 60),
}


class Schedule:
    """Incidents in time order, either explicit or drawn day by day from the seed."""

    def __init__(self, city: City, seed: int | None = 0,
                 rates: dict[str, float] | None = None,
                 explicit: list[Incident] | None = None) -> None:
        self.city = city
        self.seed = seed
        self.rates = DEFAULT_RATES if rates is None else rates
        self.explicit = sorted(explicit or [], key=lambda i: i.start_ms)
        self._days: dict[int, list[Incident]] = {}

    @classmethod
    def none(cls, city: City) -> Schedule:
        return cls(city, seed=None, rates={})

    def day(self, day: int) -> list[Incident]:
        """Random incidents of one UTC day (deterministic from seed and day number)."""
        if self.seed is None or not self.rates:
            return []
        if day not in self._days:
            rng = np.random.default_rng([self.seed, day, 303])
            scale = max(1.0, len(self.city.sensors) / 1200.0) ** 0.5
            out = []
            for kind in KINDS:
                rate = self.rates.get(kind, 0.0)
                if kind in LOCAL_KINDS:
                    rate *= scale
                for _ in range(int(rng.poisson(rate))):
                    start = day * DAY_MS + int(rng.integers(0, DAY_MS // 60_000)) * 60_000
                    lo, hi = _DURATIONS_S[kind]
                    dur = float(np.round(rng.uniform(lo, hi) / 60.0) * 60.0)
                    out.append((start, kind, dur, int(rng.integers(1 << 31))))
            out.sort()
            incs = []
            for k, (start, kind, dur, sub_seed) in enumerate(out):
                sub = np.random.default_rng([self.seed, day, sub_seed])
                incs.append(make_incident(
                    self.city, kind, start, dur, incident_id=f"inc-{day}-{k + 1:02d}",
                    severity=float(np.round(sub.uniform(0.7, 1.0), 2)), rng=sub))
            self._days[day] = incs
        return self._days[day]

    def between(self, t0_ms: int, t1_ms: int) -> list[Incident]:
        """Incidents starting in [t0, t1)."""
        out = [i for i in self.explicit if t0_ms <= i.start_ms < t1_ms]
        for d in range(t0_ms // DAY_MS, (t1_ms - 1) // DAY_MS + 1):
            out += [i for i in self.day(d) if t0_ms <= i.start_ms < t1_ms]
        return sorted(out, key=lambda i: (i.start_ms, i.incident_id))


# ---------------------------------------------------------------------------------------
# ground truth files

GROUND_TRUTH_COLUMNS = ("incident_id", "kind", "start_ms", "end_ms", "district", "sensors",
                        "epicentre", "severity", "details")


class GroundTruthWriter:
    """Appends incidents (and sensor faults) as they start: JSON lines, or CSV by suffix.

    Written incrementally and flushed, so an endless live run has an up-to-date file.
    CSV joins ``sensors`` with ';' and stores ``details`` as JSON.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.csv = self.path.suffix.lower() == ".csv"
        self._fh: IO[str] = self.path.open("w", newline="", encoding="utf-8")
        self._w = csv.writer(self._fh) if self.csv else None
        if self._w:
            self._w.writerow(GROUND_TRUTH_COLUMNS)
        self.count = 0

    def write(self, inc: Incident) -> None:
        rec = inc.to_record()
        if self._w:
            self._w.writerow([rec["incident_id"], rec["kind"], rec["start_ms"], rec["end_ms"],
                              rec["district"], ";".join(rec["sensors"]), rec["epicentre"],
                              rec["severity"], json.dumps(rec["details"], sort_keys=True)])
        else:
            self._fh.write(json.dumps(rec, sort_keys=True) + "\n")
        self._fh.flush()
        self.count += 1

    def close(self) -> None:
        self._fh.close()


def read_ground_truth(path: str | Path) -> list[Incident]:
    path = Path(path)
    out = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                out.append(Incident(r["incident_id"], r["kind"], int(r["start_ms"]),
                                    int(r["end_ms"]), r["district"],
                                    [s for s in r["sensors"].split(";") if s], r["epicentre"],
                                    float(r["severity"]), json.loads(r["details"] or "{}")))
    else:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(Incident(**json.loads(line)))
    return out
