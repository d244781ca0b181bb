"""State per sensor, and whether it plateaus: the worker's stages over hours of event time.

A simulated city (``--size`` sensors, the simulator's signals and registry, one reading per
sensor every ``--interval`` seconds) is fed through :class:`InProcessWorker` (the stages a
streams worker runs: windows, indices, the starter rules' sensor and district stages),
``--tick`` seconds of event time per feed (one worker batch), for ``--hours``. Every ``--sample`` of event time it records:

* the **durable state** in bytes per sensor, as the changelog topics would carry it: every
  store entry after a forced checkpoint (window state, sensor rule state, district state);
* the process **RSS** after a full garbage collection;
* the readings/s of the feed (CPU of this process only: no Kafka, no InfluxDB);
* the **changelog writes** per reading, entries and bytes per store, with rule state
  written as often as the worker writes it (``--checkpoint-s``, the worker's
  ``URBANBRAIN_ALERT_STATE_CHECKPOINT_S``, 30 s by default, 0 = every batch; its clock
  here is event time, as for a worker keeping pace with the city): each is a Kafka record the worker
  encodes and sends and tansu stores, so this is a per-reading cost that grows with
  the size of an entry, not with the reading.

Memory plateaus when both stop growing once the longest rule window and the window stage's
lateness have filled (the first ~40 min of event time); the slope after ``--warmup`` is
reported per event-hour. Time-of-day and weekly baselines grow with the hours of the day
and week they have seen, so runs shorter than a day show part of that growth.

    .venv/bin/python bench/bench_state.py --size 2000 --hours 6
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from urbanbrain import gctune
from urbanbrain.rules import RuleSet
from urbanbrain.simulators.city import City
from urbanbrain.simulators.engine import Simulation
from urbanbrain.streams import alert_stage
from urbanbrain.streams.inprocess import InProcessWorker, Stores
from urbanbrain.streams.state import DictStore

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules" / "city"
MIN = 60_000
STORES = ("windows", "sensors", "districts")


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


class CountingStore(DictStore):
    """A DictStore that counts what a changelog would carry: puts, deletes, bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = self.deletes = self.bytes = 0

    def put(self, partition: int, key: str, value: bytes) -> None:
        self.puts += 1
        self.bytes += len(key) + len(value)
        super().put(partition, key, value)

    def delete(self, partition: int, key: str) -> None:
        self.deletes += 1
        self.bytes += len(key)
        super().delete(partition, key)

    def counts(self) -> tuple[int, int, int]:
        return self.puts, self.deletes, self.bytes


def store_bytes(worker: InProcessWorker) -> dict[str, int]:
    """Bytes of every durable store after a forced checkpoint of the rule stages."""
    worker.sensors.persist_all()
    worker.districts.persist_all()
    out = {"sensor_rules": sum(len(k) + len(v) for k, v in worker.sensors.store.items()),
           "district_rules": sum(len(k) + len(v) for k, v in worker.districts.store.items())}
    if worker.windows is not None:
        out["windows"] = sum(len(k) + len(v) for k, v in worker.windows.store.items())
    return out


def run(size: int, hours: float, interval_s: int, sample_min: int, warmup_min: int,
        seed: int, checkpoint_s: float = 0.0, tick_s: float = 60.0) -> dict:
    city = City.generate(seed=seed, size=size)
    tmp = Path(tempfile.mkdtemp(prefix="ub-state-"))
    reg = city.write_registry(tmp / "registry.csv")
    stores = Stores(windows=CountingStore(), sensors=CountingStore(),
                    districts=CountingStore())
    # the stages' checkpoint clock follows event time: a worker at the city's pace
    clock = [0.0]
    alert_stage.time = SimpleNamespace(monotonic=lambda: clock[0])
    worker = InProcessWorker(RuleSet.load([str(RULES)]), reg, outputs=True, stores=stores,
                             checkpoint_s=checkpoint_s)
    written0: dict[str, tuple[int, int, int]] = {}
    forced = {k: [0, 0, 0] for k in STORES}
    fed0 = 0
    start = (int(time.time() * 1000) - int(hours * 3_600_000)) // 3_600_000 * 3_600_000
    sim = Simulation(city, seed, start_ms=start, interval_s=interval_s)
    attrs = {s.sensor_id: (s.domain, s.kind, s.district) for s in city.sensors}
    end = start + int(hours * 3_600_000)
    samples = []
    tick: list[dict] = []
    tick_ms = int(tick_s * 1000)
    next_tick = start + tick_ms
    fed = 0
    cpu = 0.0
    t_last_sample = start
    pauses = gctune.pauses()
    gen2_0, forced_gc = pauses.collections[2], 0
    for frame in sim.frames(until_ms=end):
        if frame.t_ms >= next_tick:
            clock[0] = frame.t_ms / 1000.0
            t0 = time.process_time()
            worker.feed(tick)
            cpu += time.process_time() - t0
            # the in-process worker keeps what it produced for the backtest: not state
            worker.events.clear()
            worker.samples.clear()
            fed += len(tick)
            tick = []
            next_tick += tick_ms
            if frame.t_ms - t_last_sample >= sample_min * MIN:
                t_last_sample = frame.t_ms
                if not written0 and (frame.t_ms - start) >= warmup_min * MIN:
                    # changelog writes are counted after the warm-up (fresh state first)
                    written0 = {k: getattr(stores, k).counts() for k in STORES}
                    fed0 = fed
                t_gc = time.perf_counter()
                gc.collect()  # a full collection: its time is the worker's gen-2 pause now
                full_gc_s = time.perf_counter() - t_gc
                forced_gc += 1
                before = {k: getattr(stores, k).counts() for k in STORES}
                by = store_bytes(worker)
                if written0:
                    for k in STORES:
                        forced[k] = [f + b - a for f, a, b in zip(
                            forced[k], before[k], getattr(stores, k).counts())]
                samples.append({"event_min": (frame.t_ms - start) // MIN, "rss_mb": round(rss_mb(), 1),
                                "state_bytes": by, "fed": fed,
                                "full_gc_s": round(full_gc_s, 3),
                                "readings_per_s": round(fed / cpu) if cpu else None})
                print(json.dumps(samples[-1]), flush=True)
        for sid, ts, metrics in frame.readings(city):
            d, k, dist = attrs[sid]
            tick.append({"sensor_id": sid, "ts": ts, "recv": ts, "domain": d, "kind": k,
                         "district": dist, "metrics": metrics})
    n = len(city.sensors)
    after = [s for s in samples if s["event_min"] >= warmup_min]

    def slope(key) -> float | None:  # noqa: ANN001
        if len(after) < 2:
            return None
        x = np.array([s["event_min"] / 60 for s in after])
        y = np.array([key(s) for s in after], dtype=float)
        return float(np.polyfit(x, y, 1)[0])

    last = samples[-1]
    total = sum(last["state_bytes"].values())
    written: dict[str, dict[str, float]] = {}
    if written0 and fed > fed0:
        # the forced checkpoints of store_bytes() are not the worker's: left out
        for k in STORES:
            puts, dels, nbytes = (b - a - f for a, b, f in zip(
                written0[k], getattr(stores, k).counts(), forced[k]))
            written[k] = {"entries_per_reading": round((puts + dels) / (fed - fed0), 3),
                          "bytes_per_reading": round(nbytes / (fed - fed0), 1)}
    return {
        "sensors": n, "hours": hours, "interval_s": interval_s, "readings": fed,
        "readings_per_s_cpu": round(fed / cpu) if cpu else None,
        "state_bytes_per_sensor": {k: round(v / n) for k, v in last["state_bytes"].items()},
        "state_bytes_per_sensor_total": round(total / n),
        "checkpoint_s": checkpoint_s, "tick_s": tick_s,
        "changelog_writes_after_warmup": written,
        "rss_mb_end": last["rss_mb"],
        # a full collection walks the whole heap: how long one stops the worker at this size
        "full_gc_s_end": last["full_gc_s"],
        "full_gcs_automatic": pauses.collections[2] - gen2_0 - forced_gc,
        "rss_slope_mb_per_event_hour_after_warmup": slope(lambda s: s["rss_mb"]),
        "state_slope_bytes_per_sensor_per_event_hour_after_warmup":
            None if (sl := slope(lambda s: sum(s["state_bytes"].values()))) is None else sl / n,
        "samples": samples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2000, help="sensors in the simulated city")
    ap.add_argument("--hours", type=float, default=6.0, help="event time to feed")
    ap.add_argument("--interval", type=int, default=10, help="seconds between readings")
    ap.add_argument("--sample", type=int, default=30, help="minutes of event time per sample")
    ap.add_argument("--warmup", type=int, default=60, help="event minutes left out of slopes")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tick", type=float, default=60.0,
                    help="seconds of event time per feed (one worker batch): at the "
                         "reporting interval, each feed holds one reading per sensor, as a "
                         "live worker's batch does at a real-time pace")
    ap.add_argument("--checkpoint-s", type=float, default=30.0,
                    help="sensor rule state written at most this often (the worker's "
                         "URBANBRAIN_ALERT_STATE_CHECKPOINT_S; 30, its default; 0: every batch)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "state.json")
    args = ap.parse_args()
    gctune.tune()  # the worker's collector settings (streams/app.py)
    res = run(args.size, args.hours, args.interval, args.sample, args.warmup, args.seed,
              args.checkpoint_s, args.tick)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
