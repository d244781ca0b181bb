"""Named, fixed scenarios; ``standard-week`` is the reference for benchmarks and backtests.

A scenario fixes everything a run depends on (seed, city size, start, tick interval,
incidents, faults), so two machines generate byte-identical data. ``generate_offline``
produces it without MQTT, vectorised, as the long pandas table of record.py plus the
ground truth; ``write_scenario`` puts it in files (Parquet by default).

History: a scenario may begin ``history_days`` before its ``start`` with ordinary days
(sensor faults, no incidents). Rules with a time-of-day baseline need to have seen a few
days of a city before they can tell unusual from usual, exactly as a deployed system has;
a backtest replays the history and scores only from ``start`` on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from urbanbrain.errors import BadValue
from urbanbrain.simulators.city import City
from urbanbrain.simulators.engine import Simulation
from urbanbrain.simulators.faults import FaultConfig, FaultStats
from urbanbrain.simulators.incidents import (
    GroundTruthWriter, Incident, Schedule, make_incident,
)
from urbanbrain.simulators.record import FrameTable, write_table

def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).astimezone(timezone.utc).timestamp() * 1000)


@dataclass(frozen=True)
class IncidentSpec:
    """An incident at a fixed local time; ``pick`` chooses its place deterministically."""

    kind: str
    day: int  # 0 = Monday of the scenario week
    local_time: str  # "HH:MM" in the city's local time
    duration_min: int
    severity: float = 1.0
    # road id (accident/congestion), "district:<n>" (pollution, backhaul_loss),
    # "under"/"over" (voltage_excursion), "" = seeded
    pick: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int
    size: str | int
    start: str  # ISO 8601 with zone: first tick
    days: float
    interval_s: float
    incidents: tuple[IncidentSpec, ...]
    faults: FaultConfig = field(default_factory=FaultConfig.off)
    description: str = ""
    history_days: float = 0.0  # ordinary days simulated before ``start`` (not scored)

    @property
    def start_ms(self) -> int:
        return _ms(self.start)

    @property
    def data_start_ms(self) -> int:
        """First tick, history included."""
        return self.start_ms - int(self.history_days * 86_400_000)

    @property
    def end_ms(self) -> int:
        return self.start_ms + int(self.days * 86_400_000)

    def city(self) -> City:
        return City.generate(self.seed, self.size)

    def resolve(self, city: City) -> list[Incident]:
        """The scenario's incidents with places and affected sensors resolved."""
        rng = np.random.default_rng([self.seed, 4242])
        out = []
        for k, spec in enumerate(self.incidents):
            hh, mm = (int(x) for x in spec.local_time.split(":"))
            start = self.start_ms + ((spec.day * 24 + hh) * 60 + mm) * 60_000
            where = None
            direction = None
            if spec.kind in ("accident", "congestion"):
                loops = [s for s in city.of_kind("loop") if s.road_id == spec.pick] or \
                    city.of_kind("loop")
                # the most downstream loop of the road: the longest queue room upstream
                where = loops[-1 - int(rng.integers(0, max(1, len(loops) // 4)))].sensor_id
            elif spec.kind in ("pollution", "backhaul_loss") and spec.pick.startswith("district:"):
                where = city.district_ids[int(spec.pick.split(":")[1]) % len(city.district_ids)]
            elif spec.kind == "voltage_excursion" and spec.pick:
                direction = spec.pick
            out.append(make_incident(city, spec.kind, start, spec.duration_min * 60,
                                     incident_id=f"{self.name}-{k + 1:02d}", where=where,
                                     severity=spec.severity, rng=rng, direction=direction))
        return out


STANDARD_WEEK = Scenario(
    name="standard-week",
    seed=20260105,
    size="medium",
    start="2026-01-05T00:00:00+01:00",  # Monday 00:00 local (city at UTC+1)
    days=7,
    interval_s=300,
    incidents=(
        IncidentSpec("accident", 0, "08:10", 50, 1.0, "a01-in"),
        IncidentSpec("congestion", 0, "17:40", 90, 0.9, "ring-cw"),
        IncidentSpec("accident", 1, "07:45", 40, 0.9, "a03-in"),
        IncidentSpec("water_burst", 2, "03:10", 120, 1.0),
        IncidentSpec("pollution", 2, "13:00", 8 * 60, 1.0, "district:3"),
        IncidentSpec("power_outage", 3, "19:05", 35, 1.0),
        IncidentSpec("accident", 4, "16:30", 60, 1.0, "a05-out"),
        IncidentSpec("congestion", 5, "11:00", 120, 0.8, "a02-in"),
        IncidentSpec("water_burst", 6, "09:00", 90, 0.8),
        IncidentSpec("power_outage", 6, "20:00", 25, 1.0),
        # added so that every starter rule has incidents of its own kind in the week:
        # a smoke plume (fire) that takes a district's air to "very unhealthy" (AQI > 200
        # at its peak even in a district with clean background air: PM2.5 x19),
        # sustained under- and over-voltage at a substation (VoltageOutOfBand), a grid
        # under-frequency (FrequencyOutOfBand) and a district's SCADA backhaul going down
        # (PowerDistrictSilent). Places are drawn from the seed like the others'.
        IncidentSpec("pollution", 3, "10:00", 6 * 60, 6.0, "district:8"),
        IncidentSpec("voltage_excursion", 1, "18:20", 45, 1.0, "under"),
        IncidentSpec("voltage_excursion", 5, "02:30", 60, 1.0, "over"),
        IncidentSpec("frequency_excursion", 4, "14:10", 20, 1.0),
        IncidentSpec("backhaul_loss", 2, "22:00", 30, 1.0, "district:5"),
    ),
    faults=FaultConfig(stuck_per_sensor_day=0.01, dropout_per_sensor_day=0.01,
                       skew_per_sensor_day=0.005, spike_prob=1e-4),
    description="A simulated week of a mid-size city (1,200 sensors, 13 districts) at "
                "5-minute resolution with 15 fixed incidents and light sensor faults, after "
                "a week of ordinary history (not scored).",
    # a deployed system has run for a while: time-of-day baselines need several days of
    # each day type (with 4 days, weather and the Friday evening were not yet "usual")
    history_days=7,
)

# Small enough for CI (400 sensors, 9 scored hours at 5-minute resolution, ~45,000
# readings) and holding an incident of every kind the starter rules know, after 3 hours of
# history (the live scoring test loads 2 of them with `rules warmup`). Incident times are
# offsets from the start (08:00 local), not clock times.
CI_DAY = Scenario(
    name="ci-day",
    seed=20260107,
    size="small",
    start="2026-01-07T08:00:00+01:00",
    days=9 / 24,
    interval_s=300,
    incidents=(
        IncidentSpec("pollution", 0, "00:30", 4 * 60, 6.0, "district:1"),
        IncidentSpec("water_burst", 0, "01:00", 90, 1.0),
        IncidentSpec("power_outage", 0, "02:00", 35, 1.0),
        IncidentSpec("accident", 0, "02:30", 50, 1.0, "a01-in"),
        IncidentSpec("voltage_excursion", 0, "03:30", 45, 1.0, "under"),
        IncidentSpec("congestion", 0, "04:30", 60, 0.9, "a02-in"),
        IncidentSpec("frequency_excursion", 0, "05:30", 20, 1.0),
        IncidentSpec("backhaul_loss", 0, "06:30", 30, 1.0, "district:2"),
    ),
    faults=FaultConfig(stuck_per_sensor_day=0.02, dropout_per_sensor_day=0.02,
                       skew_per_sensor_day=0.0, spike_prob=1e-4),
    description="CI's scenario: a small city (400 sensors, 7 districts), 9 hours at 5-minute "
                "resolution with one incident of every kind, after 3 hours of history.",
    history_days=3 / 24,
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (STANDARD_WEEK, CI_DAY)}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise BadValue(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


@dataclass
class ScenarioData:
    scenario: Scenario
    city: City
    readings: pd.DataFrame  # long table (see record.py)
    ground_truth: list[Incident]  # incidents, then fault windows and spikes
    faults: FaultStats
    n_readings: int
    scored_from_ms: int = 0  # the scenario's start: earlier readings are history


def simulation_for(sc: Scenario, city: City | None = None,
                   on_event: Callable[[Incident], None] | None = None, *,
                   history: bool = True) -> Simulation:
    """The scenario's simulation, from its history's first day (``history=False``: from
    ``start``; the readings then differ in their noise, not in incidents or faults)."""
    city = city or sc.city()
    return Simulation(city, sc.seed, start_ms=sc.data_start_ms if history else sc.start_ms,
                      interval_s=sc.interval_s,
                      schedule=Schedule(city, seed=None, explicit=sc.resolve(city)),
                      faults=sc.faults, on_event=on_event)


def generate_offline(scenario: Scenario | str = STANDARD_WEEK, *,
                     days: float | None = None, history: bool = True) -> ScenarioData:
    """The scenario as data, without MQTT. ``days`` (counted from ``start``) truncates it,
    e.g. for tests; the history days before ``start`` are included unless ``history`` is
    False."""
    sc = get_scenario(scenario) if isinstance(scenario, str) else scenario
    city = sc.city()
    events: list[Incident] = []
    sim = simulation_for(sc, city, on_event=events.append, history=history)
    end = sc.start_ms + int((days if days is not None else sc.days) * 86_400_000)
    table = FrameTable(city)
    for frame in sim.frames(until_ms=end):
        table.add(frame)
    truth = [e for e in events if not e.kind.startswith("fault.")] + \
        [e for e in events if e.kind.startswith("fault.")]
    return ScenarioData(sc, city, table.to_frame(), truth, sim.faults.stats, table.readings,
                        scored_from_ms=sc.start_ms)


def write_scenario(path: str | Path, scenario: Scenario | str = STANDARD_WEEK, *,
                   days: float | None = None) -> dict[str, Path]:
    """Readings (.parquet/.csv/.jsonl by suffix) + ground truth + registry + manifest."""
    data = generate_offline(scenario, days=days)
    path = Path(path)
    stem = path.with_suffix("")
    out = {"readings": write_table(data.readings, path)}
    gt = GroundTruthWriter(Path(f"{stem}.ground_truth.jsonl"))
    for inc in data.ground_truth:
        gt.write(inc)
    gt.close()
    out["ground_truth"] = gt.path
    out["registry"] = data.city.write_registry(Path(f"{stem}.registry.csv"))
    manifest = Path(f"{stem}.manifest.json")
    sc = data.scenario
    manifest.write_text(json.dumps({
        "scenario": sc.name, "seed": sc.seed, "size": sc.size, "start": sc.start,
        "start_ms": sc.start_ms, "days": days if days is not None else sc.days,
        "history_days": sc.history_days, "data_start_ms": sc.data_start_ms,
        "interval_s": sc.interval_s, "sensors": len(data.city.sensors),
        "readings": data.n_readings, "rows": len(data.readings),
        "incidents": sum(1 for i in data.ground_truth if not i.kind.startswith("fault.")),
        "faults": data.faults.as_dict(),
    }, indent=2))
    out["manifest"] = manifest
    return out
