"""End-to-end throughput: simulator → MQTT → ingest → Kafka → Faust → InfluxDB.

A script, not a test: ``python bench/bench_e2e.py [--format senml|json] [--minutes 30]``.
Starts its own local servers, ingest and one Faust worker (real subprocesses), publishes a
simulated city as fast as the publisher can (event times ending at "now"), and measures
how long until every reading is stored as a raw point in InfluxDB. Writes
``bench/results/e2e-<format>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness import Component  # noqa: E402

from urbanbrain.dashboards.queries import InfluxQL  # noqa: E402
from urbanbrain.localstack import LocalStack  # noqa: E402
from urbanbrain.settings import Settings  # noqa: E402
from urbanbrain.up import count_raw_points  # noqa: E402
from urbanbrain.simulators.runner import run_simulation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--format", default="senml", choices=["senml", "json", "fiware"])
    ap.add_argument("--size", default="large")
    ap.add_argument("--minutes", type=float, default=30, help="simulated minutes (1 tick/min)")
    ap.add_argument("--profile", action="store_true", help="py-spy the worker if available")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ub-bench-e2e-"))
    stack = LocalStack(work / "stack").start()
    env = {**stack.env(), "URBANBRAIN_INFLUX_DB": "bench", "URBANBRAIN_DATA_DIR": str(work),
           "URBANBRAIN_REGISTRY_PATH": str(work / "registry.csv")}
    settings = Settings(**{k[len("URBANBRAIN_"):].lower(): v for k, v in env.items()})
    comps = [
        Component("ingest", ["ingest", "-l", "info"], env, work / "ingest.log"),
        Component("streams", ["streams", "worker", "-l", "warning"], env, work / "streams.log"),
    ]
    try:
        from urbanbrain.simulators.city import City

        City.generate(7, args.size).write_registry(work / "registry.csv")
        for c in comps:
            c.start()
        time.sleep(8)  # ingest connect + Faust group join (~3 s on tansu)
        start_ms = int(time.time() * 1000 - args.minutes * 60_000)
        t0 = time.monotonic()
        result = run_simulation(settings, seed=7, size=args.size, speed=0, rate=None,
                                start_ms=start_ms, sim_duration_s=args.minutes * 60,
                                fmt=args.format, incidents=False, connections=2)
        t_pub = time.monotonic() - t0
        sent = result.progress.readings
        n = 0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            n = count_raw_points(InfluxQL(env["URBANBRAIN_INFLUX_URL"], "bench"))
            if n >= sent:
                break
            time.sleep(0.5)
        t_all = time.monotonic() - t0
        out = {
            "format": args.format, "size": args.size, "readings": sent, "stored": n,
            "alert_rules": os.environ.get("URBANBRAIN_ALERT_RULES_PATH", "rules/city (starter set)"),
            "publish_s": round(t_pub, 2), "end_to_end_s": round(t_all, 2),
            "offered_readings_per_s": round(sent / t_pub), "end_to_end_readings_per_s": round(n / t_all),
        }
        print(json.dumps(out, indent=2))
        res = ROOT / "bench" / "results"
        res.mkdir(parents=True, exist_ok=True)
        (res / f"e2e-{args.format}{'-norules' if 'URBANBRAIN_ALERT_RULES_PATH' in os.environ else ''}.json").write_text(json.dumps(out, indent=2) + "\n")
    finally:
        for c in comps:
            c.stop()
        stack.stop()


if __name__ == "__main__":
    main()
