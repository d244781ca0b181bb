"""Every benchmark in one command: ``make bench`` (or ``python bench/run.py [--quick]``).

Runs, one after the other on this machine's real servers (each case starts its own):

1. limits: mosquitto publish→subscribe and InfluxDB line protocol, each alone;
2. end to end, throughput: SenML packs and single-reading JSON, with the alert rules on;
   the same SenML load without rules; scaling with 2 Faust workers / 2 ingest replicas;
3. the Node-RED peer on the same SenML and JSON loads;
4. paced runs: latency at 50 % of the sustained SenML rate (event time → stored point,
   rule evaluation → alert), and a soak at 70 %: memory and consumer lag over time.

Writes ``bench/results/summary.json`` and the tables between the markers in
``docs/PERFORMANCE.md``. Numbers on a 2-core machine shared by load generator, brokers,
database and pipeline are floors and move ±30 % between runs: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_e2e  # noqa: E402
import bench_limits  # noqa: E402
import bench_peer_nodered  # noqa: E402

from urbanbrain.localstack import LocalStack  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "PERFORMANCE.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
console = Console()


def _plan(quick: bool) -> dict[str, Any]:
    if quick:
        return {"limit_s": 4, "senml": {"size": "large", "interval_s": 5, "minutes": 2},
                "json": {"size": "large", "interval_s": 60, "minutes": 4}, "soak_s": 60}
    return {"limit_s": 10, "senml": {"size": "large", "interval_s": 5, "minutes": 8},
            "json": {"size": "large", "interval_s": 60, "minutes": 12}, "soak_s": 600}


def run(quick: bool, skip_peer: bool) -> dict[str, Any]:
    plan = _plan(quick)
    out: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "quick": quick, "plan": plan}

    console.rule("limits")
    with tempfile.TemporaryDirectory(prefix="ub-bench-limits-") as tmp:
        stack = LocalStack(Path(tmp)).start(kafka=False)
        try:
            out["limits"] = bench_limits.run_all(stack, plan["limit_s"])
        finally:
            stack.stop()

    def e2e(key: str, fmt: str, **kw: Any) -> dict[str, Any]:
        console.rule(f"end to end: {key}")
        load = plan[fmt]
        cfg = bench_e2e.E2EConfig(fmt=fmt, size=load["size"], interval_s=load["interval_s"],
                                  minutes=load["minutes"], label=key, **kw)
        res = bench_e2e.run_e2e(cfg)
        console.print({k: v for k, v in res.items() if k not in ("timeline", "config")})
        return res

    runs: dict[str, Any] = {}
    runs["senml"] = e2e("senml", "senml")
    runs["json"] = e2e("json", "json")
    runs["senml-norules"] = e2e("senml-norules", "senml", rules=False)
    runs["senml-peerflow"] = e2e("senml-peerflow", "senml", peer_flow=True)
    runs["json-peerflow"] = e2e("json-peerflow", "json", peer_flow=True)
    runs["senml-2workers"] = e2e("senml-2workers", "senml", workers=2)
    # raw points by `streams store-raw` in a consumer group of its own (streams/raw_store.py)
    runs["senml-rawgroup"] = e2e("senml-rawgroup", "senml", raw_stores=1)
    runs["senml-2ingest"] = e2e("senml-2ingest", "senml", ingest=2)
    # the load of the first baseline (one reading per sensor per minute: ~3 window/index
    # points per reading), to compare with the numbers from before the optimisation work
    console.rule("end to end: senml-1min (baseline load)")
    base = bench_e2e.run_e2e(bench_e2e.E2EConfig(fmt="senml", size="large", interval_s=60,
                                                 minutes=10 if quick else 20,
                                                 label="senml-1min"))
    console.print({k: v for k, v in base.items() if k not in ("timeline", "config")})
    runs["senml-1min"] = base
    out["e2e"] = runs

    if not skip_peer:
        out["peer"] = {}
        for fmt in ("senml", "json"):
            console.rule(f"Node-RED peer: {fmt}")
            load = plan[fmt]
            with tempfile.TemporaryDirectory(prefix="ub-bench-peer-") as tmp:
                stack = LocalStack(Path(tmp)).start(kafka=False)
                try:
                    out["peer"][fmt] = bench_peer_nodered.run_nodered(
                        stack, fmt, load["size"], load["minutes"], interval_s=load["interval_s"])
                finally:
                    stack.stop()
            console.print(out["peer"][fmt])

    sustained = runs["senml"]["end_to_end_readings_per_s"]
    # Latency: half the sustained rate, a city sized so each simulator tick (all sensors at
    # one event time) is 0.5 s of load, 90 s.
    rate = round(0.5 * sustained, -2)
    console.rule(f"latency: {rate:.0f} readings/s for 90 s")
    out["latency"] = bench_e2e.run_e2e(bench_e2e.E2EConfig(
        fmt="senml", rate=rate, seconds=60 if quick else 90, label="latency"))
    console.rule(f"latency, raw points in their own group: {rate:.0f} readings/s")
    out["latency-rawgroup"] = bench_e2e.run_e2e(bench_e2e.E2EConfig(
        fmt="senml", rate=rate, seconds=60 if quick else 90, raw_stores=1,
        label="latency-rawgroup"))
    # Soak: 70 %, the largest city (20,000 sensors, each reporting every 20,000/rate s):
    # rule windows hold samples per sensor, so sensor count and frequency shape memory.
    rate = round(0.7 * sustained, -2)
    console.rule(f"soak: {rate:.0f} readings/s for {plan['soak_s']} s")
    out["soak"] = bench_e2e.run_e2e(bench_e2e.E2EConfig(
        fmt="senml", rate=rate, size="xl", seconds=plan["soak_s"], label="soak"))
    return out


def _fmt(n: float | None) -> str:
    return "–" if n is None else f"{n:,.0f}".replace(",", " ")


def tables(res: dict[str, Any]) -> str:
    """Markdown for docs/PERFORMANCE.md."""
    e2e, lim = res["e2e"], res["limits"]
    mqtt_pack = max((r.get("received_msgs_per_s", 0) for r in lim["mqtt"]
                     if str(r.get("payload", "")).startswith("senml") and r.get("qos") == 1), default=None)
    mqtt_small = max((r.get("received_msgs_per_s", 0) for r in lim["mqtt"]
                      if str(r.get("payload", "")).startswith("json") and r.get("qos") == 1), default=None)
    influx = max((r.get("points_per_s", 0) for r in lim["influx"]), default=None)
    lines = [f"Run of {res['when']} (`bench/run.py{' --quick' if res['quick'] else ''}`), "
             "2 cores shared by everything.", "",
             "| case | readings | readings/s end to end | lost | CPU µs per reading "
             "(ingest / worker (+ raw store) / kafka / influxd) |", "|---|---|---|---|---|"]
    for key, r in e2e.items():
        cpu = r.get("cpu_us_per_reading", {})
        ing = sum(v for k, v in cpu.items() if k.startswith("ingest"))
        wrk = sum(v for k, v in cpu.items() if k.startswith("streams"))
        raw = sum(v for k, v in cpu.items() if k.startswith("store"))
        worker = f"{wrk:.0f} + {raw:.0f}" if raw else f"{wrk:.0f}"
        lines.append(f"| {key} | {_fmt(r['readings'])} | **{_fmt(r['end_to_end_readings_per_s'])}**"
                     f" | {r['lost']} | {ing:.0f} / {worker} / {cpu.get('kafka', 0):.0f} / "
                     f"{cpu.get('influx', 0):.0f} |")
    peer = res.get("peer") or {}
    if peer:
        def rate(r: dict[str, Any]) -> str:
            return _fmt(r["end_to_end_readings_per_s"])

        lines += ["", "| same load through | SenML readings/s | JSON readings/s |", "|---|---|---|",
                  f"| Node-RED {peer['senml']['versions']['node-red']} (decode, 2 thresholds, "
                  f"InfluxDB batch) | {rate(peer['senml'])} | {rate(peer['json'])} |"]
        if "senml-peerflow" in e2e:
            lines.append(f"| urbanbrain, the same flow (validation, Kafka, raw points, the same 2 "
                         f"threshold rules; no windows) | {rate(e2e['senml-peerflow'])} | "
                         f"{rate(e2e['json-peerflow'])} |")
        lines.append(f"| urbanbrain, everything (windows, indices, roll-ups, the 17 starter rules) | "
                     f"{rate(e2e['senml'])} | {rate(e2e['json'])} |")
        for key in ("senml-peerflow", "senml"):
            if key in e2e:
                ratio = e2e[key]["end_to_end_readings_per_s"] / max(
                    peer["senml"]["end_to_end_readings_per_s"], 1)
                lines += ["", f"urbanbrain ({key}) / Node-RED, SenML: **{ratio:.2f}×**."]
    lines += ["", "| limit (each alone) | rate | urbanbrain SenML as a share |", "|---|---|---|"]
    senml_rate = e2e["senml"]["end_to_end_readings_per_s"]
    if mqtt_pack:
        lines.append(f"| mosquitto, SenML packs of 50, QoS 1 | {_fmt(mqtt_pack)} msg/s = "
                     f"{_fmt(mqtt_pack * 50)} readings/s | {100 * senml_rate / (mqtt_pack * 50):.0f} % |")
    if mqtt_small:
        lines.append(f"| mosquitto, 60-byte messages, QoS 1 | {_fmt(mqtt_small)} msg/s | "
                     f"JSON: {100 * e2e['json']['end_to_end_readings_per_s'] / mqtt_small:.0f} % |")
    if influx:
        lines.append(f"| InfluxDB line protocol, 5 000-point batches | {_fmt(influx)} points/s | "
                     f"{100 * senml_rate / influx:.0f} % (raw points only) |")
    for key, what in (("latency", "50 %"), ("latency-rawgroup", "50 %"), ("soak", "70 %")):
        r = res.get(key)
        if not r:
            continue
        st, al = r["latency_event_to_stored"], r["latency_evaluation_to_alert"]
        lines += ["", f"**{key}**: {_fmt(r['offered_readings_per_s'])} readings/s offered ({what} "
                  f"of the sustained SenML rate) for {r['seconds']:.0f} s from "
                  f"{_fmt(r.get('city_sensors'))} sensors (one reading each every "
                  f"{r['interval_s']} s), {_fmt(r['readings'])} readings, {r['lost']} lost, "
                  f"drained {r.get('drain_after_publish_s', '?')} s after the last publish.", "",
                  "| latency | n | p50 | p95 | p99 |", "|---|---|---|---|---|",
                  f"| event time → raw point stored | {_fmt(st['n'])} | {_fmt(st['p50_ms'])} ms | "
                  f"{_fmt(st['p95_ms'])} ms | {_fmt(st['p99_ms'])} ms |",
                  f"| rule evaluation (the event time it ran at) → alert sent to Kafka | "
                  f"{_fmt(al['n'])} | {_fmt(al['p50_ms'])} ms | "
                  f"{_fmt(al['p95_ms'])} ms | {_fmt(al['p99_ms'])} ms |",
                  *([f"| rule evaluation (wall clock) → alert acknowledged by Kafka | "
                     f"{_fmt(ak['n'])} | {_fmt(ak['p50_ms'])} ms | {_fmt(ak['p95_ms'])} ms | "
                     f"{_fmt(ak['p99_ms'])} ms |"]
                    if (ak := r.get("latency_evaluated_to_acked")) else []), "",
                  f"Worker memory slope {r['worker_rss_mb_slope_per_min'] or 0:+.1f} MB/min "
                  f"(last {_last_rss(r):.0f} MB); consumer lag slope "
                  f"{r['lag_records_slope_per_min'] or 0:+.1f} records/min "
                  f"(max {r['max_lag_records']})."]
    return "\n".join(lines)


def _last_rss(r: dict[str, Any]) -> float:
    t = r.get("timeline") or [{}]
    return sum(v for k, v in t[-1].get("rss_mb", {}).items() if k.startswith("streams"))


def write_doc(md: str) -> None:
    text = DOC.read_text() if DOC.exists() else f"# Performance\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{md}\n{END}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small loads, 60 s soak (~8 min)")
    ap.add_argument("--skip-peer", action="store_true", help="no Node-RED (no npm install)")
    ap.add_argument("--tables-only", action="store_true",
                    help="re-render docs/PERFORMANCE.md from results/summary.json")
    args = ap.parse_args()
    summary = RESULTS / "summary.json"
    if args.tables_only:
        res = json.loads(summary.read_text())
    else:
        res = run(args.quick, args.skip_peer)
        RESULTS.mkdir(parents=True, exist_ok=True)
        summary.write_text(json.dumps(res, indent=2) + "\n")
    md = tables(res)
    write_doc(md)
    console.print(md)
    console.print(f"wrote {summary} and {DOC}")


if __name__ == "__main__":
    main()
