"""SUMO mode: loops driven by a real microsimulation; an accident blocks a loop."""

from __future__ import annotations

from pathlib import Path


from urbanbrain.simulators.city import City
from urbanbrain.simulators.engine import Simulation
from urbanbrain.simulators.incidents import Schedule, make_incident

from urbanbrain.simulators import sumo  # noqa: E402

# SUMO is a declared test dependency (the Makefile installs sumo, sumo-tools): a missing
# SUMO must fail here, not skip silently.
sumo.sumo_home()
sumo.load_sumo()

T0 = 1767600000000  # Monday 09:00 local


def test_sumo_drives_loops_and_an_accident_blocks_one(tmp_path: Path) -> None:
    city = City.generate(1, "small")
    traffic = sumo.SumoTraffic(city, tmp_path, seed=1, grid=5, start_ms=T0, hours=1)
    try:
        target = traffic.loop_ids[3]
        acc = make_incident(city, "accident", T0 + 5 * 60_000, 20 * 60, incident_id="acc",
                            where=target)
        sim = Simulation(city, 1, start_ms=T0, schedule=Schedule(city, None, explicit=[acc]),
                         sumo=traffic)
        frames = list(sim.frames(15))
    finally:
        traffic.close()
    loops = [f.values["loop"][traffic.loop_index] for f in frames]
    assert sum(v[:, 0].sum() for v in loops[:5]) > 100  # vehicles are counted
    k = 3
    before = [v[k] for v in loops[:5]]
    after = [v[k] for v in loops[9:]]
    assert max(r[1] for r in after) > 80  # loop occupied by the queue
    assert min(r[2] for r in after) < 5  # standing traffic
    assert max(r[1] for r in before) < 50
