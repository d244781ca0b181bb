"""Offered load (readings/s) of the simulator per format, against a real local mosquitto.

Not a test: a script that prints a table. Starts its own mosquitto (urbanbrain.localstack)
unless URBANBRAIN_MQTT_URL points at one, runs the simulator as fast as possible for a
few seconds per configuration, and reports readings/s and messages/s (publish + PUBACK
at QoS 1, i.e. what the broker accepted), plus the generate+encode rate without MQTT.

    .venv/bin/python simulators/bench_offered_load.py [--seconds 4] [--size xl]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from urbanbrain.localstack import LocalStack
from urbanbrain.settings import Settings
from urbanbrain.simulators.city import City
from urbanbrain.simulators.engine import Simulation
from urbanbrain.simulators.formats import make_encoder
from urbanbrain.simulators.incidents import Schedule
from urbanbrain.simulators.runner import run_simulation

T0 = 1767600000000


def encode_only(city: City, fmt: str, seconds: float) -> float:
    sim = Simulation(city, 1, start_ms=T0, schedule=Schedule.none(city))
    enc = make_encoder(fmt, city)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += sum(m[2] for m in enc.encode(sim.step()))
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--size", default="xl")
    args = ap.parse_args()
    url = os.environ.get("URBANBRAIN_MQTT_URL")
    stack = None
    if not url:
        stack = LocalStack(Path(tempfile.mkdtemp(prefix="bench-mqtt-"))).start(
            kafka=False, influx=False)
        url = stack.env()["URBANBRAIN_MQTT_URL"]
    settings = Settings(mqtt_url=url)
    city = City.generate(1, args.size)
    print(f"city: {len(city.sensors)} sensors; broker {url}; {args.seconds:.0f} s per row")
    print(f"{'format':8} {'conns':>5} {'qos':>3} {'readings/s':>12} {'msgs/s':>9} {'MB/s':>6}")
    try:
        for fmt in ("senml", "json", "fiware"):
            print(f"{fmt:8} {'-':>5} {'-':>3} {encode_only(city, fmt, 2.0):12,.0f}"
                  f" {'':>9} {'':>6}  (generate + encode only)")
        configs = [("senml", 1, 1), ("senml", 2, 1), ("senml", 4, 1), ("senml", 4, 0),
                   ("json", 1, 1), ("json", 4, 1), ("json", 4, 0), ("fiware", 4, 1)]
        for fmt, conns, qos in configs:
            res = run_simulation(settings, seed=1, size=args.size, speed=0,
                                 duration_s=args.seconds, fmt=fmt, connections=conns, qos=qos,
                                 start_ms=T0, incidents=False, city=city)
            p = res.progress
            print(f"{fmt:8} {conns:>5} {qos:>3} {p.readings / p.elapsed_s:12,.0f} "
                  f"{p.messages / p.elapsed_s:9,.0f} {p.bytes / p.elapsed_s / 1e6:6.1f}")
    finally:
        if stack:
            stack.stop()


if __name__ == "__main__":
    main()
