"""End to end: simulator → MQTT → ingest → Kafka → Faust → InfluxDB (+ alerts).

A script, not a test. Two modes, both on real servers started in a temp dir:

* **throughput** (default): publish a simulated city as fast as the publisher can (event
  times ending at "now") and time until every reading is a raw point in InfluxDB. The
  backlog this builds in MQTT/Kafka is drained at the pipeline's own speed, so the
  number is the sustained rate, not the offered one.
* **paced** (``--rate R``): offer R readings/s in real time (``interval_s`` = sensors / R,
  event time = wall time) for ``--seconds``, and read the freshness histograms the
  worker writes to ``pipeline`` (event time → raw point acknowledged by InfluxDB; rule
  evaluation time → alert handed to Kafka) plus memory and consumer lag over time. This
  is the latency and soak mode.

``python bench/bench_e2e.py [--format senml|json] [--workers 2] [--ingest 2] [--rate 20000
--seconds 600] [--no-rules] [--profile]``. Writes ``bench/results/e2e-<label>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bench_limits import proc_cpu_s  # noqa: E402 - bench/ is the script's own folder
from harness import Component  # noqa: E402

from urbanbrain import latency  # noqa: E402
from urbanbrain.influxql import InfluxQL, QueryError  # noqa: E402
from urbanbrain.localstack import LocalStack  # noqa: E402
from urbanbrain.components import role_env  # noqa: E402
from urbanbrain.settings import Settings  # noqa: E402
from urbanbrain.simulators.city import City  # noqa: E402
from urbanbrain.simulators.runner import run_simulation  # noqa: E402
from urbanbrain.up import count_raw_points  # noqa: E402

RESULTS = ROOT / "bench" / "results"
STARTER_RULES = ROOT / "rules" / "city"
#: a rule that fires and resolves often under normal traffic, so a paced run has enough
#: alerts to give a latency distribution (the starter rules fire only on incidents)
BENCH_RULE = """\
groups:
  - name: bench
    rules:
      - alert: BenchSlowTraffic
        kind: threshold
        selector: {domain: traffic, kind: loop}
        metric: speed_kmh
        window: 1m
        aggregate: last
        condition: {op: '<', value: %(below)s}
        labels: {severity: info}
        annotations:
          summary: 'speed {{ $value }} km/h at {{ $labels.sensor }}'
"""
#: alert transitions a second the paced bench aims for: enough for a p99 in a minute
BENCH_TRANSITIONS_PER_S = 20.0


def bench_threshold(city: City, interval_s: float, start_ms: int,
                    per_s: float = BENCH_TRANSITIONS_PER_S, frames: int = 40) -> int:
    """The speed below which ``BenchSlowTraffic`` fires, chosen on the simulation the run
    will publish (same city, seed and start) so that about ``per_s`` transitions a second
    happen. A fixed threshold fired 2 alerts at night and ~200 a second by day: the p99
    of rule evaluation → alert then stood on 2 observations."""
    from urbanbrain.simulators.engine import Simulation

    sim = Simulation(city, 7, start_ms=start_ms, interval_s=interval_s)
    speeds: dict[str, list[float]] = {}
    for frame in sim.frames(frames):
        for sensor, _, metrics in frame.readings(city):
            v = metrics.get("speed_kmh")
            if v is not None:
                speeds.setdefault(sensor, []).append(v)
    series = [np.asarray(v) for v in speeds.values()]
    seconds = frames * interval_s

    def rate(below: int) -> float:
        return sum(int(np.count_nonzero(np.diff(v < below))) for v in series) / seconds

    return min(range(15, 60), key=lambda b: abs(rate(b) - per_s))

#: the two thresholds of the Node-RED peer's flow (bench/peers/nodered/flow.json)
PEER_RULES = """\
groups:
  - name: peer
    rules:
      - alert: TrafficJam
        kind: threshold
        selector: {domain: traffic}
        metric: speed_kmh
        window: 1m
        aggregate: last
        condition: {op: '<', value: 10}
        labels: {severity: warning}
        annotations: {summary: 'speed {{ $value }} km/h'}
      - alert: PM25High
        kind: threshold
        selector: {domain: environment}
        metric: pm25_ugm3
        window: 1m
        aggregate: last
        condition: {op: '>', value: 55}
        labels: {severity: warning}
        annotations: {summary: 'PM2.5 {{ $value }}'}
"""


@dataclass
class E2EConfig:
    fmt: str = "senml"
    size: str | int | None = None  # None: "large" for throughput, rate × PACED_TICK_S if paced
    minutes: float = 20.0  # throughput mode: simulated minutes
    interval_s: float = 60.0  # throughput mode: each sensor reports every interval_s
    rate: float | None = None  # paced mode: offered readings/s
    tick_s: float = 0.5  # paced mode without a size: one tick (a burst) is this much load
    seconds: float = 60.0  # paced mode: how long
    workers: int = 1
    ingest: int = 1
    #: raw-store processes (``urbanbrain streams store-raw``, a consumer group of their
    #: own); 0: the workers store raw points themselves
    raw_stores: int = 0
    rules: bool = True
    peer_flow: bool = False  # Node-RED's flow: raw points + its two threshold rules, no windows
    profile: bool = False
    label: str = ""
    settle_s: float = 0.0  # paced mode: slopes are also reported from this many seconds on

    def city_size(self) -> str | int:
        """Paced runs size the city so one tick is ``tick_s`` of load: the simulator
        sends every sensor at the same tick time, and a tick's burst waits for itself."""
        if self.size is not None:
            return int(self.size) if str(self.size).isdigit() else self.size
        return max(120, round(self.rate * self.tick_s)) if self.rate else "large"

    def name(self) -> str:
        if self.label:
            return self.label
        mode = f"paced{int(self.rate)}" if self.rate else "throughput"
        if not self.rate and self.interval_s != 60:
            mode += f"{self.interval_s:g}s"
        return (f"e2e-{self.fmt}-{mode}-w{self.workers}-i{self.ingest}"
                f"{f'-r{self.raw_stores}' if self.raw_stores else ''}"
                f"{'' if self.rules else '-norules'}{'-peerflow' if self.peer_flow else ''}")


@dataclass
class ProcSampler:
    """CPU seconds and RSS of our processes, sampled from /proc (no psutil needed)."""

    pids: dict[str, int]
    samples: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def _read(pid: int) -> tuple[float, float] | None:
        try:
            rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            return None  # the process is gone
        return proc_cpu_s(pid), rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    def sample(self) -> dict[str, Any]:
        row: dict[str, Any] = {"t": time.monotonic()}
        for name, pid in self.pids.items():
            v = self._read(pid)
            if v is not None:
                row[name] = {"cpu_s": v[0], "rss_mb": round(v[1], 1)}
        self.samples.append(row)
        return row

    def cpu_per_item(self, first: dict[str, Any], last: dict[str, Any], n: int) -> dict[str, float]:
        """CPU microseconds per reading and process: comparable on a busy machine, where
        the rates are not."""
        return {k: round((last[k]["cpu_s"] - first[k]["cpu_s"]) * 1e6 / max(n, 1), 1)
                for k in self.pids if k in first and k in last}

    def cpu_share(self, first: dict[str, Any], last: dict[str, Any]) -> dict[str, float]:
        """Cores used per process between two samples (1.0 = one core busy)."""
        dt = max(last["t"] - first["t"], 1e-9)
        return {n: round((last[n]["cpu_s"] - first[n]["cpu_s"]) / dt, 2)
                for n in self.pids if n in first and n in last}


class Pipeline:
    """Servers plus our components, started for one run and always stopped."""

    def __init__(self, cfg: E2EConfig, work: Path) -> None:
        self.cfg, self.work = cfg, work
        self.stack = LocalStack(work / "stack").start()
        try:
            self._setup(cfg, work)
        except BaseException:
            self.stack.stop()  # servers started for a run that never began
            raise

    def _setup(self, cfg: E2EConfig, work: Path) -> None:
        self.stack.provision_database("bench")  # as compose's first start: grants, policies
        self.env = {**self.stack.env(), "URBANBRAIN_INFLUX_DB": "bench",
                    "URBANBRAIN_DATA_DIR": str(work),
                    "URBANBRAIN_REGISTRY_PATH": str(work / "registry.csv"),
                    "URBANBRAIN_STREAMS_REPORT_INTERVAL_S": "1"}
        rules_dir = work / "rules"
        if cfg.peer_flow:
            rules_dir.mkdir()
            (rules_dir / "peer.yaml").write_text(PEER_RULES)
            self.env["URBANBRAIN_STREAMS_WINDOWS"] = "false"
        elif cfg.rules:
            shutil.copytree(STARTER_RULES, rules_dir)
            if cfg.rate:  # paced: enough alerts for percentiles; throughput: starter set only
                city = City.generate(7, cfg.city_size())
                self.bench_below = bench_threshold(city, len(city.sensors) / cfg.rate,
                                                   int(time.time() * 1000))
                (rules_dir / "bench.yaml").write_text(BENCH_RULE % {"below": self.bench_below})
        else:
            rules_dir.mkdir()
            (rules_dir / "none.yaml").write_text("groups: []\n")
        self.env["URBANBRAIN_ALERT_RULES_PATH"] = str(rules_dir)
        if cfg.ingest > 1:
            self.env["URBANBRAIN_MQTT_SHARED_GROUP"] = "bench"
        if cfg.raw_stores:
            self.env["URBANBRAIN_STREAMS_RAW_POINTS"] = "own-group"
        # the simulator's own account (the production ACL lets it write the domain trees)
        self.settings = Settings(**{k[len("URBANBRAIN_"):].lower(): v
                                    for k, v in role_env(self.env, "simulator").items()
                                    if k[len("URBANBRAIN_"):].lower() in Settings.model_fields})
        self.components: list[Component] = []
        for i in range(cfg.ingest):
            env = {**self.env, "URBANBRAIN_MQTT_CLIENT_ID": f"bench-ingest-{i}"}
            self.components.append(Component(f"ingest{i}", ["ingest", "-l", "info"], env,
                                             work / f"ingest{i}.log"))
        for i in range(cfg.workers):
            self.components.append(Component(f"streams{i}", ["streams", "worker", "-l", "info"],
                                             self.env, work / f"streams{i}.log"))
        for i in range(cfg.raw_stores):
            self.components.append(Component(f"store{i}", ["streams", "store-raw", "-l", "info"],
                                             self.env, work / f"store{i}.log"))
        #: whose ``pipeline`` points carry the event → stored latency
        self.stored_stage = "raw" if cfg.raw_stores else "streams"
        self.influx = InfluxQL(self.env["URBANBRAIN_INFLUX_URL"], "bench",
                               *self.stack.influx_login("reader"))
        #: counting scans millions of points on a busy server: a 10-s timeout undercounted
        self.counter = InfluxQL(self.env["URBANBRAIN_INFLUX_URL"], "bench",
                                *self.stack.influx_login("reader"), timeout=180.0)

    def start(self) -> None:
        for c in self.components:
            c.start()
        deadline = time.monotonic() + 90
        workers = [c for c in self.components if c.name.startswith("streams")]
        ingests = [c for c in self.components if c.name.startswith("ingest")]
        stores = [c for c in self.components if c.name.startswith("store")]
        while time.monotonic() < deadline:
            ready_w = all("ASSIGNMENT" in w.log() for w in workers)
            # with N workers, the last assignment must give every worker partitions
            if len(workers) > 1:
                ready_w = ready_w and all(
                    '"partitions":{}' not in w.log().rsplit("ASSIGNMENT", 1)[-1] for w in workers)
            ready_i = all("MQTT connected" in i.log() for i in ingests)
            ready_w = ready_w and all("raw store assignment: readings" in c.log() for c in stores)
            if ready_w and ready_i:
                time.sleep(2 if len(workers) > 1 else 0.5)
                return
            for c in self.components:
                if c.exited:
                    raise RuntimeError(f"{c.name} exited:\n{c.log()[-3000:]}")
            time.sleep(0.3)
        raise RuntimeError("pipeline not ready in 90 s")

    def pids(self) -> dict[str, int]:
        out = {c.name: c.proc.pid for c in self.components if c.proc is not None}
        for name in ("mqtt", "kafka", "influx"):
            server = getattr(self.stack, name)
            if server is not None and server.proc is not None:
                out[name] = server.proc.pid
        return out

    def stored(self, last: int = -1) -> int:
        """Raw readings stored; ``last`` (the previous answer) when InfluxDB did not
        answer: an unanswered count is neither progress nor a loss."""
        try:
            return count_raw_points(self.counter, strict=True)
        except QueryError as exc:
            print(f"count of stored readings unanswered ({exc}); retrying", file=sys.stderr)
            return last

    def dead_letters(self) -> int:
        """Readings ingest refused with a reason (``deadletters``): refused, not lost."""
        total = 0
        for s in self.influx.query('SELECT last("count_total") FROM "deadletters"."deadletters" '
                                   "WHERE \"stage\" = 'ingest' GROUP BY \"reason\""):
            total += int(s["values"][0][1] or 0)
        return total

    def pipeline_rows(self, stage: str) -> list[dict[str, Any]]:
        """Last ``pipeline`` point of each worker for ``stage``."""
        series = self.influx.query(
            f"SELECT * FROM pipeline.pipeline WHERE stage = '{stage}' GROUP BY worker "
            "ORDER BY time DESC LIMIT 1")
        rows = []
        for s in series:
            cols = s["columns"]
            rows.append(dict(zip(cols, s["values"][0])))
        return rows

    def agent_phases(self) -> dict[str, float]:
        """Seconds the workers' readings batches spent per phase (summed over workers),
        and ``batches``: how many there were (the mean batch = the sum / batches)."""
        phases: dict[str, float] = {}
        for row in self.pipeline_rows("streams"):
            for k, v in row.items():
                if v is None:
                    continue
                if k.startswith("agent_") and k.endswith("_s_total"):
                    name = k[len("agent_"):-len("_s_total")]
                    phases[name] = phases.get(name, 0) + v
                elif k == "batches_total":
                    phases["batches"] = phases.get("batches", 0) + v
        return phases

    def processed(self) -> int:
        """Readings the workers have taken through their stages (their last report)."""
        return sum(int(r.get("readings_total") or 0) for r in self.pipeline_rows("streams"))

    def histogram(self, stage: str, prefix: str = "lat") -> np.ndarray:
        """Cumulative freshness counts summed over workers."""
        total = np.zeros(len(latency.BOUNDS_MS) + 1)
        for row in self.pipeline_rows(stage):
            total += latency.from_fields(row, prefix=prefix)
        return total

    def stop(self) -> None:
        for c in reversed(self.components):
            c.stop()
        self.stack.stop()


def _py_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("py-spy not installed: no profile", file=sys.stderr)
        return None
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "-o", str(out),
                             "--duration", str(int(seconds)), "--rate", "50", "--nonblocking"],
                            stdout=subprocess.DEVNULL,
                            stderr=out.with_suffix(".err").open("wb"))


def _quantiles(cum: np.ndarray) -> dict[str, float | None]:
    q = latency.quantiles(cum, latency.BOUNDS_MS, (0.5, 0.95, 0.99))
    return {"n": int(cum[-1]), **{k: (round(v) if v is not None else None)
                                  for k, v in zip(("p50_ms", "p95_ms", "p99_ms"), q)}}


def _slope_per_min(ts: list[float], ys: list[float], since_s: float = 0.0) -> float | None:
    """Least-squares slope per minute of ``ys`` over the samples at ``ts >= since_s``: a
    soak's memory is judged after its warm-up (the issue's 10 min), when every sensor has
    reported and every rule window has filled once, not while state is being created."""
    kept = [(t, y) for t, y in zip(ts, ys) if t >= since_s]
    if len(kept) < 3:
        return None
    t, y = zip(*kept)
    return float(np.polyfit(np.asarray(t) / 60.0, np.asarray(y, dtype=float), 1)[0])


def run_throughput(p: Pipeline, cfg: E2EConfig, sampler: ProcSampler) -> dict[str, Any]:
    start_ms = int(time.time() * 1000 - cfg.minutes * 60_000)
    first = sampler.sample()
    t0 = time.monotonic()
    prof = []
    if cfg.profile:
        for name, pid in p.pids().items():
            if name.startswith(("streams", "ingest", "store")):
                prof.append(_py_spy(pid, p.work / f"{name}.pyspy.txt", 120))
    result = run_simulation(p.settings, seed=7, size=cfg.city_size(), speed=0, rate=None,
                            start_ms=start_ms, sim_duration_s=cfg.minutes * 60,
                            interval_s=cfg.interval_s, fmt=cfg.fmt, incidents=False,
                            connections=2)
    t_pub = time.monotonic() - t0
    sent = result.progress.readings
    n, last_n, last_change = 0, -1, time.monotonic()
    while time.monotonic() - last_change < 60:
        n = p.stored(n)
        if n >= sent:
            break
        if n != last_n:
            last_n, last_change = n, time.monotonic()
        time.sleep(2.0)  # counting scans the whole database: don't load influxd for it
    # done = stored *and* through the workers' windows and rules: a raw point can be
    # stored (by the raw store, or by the worker's raw write, which starts before the
    # batch's stages) while the analytics still work on its reading
    while p.processed() < sent and time.monotonic() - last_change < 60:
        time.sleep(0.25)
    t_all = time.monotonic() - t0
    last = sampler.sample()
    phases = p.agent_phases()
    for pr in prof:
        if pr is not None:
            pr.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            pr.wait(30)
    dead = p.dead_letters()
    return {
        "readings": sent, "stored": n, "dead_letters": dead, "lost": sent - n - dead,
        "publish_s": round(t_pub, 2), "end_to_end_s": round(t_all, 2),
        "offered_readings_per_s": round(sent / t_pub),
        "end_to_end_readings_per_s": round(n / t_all),
        "cores_used": sampler.cpu_share(first, last),
        "cpu_us_per_reading": sampler.cpu_per_item(first, last, n),
        "store_agent_phase_s": {k: round(v, 2) for k, v in phases.items()},
    }


def run_paced(p: Pipeline, cfg: E2EConfig, sampler: ProcSampler) -> dict[str, Any]:
    assert cfg.rate
    sensors = len(City.generate(7, cfg.city_size()).sensors)
    interval_s = sensors / cfg.rate
    stop = threading.Event()
    box: dict[str, Any] = {}

    def publish() -> None:
        # start_ms = now exactly: the default aligns to the interval, i.e. up to one
        # interval in the past, which would read as latency
        box["result"] = run_simulation(p.settings, seed=7, size=cfg.city_size(), speed=1.0, rate=None,
                                       interval_s=interval_s, duration_s=cfg.seconds,
                                       start_ms=int(time.time() * 1000),
                                       fmt=cfg.fmt, incidents=False, connections=2,
                                       stop_event=stop)

    pub = threading.Thread(target=publish, daemon=True)
    t0 = time.monotonic()
    pub.start()
    warmup = min(30.0, cfg.seconds / 4)
    time.sleep(warmup)  # first seconds: JIT-free, but caches, table creation, connections
    h0_stored, h0_alerts = p.histogram(p.stored_stage), p.histogram("alerts")
    h0_acked = p.histogram("alerts", prefix="acked")
    first = sampler.sample()
    timeline = []
    while pub.is_alive():
        time.sleep(5)
        row = sampler.sample()
        lag = [r.get("lag_records") for stage in dict.fromkeys(("streams", p.stored_stage))
               for r in p.pipeline_rows(stage)]
        timeline.append({"t": round(row["t"] - t0, 1),
                         "rss_mb": {k: v["rss_mb"] for k, v in row.items() if k != "t"},
                         "lag_records": sum(x or 0 for x in lag)})
    pub.join()
    last = sampler.sample()
    sent = box["result"].progress.readings
    n, last_n, last_change = p.stored(), -1, time.monotonic()
    while n < sent and time.monotonic() - last_change < 60:  # lost = no progress for 60 s
        time.sleep(2)
        n = p.stored(n)
        if n != last_n:
            last_n, last_change = n, time.monotonic()
    drain_s = time.monotonic() - last["t"]
    time.sleep(5.5)  # the next pipeline reports carry the last observations and counts
    dead = p.dead_letters()
    stored_h = latency.delta(p.histogram(p.stored_stage), h0_stored)
    alert_h = latency.delta(p.histogram("alerts"), h0_alerts)
    acked_h = latency.delta(p.histogram("alerts", prefix="acked"), h0_acked)
    ts = [r["t"] for r in timeline]
    worker_rss = [sum(v for k, v in r["rss_mb"].items() if k.startswith("streams"))
                  for r in timeline]
    return {
        "offered_readings_per_s": cfg.rate, "interval_s": round(interval_s, 4),
        "seconds": cfg.seconds, "city_sensors": sensors, "readings": sent, "stored": n,
        "dead_letters": dead, "lost": sent - n - dead,
        "drain_after_publish_s": round(drain_s, 1),
        "achieved_publish_per_s": round(sent / max(last["t"] - t0, 1e-9)),
        "latency_event_to_stored": _quantiles(stored_h),
        "latency_evaluation_to_alert": _quantiles(alert_h),
        # wall clock of the evaluation → Kafka acknowledged the alert (the pipeline's own)
        "latency_evaluated_to_acked": _quantiles(acked_h),
        "bench_rule_below_kmh": getattr(p, "bench_below", None),
        "store_agent_phase_s": {k: round(v, 2) for k, v in p.agent_phases().items()},
        "cores_used": sampler.cpu_share(first, last),
        "cpu_us_per_reading": sampler.cpu_per_item(first, last, n),
        "worker_rss_mb_slope_per_min": _slope_per_min(ts, worker_rss),
        "lag_records_slope_per_min": _slope_per_min(ts, [r["lag_records"] for r in timeline]),
        "max_lag_records": max((r["lag_records"] for r in timeline), default=None),
        **({"settled_from_s": cfg.settle_s,
            "worker_rss_mb_settled_slope_per_min": _slope_per_min(ts, worker_rss, cfg.settle_s),
            "worker_rss_mb_settled": {
                "first": next((y for t, y in zip(ts, worker_rss) if t >= cfg.settle_s), None),
                "last": worker_rss[-1] if worker_rss else None},
            "lag_records_settled_slope_per_min": _slope_per_min(
                ts, [r["lag_records"] for r in timeline], cfg.settle_s)}
           if cfg.settle_s else {}),
        "timeline": timeline,
    }


def run_e2e(cfg: E2EConfig) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="ub-bench-e2e-"))
    City.generate(7, cfg.city_size()).write_registry(work / "registry.csv")
    p = Pipeline(cfg, work)
    try:
        p.start()
        sampler = ProcSampler(p.pids())
        body = run_paced(p, cfg, sampler) if cfg.rate else run_throughput(p, cfg, sampler)
        out = {"name": cfg.name(), "config": asdict(cfg), **body,
               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if cfg.profile:
            out["profiles"] = [str(f) for f in work.glob("*.pyspy.txt")]
        return out
    finally:
        p.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--format", default="senml", choices=["senml", "json", "fiware"])
    ap.add_argument("--size", default=None, help="city size (default: large, or rate × 0.5 s "
                    "of sensors when paced)")
    ap.add_argument("--minutes", type=float, default=20, help="throughput: simulated minutes")
    ap.add_argument("--interval", type=float, default=60,
                    help="throughput: seconds between a sensor's readings")
    ap.add_argument("--rate", type=float, help="paced mode: offered readings/s")
    ap.add_argument("--seconds", type=float, default=60, help="paced mode: duration")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--ingest", type=int, default=1)
    ap.add_argument("--raw-stores", type=int, default=0,
                    help="raw points by this many `streams store-raw` processes (own group)")
    ap.add_argument("--no-rules", action="store_true")
    ap.add_argument("--peer-flow", action="store_true",
                    help="raw points + the Node-RED peer's two thresholds, no windows")
    ap.add_argument("--profile", action="store_true", help="py-spy ingest and workers")
    ap.add_argument("--label", default="")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="paced: also report memory and lag slopes from this many seconds on "
                         "(a soak's warm-up, e.g. 600)")
    args = ap.parse_args()
    cfg = E2EConfig(fmt=args.format, size=args.size, minutes=args.minutes,
                    interval_s=args.interval, rate=args.rate,
                    seconds=args.seconds, workers=args.workers, ingest=args.ingest,
                    raw_stores=args.raw_stores,
                    rules=not args.no_rules, peer_flow=args.peer_flow,
                    profile=args.profile, label=args.label, settle_s=args.settle)
    out = run_e2e(cfg)
    shown = {k: v for k, v in out.items() if k != "timeline"}
    print(json.dumps(shown, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{cfg.name()}.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
