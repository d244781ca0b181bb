"""Time to warm up from InfluxDB: what a fresh worker pays before its first batch.

For N traffic loops reporting once a minute, ``SPAN`` of history is written to a real
influxd with the worker's own line encoder (``rules warmup``'s ``backfill``), then one
worker's warm start is timed for all partitions: the InfluxDB query (chunked) and the
folding into the starter rules' evaluators (streams/warmup.py), as the worker runs them.

    .venv/bin/python bench/bench_warmup.py --sensors 1200 20000 --span 2h
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from urbanbrain.components import role_env  # noqa: E402
from urbanbrain.localstack import LocalStack  # noqa: E402
from urbanbrain.rules import RuleSet  # noqa: E402
from urbanbrain.rules.durations import parse_duration  # noqa: E402
from urbanbrain.settings import Settings  # noqa: E402
from urbanbrain.streams.alert_stage import SensorRules  # noqa: E402
from urbanbrain.streams.state import DictStore  # noqa: E402
from urbanbrain.streams.warmup import WarmStart, backfill  # noqa: E402
from urbanbrain.influx import InfluxWriter  # noqa: E402

RULES = Path(__file__).resolve().parent.parent / "rules" / "city"
PARTITIONS = 4


def history(n: int, end_ms: int, span_ms: int) -> list[dict]:
    out = []
    for k in range(span_ms // 60_000):
        ts = end_ms - span_ms + k * 60_000
        for i in range(n):
            out.append({"sensor_id": f"tl-{i:05d}", "ts": ts, "domain": "traffic",
                        "kind": "loop", "district": f"d{i % 20}", "recv": ts,
                        "metrics": {"speed_kmh": 40.0 + (i + k) % 20,
                                    "vehicle_count": float((i * k) % 9),
                                    "occupancy_pct": float((i + 2 * k) % 30)}})
    return out


def settings_of(stack: LocalStack, db: str) -> Settings:
    env = role_env({**stack.env(), "URBANBRAIN_INFLUX_DB": db}, "streams")
    return Settings(**{k[len("URBANBRAIN_"):].lower(): v for k, v in env.items()
                       if k.startswith("URBANBRAIN_")})


async def warm(settings: Settings, rs: RuleSet, until: int, span_ms: int) -> dict:
    rules = SensorRules(DictStore(), {}, lambda: rs, PARTITIONS, lateness_ms=120_000)
    async with InfluxWriter(settings) as writer:
        ws = WarmStart(writer, PARTITIONS, span_ms)
        t0 = time.perf_counter()
        hist = await ws.history(rs, "traffic", set(range(PARTITIONS)), until)
        t1 = time.perf_counter()
        used = sum(rules.warm("readings.traffic", p, rs_) for p, rs_ in hist.items())
        t2 = time.perf_counter()
    return {"points": int(ws.stats["points"]), "query_s": round(t1 - t0, 2),
            "fold_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2), "readings_used": used}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, nargs="+", default=[1200, 20000])
    ap.add_argument("--span", default="2h")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    span_ms = int(parse_duration(args.span))
    rs = RuleSet.load([str(RULES)])
    end = int(time.time() * 1000) // 60_000 * 60_000
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(Path(tmp) / "stack").start(mqtt=False, kafka=False)
        try:
            for n in args.sensors:
                db = stack.provision_database(f"warm{n}")
                s = settings_of(stack, db)
                hist = history(n, end, span_ms)
                t0 = time.perf_counter()
                written = asyncio.run(backfill(s, hist))
                load_s = time.perf_counter() - t0
                r = {"sensors": n, "span": args.span, "written": written,
                     "backfill_s": round(load_s, 1), **asyncio.run(warm(s, rs, end, span_ms))}
                print(json.dumps(r), flush=True)
                results.append(r)
        finally:
            stack.stop()
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
