"""The simulation loop: normal signals + incidents + faults → one :class:`Frame` per tick.

Kept apart from publishing so the same frames feed MQTT (publisher.py), files
(record.py, scenario.py) and tests, and a run is identical whichever way it is consumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from urbanbrain.simulators.city import KIND_ORDER, KINDS, City
from urbanbrain.simulators.faults import FaultConfig, FaultInjector
from urbanbrain.simulators.incidents import Incident, IncidentEngine, Schedule
from urbanbrain.simulators.signals import SignalModel, round_values


@dataclass
class Frame:
    """All readings of one tick, as numpy matrices in the city's sensor order."""

    t_ms: int
    values: dict[str, np.ndarray]  # kind -> [n_kind, n_metrics]
    present: np.ndarray  # bool per sensor (global order): False = silent this tick
    ts: np.ndarray  # int64 event time per sensor (differs from t_ms under clock skew)
    started: list[Incident] = field(default_factory=list)  # incidents/faults starting now

    @property
    def n_readings(self) -> int:
        return int(self.present.sum())

    def readings(self, city: City) -> Iterator[tuple[str, int, dict[str, float]]]:
        """(sensor_id, ts, metrics) of every present sensor, in sensor order (slow path)."""
        for kind in KIND_ORDER:
            sl = city.kind_slices[kind]
            names = KINDS[kind][2]
            rows = self.values[kind].tolist()
            for li, row in enumerate(rows):
                gi = sl.start + li
                if self.present[gi]:
                    yield city.sensors[gi].sensor_id, int(self.ts[gi]), dict(zip(names, row))


def aligned_now_ms(interval_s: float) -> int:
    step = int(interval_s * 1000)
    return int(time.time() * 1000) // step * step


class Simulation:
    """Deterministic from (city, seed, start_ms, interval_s, schedule, faults)."""

    def __init__(self, city: City, seed: int = 42, *, start_ms: int | None = None,
                 interval_s: float = 60.0, schedule: Schedule | None = None,
                 faults: FaultConfig | None = None,
                 on_event: Callable[[Incident], None] | None = None,
                 sumo: object | None = None) -> None:
        self.city = city
        self.seed = seed
        self.interval_ms = int(interval_s * 1000)
        self.start_ms = aligned_now_ms(interval_s) if start_ms is None else int(start_ms)
        self.t_ms = self.start_ms
        self.signals = SignalModel(city, seed, interval_s)
        self.schedule = schedule if schedule is not None else Schedule(city, seed)
        self.incidents = IncidentEngine(city)
        self.faults = FaultInjector(city, seed, faults or FaultConfig.off(), interval_s)
        self.on_event = on_event
        self.sumo = sumo  # a simulators.sumo.SumoTraffic driving some loops, or None
        self.incidents_started = 0
        self.readings = 0
        self.ticks = 0
        self._n = len(city.sensors)

    def step(self) -> Frame:
        t = self.t_ms
        t_next = t + self.interval_ms
        started: list[Incident] = []
        # incidents starting within this tick take effect from their start
        for inc in self.schedule.between(t, t_next):
            self.incidents.add(inc)
            started.append(inc)
        self.incidents_started += len(started)
        if self.faults.config.any:
            for w in self.faults.between(t, t_next):
                self.faults.start(w)
                started.append(w)
        self.incidents.prune(t)

        sig = self.signals
        traffic = sig.traffic(t, self.incidents.traffic_effects(t, len(sig.cap)))
        if self.sumo is not None:
            for inc in started:
                if inc.kind == "accident" and inc.epicentre in self.sumo.loop_ids:
                    self.sumo.block(inc.incident_id, inc.epicentre, (inc.end_ms - t) / 1000)
            traffic[self.sumo.loop_index] = self.sumo.step()
        values = {"loop": traffic}
        values.update(sig.environment(t, traffic))
        values["water_main"] = sig.water(t)
        values["substation"] = sig.power(t)
        self.incidents.apply_others(t, values)
        round_values(values)

        present = np.ones(self._n, dtype=bool)
        silent = self.incidents.silenced(t)
        if silent:
            present[silent] = False
        ts = np.full(self._n, t, dtype=np.int64)
        if self.faults.config.any:
            started += self.faults.apply(t, values, present, ts)
        self.faults.stats.silent_readings += int(self._n - present.sum())
        if self.on_event is not None:
            for inc in started:
                self.on_event(inc)
        frame = Frame(t, values, present, ts, started)
        self.readings += frame.n_readings
        self.ticks += 1
        self.t_ms = t_next
        return frame

    def frames(self, n: int | None = None, until_ms: int | None = None) -> Iterator[Frame]:
        """``n`` ticks, or until sim time ``until_ms`` (exclusive), or forever."""
        k = 0
        while (n is None or k < n) and (until_ms is None or self.t_ms < until_ms):
            yield self.step()
            k += 1
