"""Disk per retention tier, and the 7-day city panels before and after resolution picking.

    .venv/bin/python bench/bench_storage.py [--days 7] [--size tiny] [--partitions 4]

What it does, with the product's own code end to end except Kafka:

1. an influxd of its own (tsi1 index as compose runs it, compaction of cold shards after
   seconds instead of hours), the database and its policies made by ``urbanbrain influx
   init``'s :func:`urbanbrain.retention.init`;
2. the simulated city (``simulators.engine.Simulation``, 10 s interval) for ``--days`` days
   ending now, each minute of readings through the worker's stages: raw lines
   (``ReadingLineEncoder``), ``WindowStage`` per (domain, partition) (1-min/5-min windows,
   indices, hourly windows) and ``RollupStage`` (district/city 1-min and hourly); every line
   written with ``InfluxWriter.write(lines, rp=...)`` to the policy the worker uses;
3. waits until the shards are compacted (sizes stable), then measures each policy's
   directory (TSM files and tsi1 index) and divides by the points written to it;
4. times the 7-day panels as the dashboards asked before this change (district roll-ups at
   1 min, per-sensor metrics from raw points) and as they ask now (expanded from
   dashboards/spec.py for a 7-day range: hourly roll-ups, 5-min windows).

Writes bench/results/storage.json (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from urbanbrain.dashboards.build import build
from urbanbrain.dashboards.queries import InfluxQL, expand, panel_queries, resolve_variables
from urbanbrain.influx import InfluxWriter
from urbanbrain.lineprotocol import ReadingLineEncoder
from urbanbrain.localstack import ManagedProcess, _influx_ready, _require, free_port
from urbanbrain.reading import Partitioner
from urbanbrain.retention import LONGTERM, RAW, WINDOWS, init, route
from urbanbrain.settings import Settings
from urbanbrain.simulators.city import City
from urbanbrain.simulators.engine import Simulation
from urbanbrain.streams.derive import IndexCalculator
from urbanbrain.streams.processor import WindowStage
from urbanbrain.streams.rollup_stage import RollupStage, points_to_lines
from urbanbrain.streams.settings import StreamsSettings
from urbanbrain.streams.state import DictStore

RESULTS = Path(__file__).resolve().parent / "results" / "storage.json"
DB = "urbanbrain"


def start_influxd(workdir: Path) -> ManagedProcess:
    port, rpc = free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "influxdb.conf"
    conf.write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{workdir / 'meta'}"
[data]
  dir = "{workdir / 'data'}"
  wal-dir = "{workdir / 'wal'}"
  index-version = "tsi1"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "2s"
  compact-full-write-cold-duration = "5s"
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  max-body-size = 0
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[ifql]
  enabled = false
""")
    srv = ManagedProcess("influxd", [_require("influxd", "influxdb"), "run", "-config", str(conf)],
                         workdir / "influxd.log", port)
    srv.start(_influx_ready(port), timeout=60)
    return srv


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


async def fill(settings: Settings, days: float, size: str, partitions: int) -> dict:
    """Run the worker's stages over the simulated city; returns points written per policy."""
    city = City.generate(7, size)
    end = int(time.time() * 1000) // 60_000 * 60_000
    sim = Simulation(city, 7, start_ms=end - int(days * 86_400_000), interval_s=10.0)
    ss = StreamsSettings(streams_lateness_s=60, kafka_partitions=partitions,
                         streams_rollup_grace_s=0)
    calc = IndexCalculator(None)
    stage = WindowStage(ss, DictStore(), calc)
    rollups = RollupStage(DictStore(), expected_sources=partitions, grace_s=0,
                          retention_ms=2 * 3_600_000)
    part = Partitioner(partitions)
    enc = ReadingLineEncoder()
    sensors = city.sensors
    written: dict[str, int] = defaultdict(int)
    pending: dict[str, list[str]] = defaultdict(list)
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    t0 = time.perf_counter()
    minutes = 0
    async with InfluxWriter(settings) as w:

        async def flush(force: bool = False) -> None:
            for rp, lines in pending.items():
                if lines and (force or len(lines) >= 20_000):
                    refused = await w.write(lines, rp=rp)
                    written[rp] += len(lines) - len(refused)
                    lines.clear()

        frames = sim.frames(until_ms=end)
        while True:
            batch = [f for _, f in zip(range(6), frames)]  # one minute of 10 s ticks
            if not batch:
                break
            by_key: dict[tuple[str, int], list[dict]] = defaultdict(list)
            for sid, ts, metrics in (r for fr in batch for r in fr.readings(city)):
                s = _sensor(city, sid)
                r = {"sensor_id": sid, "domain": s.domain, "kind": s.kind,
                     "district": s.district, "ts": ts, "recv": ts, "metrics": metrics}
                by_key[(f"readings.{s.domain}", part(sid))].append(r)
            raw, _ = enc.encode([r for rs in by_key.values() for r in rs])
            pending[RAW] += raw
            for (topic, p), rs in sorted(by_key.items()):
                res = stage.process(topic, p, [(offsets[(topic, p)], rs)])
                offsets[(topic, p)] += 1
                out = stage.render(topic, p, res)
                pending[WINDOWS] += out.lines
                pending[LONGTERM] += out.hourly_lines
                for partial in out.partials:
                    rollups.add(p, partial)
                stage.finish(p, res)
            for rp, lines in route(points_to_lines(rollups.due(now=time.monotonic()))).items():
                pending[rp] += lines
            minutes += 1
            if minutes % 60 == 0:
                await flush()
                done = minutes / (days * 1440)
                print(f"\r{done:6.1%} simulated, {sum(written.values()):,} points, "
                      f"{time.perf_counter() - t0:.0f} s", end="", file=sys.stderr)
        await flush(force=True)
    print(file=sys.stderr)
    return {"points": dict(written), "sensors": len(sensors), "days": days,
            "fill_s": round(time.perf_counter() - t0, 1),
            "raw_readings_per_sensor_day": written[RAW] / len(sensors) / days}


_SENSOR_CACHE: dict[str, object] = {}


def _sensor(city: City, sid: str):  # noqa: ANN202
    if not _SENSOR_CACHE:
        _SENSOR_CACHE.update({s.sensor_id: s for s in city.sensors})
    return _SENSOR_CACHE[sid]


def tsm_bytes(path: Path) -> int:
    """The compressed points alone (TSM files), without the tsi1 index, whose size follows
    the number of series, not of points."""
    return sum(f.stat().st_size for f in path.rglob("*.tsm")) if path.exists() else 0


def wait_compacted(data: Path, quiet_s: float = 25.0, limit_s: float = 600.0) -> dict[str, int]:
    """Policy directory sizes once they stopped changing for ``quiet_s`` (snapshots and full
    compactions of cold shards done)."""
    last, since, deadline = None, time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() < deadline:
        sizes = {p.name: du(p) for p in (data / DB).iterdir() if p.is_dir()}
        if sizes != last:
            last, since = sizes, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(2.0)
    return last or {}


def timed(client: InfluxQL, q: str, runs: int = 5) -> dict:
    times, rows = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        res = client.query(q)
        times.append(time.perf_counter() - t)
        rows = sum(len(s["values"]) for s in res)
    return {"median_ms": round(statistics.median(times) * 1000, 1),
            "min_ms": round(min(times) * 1000, 1), "rows": rows, "query": q}


def panel_times(client: InfluxQL) -> dict:
    """7-day panels: as main asked them before resolution picking, and as the spec asks now."""
    models = build()
    city = models["city.json"]
    traffic = models["traffic.json"]
    out: dict[str, dict] = {}
    before = {
        "Congestion by district": (
            'SELECT mean("congestion_index_mean") AS "congestion_index_mean" FROM '
            '"windows"."district_1m" WHERE time > now() - 7d AND "domain" = \'traffic\' AND '
            '"district" =~ /^.*$/ GROUP BY time(10m), "district" fill(none)'),
        "Occupancy by sensor": (
            'SELECT mean("occupancy_pct") AS "occupancy_pct" FROM "raw"."traffic" WHERE '
            'time > now() - 7d AND "district" =~ /^.*$/ AND "sensor" =~ /^.*$/ '
            'GROUP BY time(10m), "sensor" fill(none)'),
    }
    for title, model in (("Congestion by district", city), ("Occupancy by sensor", traffic)):
        values = resolve_variables(model, client, time_range="7d")
        pq = next(p for p in panel_queries(model) if p.panel == title)
        after = expand(pq.query, values, time_range="7d", interval="auto",
                       min_interval=pq.min_interval)
        out[title] = {"before": timed(client, before[title]), "after": timed(client, after)}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--size", default="tiny", help="city size (tiny = 120 sensors)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--keep", action="store_true", help="keep the influxd data directory")
    ap.add_argument("--out", type=Path, default=RESULTS, help="result file")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    srv = start_influxd(work / "influxdb")
    try:
        s = Settings(influx_url=f"http://127.0.0.1:{srv.port}", influx_db=DB,
                     influx_admin_username="bench", influx_admin_password="bench",
                     influx_batch_points=5000)
        asyncio.run(init(s))  # auth is off here: the admin name is only carried along
        filled = asyncio.run(fill(s, args.days, args.size, args.partitions))
        sizes = wait_compacted(work / "influxdb" / "data")
        series_file = du(work / "influxdb" / "data" / DB / "_series")
        tiers = {}
        for rp, n in filled["points"].items():
            b = sizes.get(rp, 0)
            tsm = tsm_bytes(work / "influxdb" / "data" / DB / rp)
            tiers[rp] = {"points": n, "bytes": b, "bytes_per_point": round(b / n, 2) if n else None,
                         "tsm_bytes": tsm,
                         "tsm_bytes_per_point": round(tsm / n, 2) if n else None,
                         "points_per_sensor_day": round(n / filled["sensors"] / args.days, 1)}
        client = InfluxQL(s.influx_url, DB)
        result = {
            "date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores",
            "influxd": subprocess.run([_require("influxd", "influxdb"), "version"],
                                      capture_output=True,
                                      text=True).stdout.strip(),
            **filled, "tiers": tiers, "series_file_bytes": series_file,
            "wal_bytes_after": du(work / "influxdb" / "wal"),
            "panels_7d": panel_times(client),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "panels_7d"}, indent=1))
        for title, ba in result["panels_7d"].items():
            print(f"{title}: before {ba['before']['median_ms']} ms ({ba['before']['rows']} rows)"
                  f", after {ba['after']['median_ms']} ms ({ba['after']['rows']} rows)")
    finally:
        srv.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
