"""Benchmark: how many loop-minutes of SUMO mode equal SUMO's own E1 loop output.

    .venv/bin/python bench/bench_sumo_loops.py [--hours 1] [--grid 5] [--seed 1]

Runs :class:`urbanbrain.simulators.sumo.SumoTraffic` (what ``simulate run --sumo`` runs) on
the built-in grid (point E1 loop at the middle of every lane, SUMO writing its E1 XML with 6
decimals) and compares every published loop-minute with SUMO's XML: count
(``nVehContrib``), speed (``speed``; "no speed" when E1 writes -1), occupancy, flow. Also
reports invented values (a speed where no vehicle passed), the free-flow labels the loops
get, and simulation speed. Writes bench/results/sumo-loops.json.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

from urbanbrain.simulators import sumo
from urbanbrain.simulators.city import City

ROOT = Path(__file__).resolve().parent.parent
T0 = 1767600000000  # Monday 09:00 local


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--grid", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    city = City.generate(args.seed, "small")
    minutes = int(args.hours * 60)
    with tempfile.TemporaryDirectory(prefix="bench-sumo-") as wd:
        traffic = sumo.SumoTraffic(city, wd, seed=args.seed, grid=args.grid, start_ms=T0,
                                   hours=args.hours)
        t0 = time.perf_counter()
        try:
            got = [traffic.step() for _ in range(minutes)]
        finally:
            traffic.close()
        elapsed = time.perf_counter() - t0
        xml = sumo.read_e1_xml(traffic.scenario.e1_output)
    n = count_ok = speed_ok = occ_ok = flow_ok = invented = with_veh = 0
    veh_pub = veh_e1 = 0.0
    for k, values in enumerate(got):
        for i, det in enumerate(traffic.loop_ids):
            x = xml[(det, float(k * 60))]
            c, occ, speed, flow = values[i]
            n += 1
            veh_pub += c
            veh_e1 += x["nVehContrib"]
            count_ok += c == x["nVehContrib"]
            occ_ok += abs(occ - x["occupancy"]) <= 1e-4
            flow_ok += abs(flow - x["flow"]) <= 1e-3
            if x["nVehContrib"]:
                with_veh += 1
                speed_ok += abs(speed - x["speed"] * 3.6) <= 1e-4
            else:
                speed_ok += math.isnan(speed)
                invented += not math.isnan(speed)
    ff = sorted({s.free_flow_kmh for s in city.of_kind("loop")[:len(traffic.loop_ids)]})
    res = {"loops": len(traffic.loop_ids), "loop_minutes": n, "count_equal": int(count_ok),
           "speed_equal": int(speed_ok), "occupancy_equal": int(occ_ok),
           "flow_equal": int(flow_ok), "minutes_with_vehicles": with_veh,
           "invented_speeds": int(invented), "vehicles_published": float(veh_pub),
           "vehicles_e1": float(veh_e1), "free_flow_kmh": [float(f) for f in ff],
           "sim_seconds_per_s": round(minutes * 60 / elapsed, 1)}
    print(f"{res['loops']} loops, {n} loop-minutes vs SUMO's E1 XML:")
    for k in ("count_equal", "speed_equal", "occupancy_equal", "flow_equal"):
        print(f"  {k:16s} {res[k]:6d} / {n} ({100 * res[k] / n:.1f} %)")
    print(f"  vehicles {veh_pub:.0f} published / {veh_e1:.0f} E1; invented speeds {invented}; "
          f"free flow {ff} km/h; {res['sim_seconds_per_s']} simulated s per s")
    path = ROOT / "bench" / "results" / "sumo-loops.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
