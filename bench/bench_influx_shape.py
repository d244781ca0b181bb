"""Benchmark: influxd CPU per point by the shape of what is written.

    .venv/bin/python bench/bench_influx_shape.py [--points 120000]

Why: inside the pipeline influxd cost 17-46 µs of CPU per reading, against ~8 µs per point
when ``bench_limits.py`` wrote raw-shaped points alone (issue #13: "find why"). This
writes the same number of points in different shapes to a fresh local influxd (production
auth, the writer account, ms precision) and reports influxd's CPU per point:

- series count (5,000 vs 20,000), points per request (3,000 vs 300), a fresh database vs
  one whose series exist already;
- fields per point (3 like a raw reading of the limits bench; 8, 15, 18 like a window
  point, whose fields are 5 per metric: count, mean, min, max, last).

``--per-reading`` also counts the fields the worker's stages send per reading (the
in-process worker of the backtest over a simulated city, starter rules, raw points as the
raw sink encodes them), by measurement, for both ``URBANBRAIN_STREAMS_SENSOR_HOPS`` modes
and two reporting intervals.

Writes bench/results/influx_shape.json. One writer, one connection: the writer's own CPU
is not influxd's, so the rate is a floor; read the µs column.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "bench"))

from bench_limits import _DISTRICTS, _KINDS, _server_cpu  # noqa: E402

AGGS = ("count", "mean", "min", "max", "last")


def _heads(n_series: int, n_fields: int) -> list[tuple[str, tuple[str, ...]]]:
    """(line head, field keys) per series: raw readings' 3 fields, or window-like fields."""
    out = []
    for i in range(n_series):
        domain, kind, prefix, fields = _KINDS[i % len(_KINDS)]
        keys = fields if n_fields == 3 else tuple(
            f"{f}_{a}" for f in fields + ("extra",) for a in AGGS)[:n_fields]
        out.append((f"{domain},district={_DISTRICTS[i % len(_DISTRICTS)]},kind={kind},"
                    f"sensor={prefix}-{i:06d} ", keys))
    return out


def _bodies(n_series: int, points: int, batch: int, t0_ms: int, n_fields: int) -> list[bytes]:
    heads = _heads(n_series, n_fields)
    bodies, lines = [], []
    for k in range(points):
        head, keys = heads[k % n_series]
        vals = ",".join(f"{f}={(k * 7 + j) % 997 / 10.0!r}" for j, f in enumerate(keys))
        lines.append(f"{head}{vals} {t0_ms + (k // n_series) * 5000}")
        if len(lines) == batch:
            bodies.append("\n".join(lines).encode())
            lines = []
    if lines:
        bodies.append("\n".join(lines).encode())
    return bodies


def _write(stack, db: str, bodies: list[bytes]) -> tuple[float, float]:  # noqa: ANN001
    """(influxd CPU s, wall s) for POSTing ``bodies`` (built beforehand)."""
    user, pw = stack.influx_login("writer")
    conn = http.client.HTTPConnection("127.0.0.1", stack.influx.port, timeout=60)
    path = f"/write?db={db}&precision=ms&" + urllib.parse.urlencode({"u": user, "p": pw})
    cpu0, t0 = _server_cpu(stack, "influx"), time.monotonic()
    for body in bodies:
        conn.request("POST", path, body, {"Content-Type": "text/plain"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 204:
            raise RuntimeError(f"write refused: HTTP {resp.status}")
    wall = time.monotonic() - t0
    time.sleep(1.0)  # the cache's background work shows in influxd's CPU too
    conn.close()
    return _server_cpu(stack, "influx") - cpu0, wall


def run(points: int) -> list[dict]:
    from urbanbrain.localstack import LocalStack

    cases = [  # (name, series, points, batch, warm, fields)
        ("limits-bench shape: 5k series, 10x the points, 5k a request", 5000, 10 * points,
         5000, False, 3),
        ("5k series, 3k a request, fresh", 5000, points, 3000, False, 3),
        ("5k series, 3k a request, series exist", 5000, points, 3000, True, 3),
        ("20k series, 3k a request, fresh", 20000, points, 3000, False, 3),
        ("5k series, 300 a request, fresh", 5000, points, 300, False, 3),
        ("8 fields a point, series exist", 5000, points, 3000, True, 8),
        ("15 fields a point, series exist", 5000, points, 3000, True, 15),
        ("18 fields a point, series exist", 5000, points, 3000, True, 18),
    ]
    work = Path(tempfile.mkdtemp(prefix="ub-bench-influx-shape-"))
    stack = LocalStack(work / "stack").start(mqtt=False, kafka=False)
    out = []
    try:
        base = (int(time.time()) // 60 - 3 * 24 * 60) * 60_000
        for i, (name, series, n, batch, warm, fields) in enumerate(cases):
            db = f"shape{i}"
            stack.provision_database(db, {"raw": "INF"})
            if warm:
                _write(stack, db, _bodies(series, 2 * series, 5000, base, fields))
            cpu, wall = _write(stack, db, _bodies(series, n, batch, base + 3_600_000, fields))
            row = {"case": name, "series": series, "points": n, "batch": batch, "warm": warm,
                   "fields": fields, "influxd_us_per_point": round(cpu / n * 1e6, 1),
                   "influxd_us_per_field": round(cpu / n / fields * 1e6, 2),
                   "points_per_s": round(n / wall)}
            print(f"{name:60s} {row['influxd_us_per_point']:6.1f} µs/point "
                  f"{row['influxd_us_per_field']:5.2f} µs/field", flush=True)
            out.append(row)
            stack.influx_admin.query(f'DROP DATABASE "{db}"')
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


def _field_count(line: str) -> int:
    """Fields of one line (no string field of ours holds '=' or a space)."""
    fieldset = line.split(" ", 1)[1].rsplit(" ", 1)[0]
    return fieldset.count("=")


def fields_per_reading(hops: str, interval_s: int, size: int = 2000,
                       minutes: int = 60) -> dict:
    """Fields sent to InfluxDB per reading, by measurement, for one hop mode."""
    from urbanbrain.lineprotocol import ReadingLineEncoder
    from urbanbrain.rules.model import RuleSet
    from urbanbrain.simulators.city import City
    from urbanbrain.simulators.engine import Simulation
    from urbanbrain.simulators.record import frame_readings
    from urbanbrain.streams.inprocess import InProcessWorker
    from urbanbrain.streams.settings import StreamsSettings

    city = City.generate(seed=7, size=size)
    tmp = Path(tempfile.mkdtemp(prefix="ub-bench-fields-"))
    try:
        reg = city.write_registry(tmp / "registry.csv")
        worker = InProcessWorker(RuleSet.load([str(ROOT / "rules" / "city")]), reg,
                                 settings=StreamsSettings(streams_sensor_hops=hops),
                                 outputs=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    start = (int(time.time() * 1000) - 3 * 3_600_000) // 3_600_000 * 3_600_000
    sim = Simulation(city, 7, start_ms=start, interval_s=interval_s)
    encoder = ReadingLineEncoder()
    fields: dict[str, int] = {}
    readings, tick, next_tick = 0, [], start + 60_000

    def count(measurement: str, n: int) -> None:
        fields[measurement] = fields.get(measurement, 0) + n

    for frame in sim.frames(until_ms=start + minutes * 60_000):
        if frame.t_ms >= next_tick:
            for out in worker.process(tick):
                for line in out.rendered.lines:
                    count(line.split(",", 1)[0], _field_count(line))
            for line in encoder.encode(tick)[0]:
                count("raw", _field_count(line))
            readings += len(tick)
            worker.events.clear()
            worker.samples.clear()
            tick, next_tick = [], next_tick + 60_000
        tick.extend(frame_readings(city, frame))
    total = sum(fields.values())
    row = {"hops": hops, "interval_s": interval_s, "sensors": len(city.sensors),
           "readings": readings, "fields_per_reading": round(total / readings, 2),
           "by_measurement": {k: round(v / readings, 2)
                              for k, v in sorted(fields.items(), key=lambda kv: -kv[1])}}
    print(f"hops={hops:8s} every {interval_s:3d} s: {row['fields_per_reading']:6.2f} fields "
          f"a reading {row['by_measurement']}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=120_000)
    ap.add_argument("--per-reading", action="store_true",
                    help="also count the fields the worker sends per reading")
    ap.add_argument("--out", type=Path, default=RESULTS / "influx_shape.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    result: dict = {"influxd": run(args.points)}
    if args.per_reading:
        result["per_reading"] = [fields_per_reading(hops, iv) for iv in (60, 10)
                                 for hops in ("all", "aligned")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
