"""Benchmark: ingest's normaliser cost per message, device profiles vs the built-in decoder.

    .venv/bin/python bench/bench_profiles.py [--messages 40000]

Runs :meth:`urbanbrain.ingest.normalise.Normaliser.process` (what the bridge runs per MQTT
message) in process over distinct payloads of equal content, one case at a time:

* ``json (no profile)``: urbanbrain's own JSON reading, 4 traffic metrics, on a city topic;
* the three sample profiles (ingest/profiles/samples): flat vendor names with milli-units
  (also with ``unknown_fields: ignore`` to show what the unknown-field check costs),
  nested JSON with an ISO timestamp and a device type, sentinel values.

Prints µs of CPU per message and writes bench/results/profiles.json. Pure CPU, no servers.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import orjson
from urbanbrain.ingest.normalise import Normaliser
from urbanbrain.ingest.profiles import loads

from urbanbrain.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "ingest" / "profiles" / "samples"
T = 1767596400  # s


def cases(n: int) -> dict[str, tuple[str | None, list[tuple[str, bytes]]]]:
    acme = (SAMPLES / "acme-flat" / "profile.yaml").read_text()
    return {
        "json (no profile)": (None, [
            (f"city/centrum/traffic/loop/tl-{i % 500}", orjson.dumps(
                {"ts": (T + i) * 1000, "metrics": {"vehicle_count": 12, "speed_kmh": 50.0,
                                                   "occupancy_pct": 8.5, "flow_vph": 720}}))
            for i in range(n)]),
        "acme-flat (unknown_fields: dead_letter)": (acme, [
            (f"vendor/acme/centrum/A-{i % 500}", orjson.dumps(
                {"dev": f"A-{i % 500}", "t": T + i, "cnt": 12, "spd_mms": 13890, "occ_pm": 85}))
            for i in range(n)]),
        "acme-flat (unknown_fields: ignore)": (
            acme.replace("unknown_fields: dead_letter", "unknown_fields: ignore"), [
                (f"vendor/acme/centrum/A-{i % 500}", orjson.dumps(
                    {"dev": f"A-{i % 500}", "t": T + i, "cnt": 12, "spd_mms": 13890,
                     "occ_pm": 85}))
                for i in range(n)]),
        "metro-nested (ISO time, device type)": (
            (SAMPLES / "metro-nested" / "profile.yaml").read_text(), [
                (f"metro/riverside/air/node-{i % 50}", orjson.dumps(
                    {"device": {"id": f"aq-{i % 500}", "type": "AQM-3"},
                     "observed": {"at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00",
                                                      time.gmtime(T + i)),
                                  "values": {"pm": {"pm2_5": 12.5, "pm10": 20.25},
                                             "no2_ppb": 21, "temp_dC": 63}},
                     "meta": {"fw": "1.2.0"}}))
                for i in range(n)]),
        "loopx-sentinel (-1 = absent)": (
            (SAMPLES / "loopx-sentinel" / "profile.yaml").read_text(), [
                (f"loopx/centrum/lx-{i % 500}", orjson.dumps(
                    {"begin_ms": (T + i) * 1000, "nVehContrib": 4, "speed": -1 if i % 3 else 11.5,
                     "occupancy": 5.5, "flow": 240}))
                for i in range(n)]),
    }


def run(n: int) -> dict:
    settings = Settings()
    out = {}
    for name, (profile, msgs) in cases(n).items():
        best = None
        for _ in range(3):  # best of 3: the machine is shared
            norm = Normaliser(settings)
            if profile:
                norm.profiles = loads(profile)
            recv = (T + n) * 1000
            t0 = time.process_time()
            readings = dead = 0
            for topic, payload in msgs:
                r, d = norm.process(topic, payload, recv)
                readings += len(r)
                dead += len(d)
            cpu = time.process_time() - t0
            best = cpu if best is None else min(best, cpu)
        out[name] = {"messages": n, "readings": readings, "dead_letters": dead,
                     "cpu_us_per_message": round(best / n * 1e6, 2)}
        print(f"{name:42s} {best / n * 1e6:7.2f} µs/message  "
              f"({readings} readings, {dead} dead letters)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=40_000)
    args = ap.parse_args()
    res = {"machine": platform.processor() or platform.machine(), "cases": run(args.messages)}
    path = ROOT / "bench" / "results" / "profiles.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
