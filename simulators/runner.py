"""``run_simulation``: the one call that runs a live simulated city against an MQTT broker.

Used by ``urbanbrain simulate run`` and by the lead's ``urbanbrain up``. Blocking; stops
at ``duration_s`` of wall time, ``sim_duration_s`` of simulated time, or when
``stop_event`` is set, whichever comes first.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from urbanbrain.settings import Settings
from urbanbrain.simulators.city import City
from urbanbrain.simulators.engine import Simulation
from urbanbrain.simulators.faults import FaultConfig, FaultStats
from urbanbrain.simulators.formats import make_encoder
from urbanbrain.simulators.incidents import GroundTruthWriter, Incident, Schedule
from urbanbrain.simulators.publisher import MqttPool, Pacer, Progress, send_messages


@dataclass
class RunResult:
    progress: Progress
    faults: FaultStats
    incidents: list[Incident] = field(default_factory=list)  # incidents and fault windows
    registry_path: Path | None = None
    ground_truth_path: Path | None = None


def run_simulation(
    settings: Settings,
    *,
    seed: int = 42,
    size: str | int = "small",
    rate: float | None = None,
    speed: float | None = 1.0,
    duration_s: float | None = None,
    sim_duration_s: float | None = None,
    fmt: str = "senml",
    interval_s: float = 60.0,
    start_ms: int | None = None,
    registry_path: str | Path | None = None,
    ground_truth_path: str | Path | None = None,
    faults: FaultConfig | str | None = None,
    incidents: bool = True,
    schedule: Schedule | None = None,
    connections: int = 2,
    qos: int = 1,
    pack_size: int = 50,
    stop_event: threading.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    progress_interval_s: float = 0.5,
    city: City | None = None,
    sumo: bool = False,
    sumo_workdir: str | Path | None = None,
    sumo_scenario: object | None = None,
) -> RunResult:
    """Simulate the city and publish its readings to ``settings.mqtt_url``.

    ``speed``: simulated seconds per wall second (1 = real time, 60 = an hour a minute,
    0/None = as fast as possible); ``rate``: cap on readings/s (None = no cap); ``fmt``:
    json | senml | fiware; ``start_ms``: first tick's event time (default: now, aligned
    to ``interval_s``). The registry CSV is written before the first message, so ingest
    can load it; ground truth is appended as incidents and faults start. ``sumo``: drive
    traffic loops from SUMO's E1 loops (raises SumoUnavailable when missing); the built-in
    grid, or ``sumo_scenario`` (a :class:`urbanbrain.simulators.sumo.Scenario`). SUMO's loops
    take over the city's first loops before the registry is written.
    """
    stop = stop_event or threading.Event()
    city = city or City.generate(seed, size)
    traffic_sim = None
    if sumo:
        import tempfile

        from urbanbrain.simulators.engine import aligned_now_ms
        from urbanbrain.simulators.sumo import SumoTraffic

        hours = (sim_duration_s or duration_s or 3600.0) * max(speed or 1.0, 1.0) / 3600.0
        traffic_sim = SumoTraffic(
            city, sumo_workdir or tempfile.mkdtemp(prefix="urbanbrain-sumo-"), seed=seed,
            interval_s=interval_s, start_ms=start_ms or aligned_now_ms(interval_s),
            hours=min(max(hours, 1.0), 48.0), scenario=sumo_scenario)  # type: ignore[arg-type]
    reg = Path(registry_path) if registry_path else None
    if reg:
        city.write_registry(reg)
    fault_cfg = FaultConfig.parse(faults) if isinstance(faults, str) or faults is None else faults
    gt = GroundTruthWriter(ground_truth_path) if ground_truth_path else None
    events: list[Incident] = []

    def on_event(inc: Incident) -> None:
        events.append(inc)
        if gt:
            gt.write(inc)

    sched = schedule if schedule is not None else (
        Schedule(city, seed) if incidents else Schedule.none(city))
    sim = Simulation(city, seed, start_ms=start_ms, interval_s=interval_s, schedule=sched,
                     faults=fault_cfg, on_event=on_event, sumo=traffic_sim)
    encoder = make_encoder(fmt, city, interval_s=interval_s, pack_size=pack_size,
                           topic_prefix=settings.mqtt_topic_prefix)
    progress = Progress(sim_time_ms=sim.start_ms)
    t0 = time.monotonic()
    last = [t0, 0]

    def report(force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - last[0] < progress_interval_s:
            return
        progress.elapsed_s = now - t0
        progress.rate = (progress.readings - last[1]) / max(now - last[0], 1e-9)
        progress.incidents = sim.incidents_started
        progress.faults = sum(1 for e in events if e.kind.startswith("fault."))
        last[0], last[1] = now, progress.readings
        if on_progress:
            on_progress(progress)

    def on_sent(n_msgs: int, n_readings: int, n_bytes: int) -> None:
        progress.messages += n_msgs
        progress.readings += n_readings
        progress.bytes += n_bytes
        report()

    end_sim = sim.start_ms + int(sim_duration_s * 1000) if sim_duration_s else None
    pool = MqttPool(settings, connections=connections, qos=qos)
    try:
        pacer = Pacer(sim.start_ms, speed, rate, stop)
        while not stop.is_set():
            if end_sim is not None and sim.t_ms >= end_sim:
                break
            if duration_s is not None and time.monotonic() - t0 >= duration_s:
                break
            pacer.wait_for_tick(sim.t_ms)
            if stop.is_set() or (duration_s is not None and time.monotonic() - t0 >= duration_s):
                break
            frame = sim.step()
            progress.sim_time_ms = frame.t_ms
            msgs = sim.faults.mangle(encoder.encode(frame))
            send_messages(pool, msgs, pacer, on_sent)
        pool.flush(30.0)
    finally:
        pool.close()
        if traffic_sim is not None:
            traffic_sim.close()
        if gt:
            gt.close()
            stats_path = Path(str(gt.path) + ".stats.json")
            stats_path.write_text(json.dumps({
                "seed": seed, "size": size, "format": fmt, "interval_s": interval_s,
                "start_ms": sim.start_ms, "end_ms": sim.t_ms, "readings": progress.readings,
                "messages": progress.messages, "incidents": sim.incidents_started,
                "faults": sim.faults.stats.as_dict()}, indent=2))
    progress.done = True
    report(force=True)
    return RunResult(progress, sim.faults.stats, events, reg,
                     Path(ground_truth_path) if ground_truth_path else None)
