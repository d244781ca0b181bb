"""Benchmark: readings/s through the ingest bridge alone (MQTT in → Kafka acked out).

    .venv/bin/python bench/bench_ingest.py [--messages 60000] [--packs 3000] [--pack-size 50]
                                           [--profile-messages 30000] [--no-profile]

1. starts its own mosquitto + tansu + influxd (tmp dir) and one ``urbanbrain ingest``;
2. for each case, a separate publisher process sends QoS 1 messages as fast as paho can
   (1000 in flight), while this process counts readings arriving in readings.<domain>
   (records read from their end offsets before the case, readings counted in each record);
   cases: (i) single-reading JSON messages, (ii) SenML packs of ``--pack-size`` readings,
   each in two modes:
   - live: publish while ingest runs; readings/s = readings / (last reading in Kafka −
     first publish). Ingest cannot beat the publisher here (one paho process, ~11k msg/s).
   - backlog: publish while ingest is stopped (its persistent session queues everything in
     mosquitto), then start it; readings/s = readings / (last reading in Kafka − ingest's
     "MQTT connected"). This is ingest's own throughput;
3. runs case (i) again against an ingest under cProfile and prints its top costs (the
   asyncio thread: normalise, batching, produce; paho's network thread is not profiled).

Writes bench/results/ingest.json. The machine's 2 cores are shared by broker, Kafka,
publisher and ingest, so the numbers are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import pstats
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness import Component  # noqa: E402

from urbanbrain.localstack import LocalStack  # noqa: E402
from urbanbrain.settings import DOMAINS  # noqa: E402

KIND_METRIC = {
    "traffic": ("loop", "speed_kmh", 40.0),
    "environment": ("air", "pm25_ugm3", 10.0),
    "water": ("main", "pressure_kpa", 400.0),
    "power": ("substation", "load_mw", 20.0),
}
SENSORS_PER_DOMAIN = 500


def json_messages(district: str, n: int) -> list[tuple[str, bytes]]:
    """Single-reading JSON messages, unique (sensor, ts), round-robin over the domains."""
    base = int(time.time() * 1000) - 3_600_000
    out = []
    for i in range(n):
        domain = DOMAINS[i % 4]
        kind, metric, v = KIND_METRIC[domain]
        sensor = f"{domain[:2]}-{(i // 4) % SENSORS_PER_DOMAIN:04d}"
        out.append((f"city/{district}/{domain}/{kind}/{sensor}",
                    orjson.dumps({"ts": base + i, "metrics": {metric: v + (i % 50) * 0.25}})))
    return out


def senml_packs(district: str, n_packs: int, size: int) -> list[tuple[str, bytes]]:
    """SenML packs as urbanbrain emits them: bn "<sensor>:", canonical n, bt in seconds."""
    base = int(time.time()) - 3600
    out = []
    for p in range(n_packs):
        domain = DOMAINS[p % 4]
        _, metric, v = KIND_METRIC[domain]
        records = [
            {"bn": f"{domain[:2]}-{(p * size + j) % SENSORS_PER_DOMAIN:04d}:", "bt": base + p,
             "n": metric, "v": v + j * 0.25}
            for j in range(size)
        ]
        out.append((f"city/{district}/{domain}/pack/gw-{p % 16:02d}", orjson.dumps(records)))
    return out


def _publish(port: int, msgs: list[tuple[str, bytes]], result: mp.Queue,
             auth: tuple[str | None, str | None]) -> None:
    """Child process: publish everything at QoS 1 as the simulator's account (the broker
    refuses anonymous clients, as in production); report (start, end) wall-clock times."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex}")
    if auth[0]:
        client.username_pw_set(auth[0], auth[1])
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    t0 = time.time()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in msgs]
    for info in infos:
        info.wait_for_publish(120)
    t1 = time.time()
    client.disconnect()
    client.loop_stop()
    result.put((t0, t1))


async def _count_readings(bootstrap: str, district: str, expected: int, ready,
                         idle_s: float = 20.0):
    """Count ``district``'s readings landing in readings.<domain>; (count, first, last, n_first)."""
    needle = b'"district":"' + district.encode() + b'"'
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        tps = [TopicPartition(f"readings.{d}", p) for d in DOMAINS
               for p in (cluster.partitions_for_topic(f"readings.{d}") or ())]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, end[tp])
        ready.set()
        count, first, last, n_first = 0, None, None, 0
        idle_since = time.monotonic()
        while count < expected and time.monotonic() - idle_since < idle_s:
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            now = time.time()
            n = sum(r.value.count(needle) for recs in batch.values() for r in recs)
            if n:
                count += n
                if first is None:
                    first, n_first = now, n
                last = now
                idle_since = time.monotonic()
        return count, first, last, n_first
    finally:
        await consumer.stop()


def run_case(stack: LocalStack, name: str, district: str, msgs: list[tuple[str, bytes]],
             readings: int, ingest: Component, backlog: bool) -> dict:
    """Live: publish while ingest runs (ingest can be no faster than the publisher).
    Backlog: publish while ingest is stopped (its persistent session queues everything in
    the broker), then start it: the drain rate is ingest's own throughput."""
    import threading

    bootstrap = stack.env()["URBANBRAIN_KAFKA_BOOTSTRAP"]
    ready = threading.Event()
    out: dict = {}
    counter = threading.Thread(target=lambda: out.update(
        r=asyncio.run(_count_readings(bootstrap, district, readings, ready))))
    if backlog:
        ingest.stop()
    else:
        counter.start()
        ready.wait(30)
    q: mp.Queue = mp.Queue()
    pub = mp.get_context("fork").Process(target=_publish,
                                         args=(stack.mqtt.port, msgs, q,
                                               stack.mqtt_login("simulator")))
    pub.start()
    t0, t1 = q.get(timeout=600)
    pub.join()
    log_before = len(ingest.log())  # the backlog case's (re)connect is logged after this
    if backlog:
        counter.start()
        ready.wait(30)
        ingest.start()
    counter.join()
    count, _first, last, _n_first = out["r"]
    if backlog:  # from ingest's (re)connect: process start-up is not throughput
        elapsed = (last or time.time()) - connected_at(ingest.log()[log_before:])
        measured = count
    else:
        elapsed = (last or time.time()) - t0
        measured = count
    return {
        "case": name,
        "mode": "backlog" if backlog else "live",
        "messages": len(msgs),
        "readings_expected": readings,
        "readings_in_kafka": count,
        "publish_s": round(t1 - t0, 3),
        "publish_msgs_per_s": round(len(msgs) / (t1 - t0)),
        "measured_s": round(elapsed, 3),
        "readings_per_s": round(measured / elapsed),
        "messages_per_s": round(len(msgs) * measured / readings / elapsed),
    }


@dataclass
class Ingest(Component):
    """``urbanbrain ingest``, optionally under cProfile (SIGTERM lets it write the stats)."""

    profile: Path | None = None

    def start(self) -> Ingest:
        if self.profile is None:
            return super().start()  # type: ignore[return-value]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cProfile", "-o", str(self.profile), "-m",
                 "urbanbrain.cli", *self.args], env={**os.environ, **self.env}, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self


def connected_at(log: str) -> float:
    """Wall-clock time of the first "MQTT connected" line in ``log`` (logging's local time)."""
    m = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*MQTT connected", log, re.M)
    if m is None:
        raise RuntimeError("ingest never logged 'MQTT connected'")
    return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000


def start_ingest(stack: LocalStack, workdir: Path, name: str) -> Ingest:
    """Start ingest and wait for its subscription: from then on its session queues for it."""
    env = {**stack.env(), "URBANBRAIN_INFLUX_DB": "bench",
           "URBANBRAIN_MQTT_CLIENT_ID": f"bench-{name}", "URBANBRAIN_DATA_DIR": str(workdir)}
    c = Ingest(name, ["ingest"], env, workdir / f"{name}.log").start()
    c.wait_for_log("MQTT subscribed", timeout=60)
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=60_000, help="single-reading JSON messages")
    ap.add_argument("--packs", type=int, default=3_000, help="SenML packs")
    ap.add_argument("--pack-size", type=int, default=50)
    ap.add_argument("--profile-messages", type=int, default=30_000)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ingest.json")
    a = ap.parse_args()

    rows: list[dict] = []
    profile_top: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        stack = LocalStack(work / "stack").start()
        stack.provision_database("bench")
        try:
            ingest = start_ingest(stack, work, "ingest")
            try:
                for backlog in (False, True):
                    d = f"bj{uuid.uuid4().hex[:6]}"
                    rows.append(run_case(stack, "json single reading, QoS 1", d,
                                         json_messages(d, a.messages), a.messages, ingest,
                                         backlog))
                    print(rows[-1], flush=True)
                    d = f"bs{uuid.uuid4().hex[:6]}"
                    rows.append(run_case(stack, f"SenML packs of {a.pack_size}, QoS 1", d,
                                         senml_packs(d, a.packs, a.pack_size),
                                         a.packs * a.pack_size, ingest, backlog))
                    print(rows[-1], flush=True)
            finally:
                ingest.stop()
            if not a.no_profile:
                prof = work / "ingest.prof"
                # Backlog mode: ingest starts (profiled) against a full session and drains it.
                pi = start_ingest(stack, work, "ingest-prof")
                pi.profile = prof
                d = f"bp{uuid.uuid4().hex[:6]}"
                try:
                    row = run_case(stack, "json single reading (under cProfile)", d,
                                   json_messages(d, a.profile_messages), a.profile_messages,
                                   pi, backlog=True)
                    print(row, flush=True)
                finally:
                    pi.stop(timeout=30)
                profile_top = print_profile(prof)
        finally:
            stack.stop()

    print_table(rows)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": rows,
        "profile_top_tottime": profile_top,
    }, indent=2))
    print(f"\nwrote {a.out}")


def print_profile(path: Path, top: int = 15) -> list[dict]:
    if not path.exists():
        print("no profile written (ingest did not exit cleanly)")
        return []
    st = pstats.Stats(str(path))
    st.sort_stats("tottime")
    print("\ningest under cProfile, top by own time:")
    st.print_stats(top)
    st.sort_stats("cumulative")
    print("ingest's own code and its clients, top by cumulative time:")
    st.print_stats(r"ingest/|urbanbrain/reading|aiokafka/producer|paho", top)
    total = st.total_tt
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    return [
        {"function": f"{Path(f).name}:{line}({fn})", "calls": nc, "tottime_s": round(tt, 3),
         "cumtime_s": round(ct, 3), "share_of_total": round(tt / total, 3)}
        for (f, line, fn), (_cc, nc, tt, ct, _callers) in rows
    ]


def print_table(rows: list[dict]) -> None:
    print(f"\n{'case':<30} {'mode':<8} {'readings':>9} {'in kafka':>9} {'pub msg/s':>10} "
          f"{'readings/s':>11} {'msgs/s':>8}")
    for r in rows:
        print(f"{r['case']:<30} {r['mode']:<8} {r['readings_expected']:>9} "
              f"{r['readings_in_kafka']:>9} {r['publish_msgs_per_s']:>10} "
              f"{r['readings_per_s']:>11} {r['messages_per_s']:>8}")


if __name__ == "__main__":
    main()
