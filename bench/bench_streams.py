"""Benchmark: readings/s one Faust worker pushes through raw storage, windows and indices.

    .venv/bin/python bench/bench_streams.py [--readings 500000] [--batch 500] [--sensors 2500]

1. starts its own tansu + influxd (tmp dir), pre-produces the readings (``--sensors`` per
   domain, 4 domains, one reading every ``--period`` s (10) each, in Kafka records of ``--batch``);
2. starts one worker and times how long it takes to drain them (from the worker's ``pipeline``
   point, written every second here), and checks the windows it wrote;
3. profiles the worker's own code path in-process (decode, line protocol, windows, indices,
   no I/O) with cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness import Component, Influx, wait_until  # noqa: E402

from urbanbrain import gctune  # noqa: E402
from urbanbrain.lineprotocol import ReadingLineEncoder  # noqa: E402
from urbanbrain.localstack import LocalStack  # noqa: E402
from urbanbrain.reading import decode_batch, encode_batch  # noqa: E402
from urbanbrain.streams.derive import IndexCalculator  # noqa: E402
from urbanbrain.streams.loadgen import batches_by_partition, produce_sync, steady_readings  # noqa: E402
from urbanbrain.streams.processor import WindowStage  # noqa: E402
from urbanbrain.streams.settings import StreamsSettings  # noqa: E402
from urbanbrain.streams.state import DictStore  # noqa: E402

MIN = 60_000


def make(n: int, sensors: int, batch: int, period_s: int = 10) -> list:
    seconds = max(period_s, n // (4 * sensors) * period_s)
    t0 = (int(time.time() * 1000) - 6 * 3600_000) // MIN * MIN
    readings = steady_readings("b", t0, sensors_per_domain=sensors, seconds=seconds,
                               period_s=period_s)
    return batches_by_partition(readings[:n], 4, batch_size=batch)


def end_to_end(records: list, n: int, workdir: Path) -> dict:
    stack = LocalStack(workdir).start(mqtt=False)
    stack.provision_database("bench")
    worker = None
    try:
        bootstrap = f"127.0.0.1:{stack.kafka.port}"
        app_id = f"bench-{uuid.uuid4().hex[:6]}"
        env = {**stack.env(), "URBANBRAIN_STREAMS_APP_ID": app_id,
               "URBANBRAIN_INFLUX_DB": "bench", "URBANBRAIN_STREAMS_REPORT_INTERVAL_S": "1",
               "URBANBRAIN_STREAMS_LATENESS_S": "60", "URBANBRAIN_STREAMS_ROLLUP_GRACE_S": "2"}
        from urbanbrain.kafka import ensure_topics
        from urbanbrain.settings import Settings
        import asyncio

        asyncio.run(ensure_topics(Settings(kafka_bootstrap=bootstrap)))
        t = time.perf_counter()
        produce_sync(bootstrap, records)
        produce_s = time.perf_counter() - t
        worker = Component("streams", ["streams", "worker", "-l", "warning"], env,
                           workdir / "worker.log").start()
        influx = Influx.reader(stack, "bench")
        t_start = time.perf_counter()

        def progress() -> list:
            try:
                return influx.rows("SELECT readings_total, windows_emitted_total, late_total, "
                                   "agent_batch_ms, write_batch_ms FROM pipeline.pipeline")
            except Exception:  # noqa: BLE001
                return []

        wait_until(lambda: any(r["readings_total"] > 0 for r in progress()), 60, 0.2, "start")
        rows = progress()
        first = min((r for r in rows if r["readings_total"] > 0), key=lambda r: r["time"])
        wait_until(lambda: any(r["readings_total"] >= n for r in progress()), 300, 0.5, "drain")
        rows = progress()
        done = min((r for r in rows if r["readings_total"] >= n), key=lambda r: r["time"])
        span_s = (done["time"] - first["time"]) / 1000
        drained = done["readings_total"] - first["readings_total"]
        return {
            "produce_readings_per_s": n / produce_s,
            "worker_start_to_drained_s": time.perf_counter() - t_start,
            "readings_per_s": drained / span_s if span_s > 0 else float("nan"),
            "windows_emitted": done["windows_emitted_total"], "late": done["late_total"],
            "agent_batch_ms_last": done["agent_batch_ms"], "write_batch_ms_last": done["write_batch_ms"],
        }
    except BaseException:
        if worker is not None:
            print(worker.log()[-3000:], file=sys.stderr)
        raise
    finally:
        if worker is not None:
            worker.stop()
        stack.stop()


def decode_take(values: list, offsets: dict) -> tuple[list, dict]:
    """One agent batch as ``store_readings`` sees it: all readings, and (offset, batch)
    per topic-partition with offsets counted on in ``offsets``."""
    by_tp: dict = defaultdict(list)
    readings: list = []
    for topic, part, v in values:
        batch = decode_batch(v)
        readings.extend(batch)
        by_tp[(topic, part)].append((offsets[(topic, part)], batch))
        offsets[(topic, part)] += 1
    return readings, by_tp


def in_process(records: list, take: int = 50) -> tuple[float, str]:
    """The agent's CPU path without Kafka/InfluxDB I/O, under cProfile."""
    values = [(t, p, encode_batch(b)) for t, p, b in records]
    stage = WindowStage(StreamsSettings(streams_lateness_s=60), DictStore(), IndexCalculator(None))
    encoder = ReadingLineEncoder()
    offsets: dict = defaultdict(int)
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    n = 0
    for i in range(0, len(values), take):
        readings, by_tp = decode_take(values[i:i + take], offsets)
        encoder.encode(readings)
        for (topic, part), recs in by_tp.items():
            res = stage.process(topic, part, recs)
            stage.render(topic, part, res)
            stage.finish(part, res)
        n += len(readings)
    prof.disable()
    elapsed = time.perf_counter() - t
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
    return n / elapsed, out.getvalue()


def stages(records: list, take: int = 200, checkpoint_every: int = 1) -> dict[str, float]:
    """CPU microseconds per reading of each stage of the agent batch, alert rules included
    (starter set, one evaluator per partition, ticked once per batch; rule state written
    every ``checkpoint_every`` batches: every batch, as the worker by default, or less
    often, as with ``URBANBRAIN_ALERT_STATE_CHECKPOINT_S``)."""
    from urbanbrain.rules import Evaluator
    from urbanbrain.rules.loader import load_rules
    from urbanbrain.streams.alerting import DEFAULT_RULES_PATH

    rs = load_rules([str(DEFAULT_RULES_PATH)])
    values = [(t, p, encode_batch(b)) for t, p, b in records]
    stage = WindowStage(StreamsSettings(streams_lateness_s=60), DictStore(), IndexCalculator(None))
    encoder = ReadingLineEncoder()
    evaluators: dict = {}
    offsets: dict = defaultdict(int)
    cost: dict[str, float] = defaultdict(float)
    clock = time.process_time
    n = 0
    for b, i in enumerate(range(0, len(values), take)):
        t0 = clock()
        readings, by_tp = decode_take(values[i:i + take], offsets)
        t1 = clock()
        encoder.encode(readings)
        t2 = clock()
        for (topic, part), recs in by_tp.items():
            res = stage.process(topic, part, recs)
            stage.render(topic, part, res)
            stage.finish(part, res)
        t3 = clock()
        for (topic, part), recs in by_tp.items():
            ev = evaluators.get((topic, part))
            if ev is None:
                ev = evaluators[(topic, part)] = Evaluator(rs, {}, scope="sensor")
            rd = [r for _, batch in recs for r in batch]
            ev.observe(rd)
        t4 = clock()
        for (topic, part), recs in by_tp.items():
            ev = evaluators[(topic, part)]
            ev.tick(max(r["ts"] for _, batch in recs for r in batch))
        t5 = clock()
        for ev in evaluators.values() if b % checkpoint_every == 0 else ():
            ev.take_encoded()
        t6 = clock()
        for k, dt in (("decode", t1 - t0), ("raw_lines", t2 - t1), ("windows", t3 - t2),
                      ("rules_observe", t4 - t3), ("rules_tick", t5 - t4),
                      ("rules_state", t6 - t5)):
            cost[k] += dt
        n += len(readings)
    out = {k: round(v * 1e6 / n, 2) for k, v in cost.items()}
    out["total"] = round(sum(cost.values()) * 1e6 / n, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--sensors", type=int, default=2500, help="per domain")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--stages-only", action="store_true", help="per-stage CPU costs only")
    ap.add_argument("--period", type=int, default=10,
                    help="seconds between a sensor's readings (60: every reading closes a window)")
    args = ap.parse_args()
    gctune.tune()  # the worker's collector settings (streams/app.py): one path
    records = make(args.readings, args.sensors, args.batch, args.period)
    n = sum(len(b) for _, _, b in records)
    print(f"{n} readings in {len(records)} records")
    if not args.skip_e2e:
        with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
            res = end_to_end(records, n, Path(tmp))
        for k, v in res.items():
            print(f"  {k}: {v:,.1f}" if isinstance(v, float) else f"  {k}: {v}")
    print("CPU µs per reading by stage (in process, no I/O):", stages(records))
    if args.stages_only:
        return
    rate, profile = in_process(records)
    print(f"in-process CPU path (no I/O, under cProfile): {rate:,.0f} readings/s")
    print(profile)


if __name__ == "__main__":
    main()
