"""What this machine's servers can do alone: mosquitto pub→sub and InfluxDB line-protocol writes.

A script, not a test: ``python bench/bench_limits.py [--seconds 12] [--only mqtt|influx]``.
The end-to-end numbers (``bench_e2e.py``) only mean something next to the ceiling of each
server on the same 2 cores: if mosquitto moves 30k small messages/s, a pipeline that takes
one MQTT message per reading can never beat that, whatever Python does. So each component
is measured alone, on the real local servers (``urbanbrain.localstack``), with the clients
our pipeline uses (paho through the simulator's ``MqttPool``; raw HTTP keep-alive ``/write``
as ``urbanbrain.influx``'s v1 transport does).

Writes ``bench/results/limits.json`` and prints a table. ``mqtt_limit`` and
``influx_limit`` are importable (``bench/run.py``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from urbanbrain.localstack import LocalStack

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

# The clients run in processes of their own (spawned, not forked: paho starts threads), so
# the subscriber is not slowed by the publishers' GIL and their CPU can be told apart.
_MP = mp.get_context("spawn")


# ------------------------------------------------------------------------------ CPU use


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a live process has used, from /proc.

    psutil is not a dependency; /proc/<pid>/stat fields 14 and 15 are enough.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_cpu(stack: LocalStack, name: str) -> float:
    server = getattr(stack, name)
    return proc_cpu_s(server.proc.pid) if server and server.proc else 0.0


# ------------------------------------------------------------------------------ payloads


def small_payload(size: int = 60) -> bytes:
    """A JSON reading of ``size`` bytes (at least 41), padded with spaces: one tiny message."""
    base = b'{"sensor_id":"tl-7","ts":1763884800000,"m":{"x":1.0}}'[:-1]
    base = b'{"sensor_id":"tl-7","ts":1763884800000}'[:-1] if len(base) >= size else base
    return base + b" " * max(0, size - len(base) - 1) + b"}"


def senml_pack_payload(readings: int = 50) -> bytes:
    """A real SenML pack of ``readings`` traffic readings, exactly as the simulator sends it.

    Taken from the simulator rather than made up, so its size (≈7.7 KB: 4 records per loop
    detector, with units) is what ingest actually receives.
    """
    from urbanbrain.simulators.city import City
    from urbanbrain.simulators.engine import Simulation
    from urbanbrain.simulators.formats import SenMLEncoder
    from urbanbrain.simulators.incidents import Schedule

    city = City.generate(7, "medium")
    frame = Simulation(city, 7, schedule=Schedule.none(city)).step()
    packs = SenMLEncoder(city, pack_size=readings).encode(frame)
    return max((p for t, p, n in packs if n == readings and "/traffic/" in t), key=len)


# ------------------------------------------------------------------------------ MQTT


def _mqtt_credentials(stack: LocalStack, role: str) -> tuple[str | None, str | None]:
    """The (user, password) a role logs in with on the stack's broker (the production ACL:
    ingest may read ``city/#``, the simulator may write the domain trees)."""
    return stack.mqtt_login(role)


def _mqtt_subscriber(url: str, qos: int, ready: Event, publishers_done: Event, out: Queue,
                     idle_s: float, auth: tuple[str | None, str | None] = (None, None)
                     ) -> None:
    """One paho subscriber on ``city/#``: counts messages and bytes, first and last arrival."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    parts = urllib.parse.urlsplit(url)
    stats = {"n": 0, "bytes": 0, "first": 0.0, "last": 0.0}

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if stats["n"] == 0:
            stats["first"] = now
        stats["n"] += 1
        stats["bytes"] += len(msg.payload)
        stats["last"] = now

    def on_subscribe(*args: object) -> None:
        ready.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"limits-sub-{os.getpid()}")
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, *a: c.subscribe("city/#", qos=qos)
    if auth[0]:
        client.username_pw_set(auth[0], auth[1])
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=30)
    cpu0 = time.process_time()
    client.loop_start()
    publishers_done.wait(600)
    while time.monotonic() - max(stats["last"], stats["first"]) < idle_s:  # drain the backlog
        time.sleep(0.1)
    client.loop_stop()
    client.disconnect()
    out.put({"received": stats["n"], "bytes": stats["bytes"],
             "span_s": stats["last"] - stats["first"], "cpu_s": time.process_time() - cpu0})


def _mqtt_publisher(url: str, topic: str, payload: bytes, qos: int, window: int,
                    seconds: float, go: Event, out: Queue,
                    auth: tuple[str | None, str | None] = (None, None)) -> None:
    """Publish ``payload`` as fast as the simulator's publisher can for ``seconds``."""
    from urbanbrain.simulators.publisher import MqttPool

    from urbanbrain.settings import Settings

    pool = MqttPool(Settings(mqtt_url=url, mqtt_username=auth[0],  # type: ignore[arg-type]
                             mqtt_password=auth[1]), connections=1, qos=qos,
                    client_id_prefix="limits-pub", max_outstanding=window)
    go.wait(60)
    cpu0, t0 = time.process_time(), time.monotonic()
    sent = 0
    while time.monotonic() - t0 < seconds:
        for _ in range(200):
            pool.publish(topic, payload)
        sent += 200
    pool.flush(60)
    elapsed = time.monotonic() - t0
    pool.close()
    out.put({"sent": sent, "elapsed_s": elapsed, "cpu_s": time.process_time() - cpu0})


def mqtt_limit(stack: LocalStack, *, payload: bytes, qos: int = 0, publishers: int = 1,
               seconds: float = 12.0, window: int = 200, label: str = "") -> dict:
    """Messages/s and bytes/s one paho subscriber receives from ``publishers`` paho publishers.

    Every publisher sends the same payload as fast as it can (with the simulator's bounded
    in-flight window) for ``seconds``; the rate is what the subscriber received, from its
    first to its last message (a subscriber that falls behind keeps draining mosquitto's
    queue after the publishers stop, and that time counts). ``lost`` is sent − received.

    ``window``: messages in flight per publisher. Not the simulator's 2,000: at QoS 1 paho
    scans its whole in-flight table on every PUBACK (``Client._update_inflight``), so a
    2,000 window makes the *publisher* the limit (~6k msgs/s here against ~16k at 200).

    Clients are spawned processes, so a calling script needs ``if __name__ == "__main__":``.
    """
    assert stack.mqtt is not None, "start the stack with mqtt=True"
    url = f"mqtt://127.0.0.1:{stack.mqtt.port}"
    ready, done, go = _MP.Event(), _MP.Event(), _MP.Event()
    sub_q, pub_q = _MP.Queue(), _MP.Queue()
    sub = _MP.Process(target=_mqtt_subscriber, args=(url, qos, ready, done, sub_q, 2.0,
                                                      _mqtt_credentials(stack, "ingest")))
    sub.start()
    if not ready.wait(30):
        sub.terminate()
        raise RuntimeError("subscriber did not subscribe within 30 s")
    pubs = [_MP.Process(target=_mqtt_publisher,
                        args=(url, f"city/bench/traffic/loop/pub-{k}", payload, qos, window,
                              seconds, go, pub_q, _mqtt_credentials(stack, "simulator")))
            for k in range(publishers)]
    for p in pubs:
        p.start()
    time.sleep(1.0)  # publishers connected before the clock starts
    broker0 = _server_cpu(stack, "mqtt")
    go.set()
    pub_results = [pub_q.get(timeout=seconds + 120) for _ in pubs]
    done.set()
    sub_result = sub_q.get(timeout=120)
    broker_cpu = _server_cpu(stack, "mqtt") - broker0
    for p in [*pubs, sub]:
        p.join(10)
    sent = sum(r["sent"] for r in pub_results)
    span = max(sub_result["span_s"], 1e-9)
    pub_elapsed = max(r["elapsed_s"] for r in pub_results)
    return {
        "payload": label or f"{len(payload)}B", "payload_bytes": len(payload), "qos": qos,
        "publishers": publishers, "window": window, "sent": sent,
        "received": sub_result["received"], "lost": sent - sub_result["received"],
        "published_msgs_per_s": round(sent / pub_elapsed),
        "received_msgs_per_s": round(sub_result["received"] / span),
        "received_bytes_per_s": round(sub_result["bytes"] / span),
        "receive_span_s": round(span, 2),
        "cpu_cores": {"mosquitto": round(broker_cpu / span, 2),
                      "subscriber": round(sub_result["cpu_s"] / span, 2),
                      "publishers": round(sum(r["cpu_s"] for r in pub_results) / pub_elapsed, 2)},
    }


# ------------------------------------------------------------------------------ InfluxDB

_KINDS = (  # (domain, kind, sensor prefix, three fields) like the simulator's city
    ("traffic", "loop", "tl", ("vehicle_count", "occupancy_pct", "speed_kmh")),
    ("environment", "air_quality", "aq", ("pm25_ugm3", "pm10_ugm3", "no2_ugm3")),
    ("water", "water_main", "wm", ("pressure_kpa", "flow_ls", "chlorine_mgl")),
    ("power", "substation", "ps", ("load_mw", "voltage_kv", "frequency_hz")),
)
_DISTRICTS = ("centrum", "docklands", "highfield", "larkhill", "westgate", "riverside",
              "ironworks", "bayfront")


@dataclass
class LineBatches:
    """Distinct ``points``-point batches shaped like our raw readings, built cheaply.

    One batch is one minute of ``points`` sensors (measurement = domain, tags district, kind,
    sensor; three float fields; ms timestamps), as the raw sink writes them. The line heads
    and values are prepared once (four value variants, so fields are not constant), and each
    batch only appends its own timestamp: the writer's own CPU stays small next to influxd's,
    and every point is new (no overwrites of an existing series+time).
    """

    points: int = 5000
    writer: int = 0
    writers: int = 1

    def __post_init__(self) -> None:
        self.start_ms = (int(time.time()) // 60 - 3 * 24 * 60) * 60_000  # 3 days ago, on a minute
        self.variants: list[list[bytes]] = []
        for v in range(4):
            lines = []
            for i in range(self.points):
                domain, kind, prefix, fields = _KINDS[i % len(_KINDS)]
                district = _DISTRICTS[i % len(_DISTRICTS)]
                vals = ",".join(f"{f}={(i * 7 + v * 13 + j) % 997 / 10.0!r}"
                                for j, f in enumerate(fields))
                lines.append(f"{domain},district={district},kind={kind},"
                             f"sensor={prefix}-{i:05d} {vals} ".encode())
            self.variants.append(lines)

    def body(self, k: int) -> bytes:
        """The ``k``-th batch of this writer: its own minute, never another writer's."""
        ts = b"%d" % (self.start_ms + (k * self.writers + self.writer) * 60_000)
        return b"\n".join([head + ts for head in self.variants[k % 4]])


def _influx_writer(port: int, db: str, batches: LineBatches, seconds: float,
                   go: threading.Event, out: list[dict], auth: tuple[str, str]) -> None:
    """POST batches over one keep-alive connection until ``seconds`` have passed, as the
    pipeline's writer account (production auth)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    login = urllib.parse.urlencode({"u": auth[0], "p": auth[1]})
    path = f"/write?db={db}&precision=ms&{login}"
    headers = {"Content-Type": "text/plain; charset=utf-8", "Connection": "keep-alive"}
    latencies: list[float] = []
    k = errors = 0
    go.wait()
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        body = batches.body(k)
        t = time.monotonic()
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        resp.read()
        latencies.append(time.monotonic() - t)
        if resp.status == 204:
            k += 1
        else:
            errors += 1
    out.append({"points": k * batches.points, "batches": k, "errors": errors,
                "elapsed_s": time.monotonic() - t0, "latencies": latencies})
    conn.close()


def _count_points(port: int, db: str, auth: tuple[str, str]) -> int:
    """Points stored (every point has all three fields of its measurement)."""
    q = urllib.parse.urlencode({"db": db, "q": 'SELECT count(*) FROM /.*/', "u": auth[0],
                                "p": auth[1]})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/query?{q}", timeout=120) as resp:
        series = json.load(resp)["results"][0].get("series", [])
    return sum(max(v for v in s["values"][0][1:] if isinstance(v, int)) for s in series)


def influx_limit(stack: LocalStack, *, writers: int = 1, batch_points: int = 5000,
                 seconds: float = 12.0, verify: bool = True) -> dict:
    """Points/s InfluxDB accepts from ``writers`` concurrent keep-alive ``/write`` clients.

    Each case writes to a fresh database, so series creation (5,000 new series, as the first
    minute of a large city) is part of the run, as it is for the pipeline. Writers are threads:
    their work is a socket write and wait, the batches are prebuilt, so the GIL costs little.
    ``verify`` counts the stored points afterwards (a few seconds).
    """
    assert stack.influx is not None, "start the stack with influx=True"
    port = stack.influx.port
    db = f"limits_w{writers}_{int(time.time())}"
    stack.provision_database(db, {"raw": "INF"})  # the writer's grants, as compose's
    writer = stack.influx_login("writer")
    go = threading.Event()
    out: list[dict] = []
    threads = [threading.Thread(target=_influx_writer,
                                args=(port, db, LineBatches(batch_points, w, writers), seconds,
                                      go, out, writer))
               for w in range(writers)]
    for t in threads:
        t.start()
    cpu0, own0 = _server_cpu(stack, "influx"), time.process_time()
    go.set()
    for t in threads:
        t.join()
    span = max(r["elapsed_s"] for r in out)
    influx_cpu, own_cpu = _server_cpu(stack, "influx") - cpu0, time.process_time() - own0
    points = sum(r["points"] for r in out)
    lat = sorted(x for r in out for x in r["latencies"])
    result = {
        "writers": writers, "batch_points": batch_points, "points": points,
        "batches": sum(r["batches"] for r in out), "errors": sum(r["errors"] for r in out),
        "points_per_s": round(points / span), "seconds": round(span, 2),
        "batch_latency_ms": {"p50": round(statistics.median(lat) * 1000, 1),
                             "p99": round(lat[int(len(lat) * 0.99)] * 1000, 1)} if lat else {},
        "cpu_cores": {"influxd": round(influx_cpu / span, 2), "writers": round(own_cpu / span, 2)},
    }
    if verify:
        result["stored"] = _count_points(port, db, stack.influx_login("reader"))
    stack.influx_admin.query(f'DROP DATABASE "{db}"')  # the next case starts from an empty store
    return result


# ------------------------------------------------------------------------------ main


def _table(results: dict) -> str:
    rows = ["MQTT (mosquitto), one paho subscriber on city/#",
            (f"{'payload':>14} {'qos':>3} {'pubs':>4} {'pub msg/s':>10} {'recv msg/s':>10} "
             f"{'recv MB/s':>9} {'lost':>8}  cpu cores (broker/sub/pubs)")]
    for r in results.get("mqtt", []):
        c = r["cpu_cores"]
        rows.append(f"{r['payload']:>14} {r['qos']:>3} {r['publishers']:>4} "
                    f"{r['published_msgs_per_s']:>10,} {r['received_msgs_per_s']:>10,} "
                    f"{r['received_bytes_per_s'] / 1e6:>9.1f} {r['lost']:>8,}  "
                    f"{c['mosquitto']}/{c['subscriber']}/{c['publishers']}")
    rows += ["", "InfluxDB 1.6 line protocol, keep-alive POST /write?precision=ms",
             (f"{'writers':>7} {'batch':>6} {'points/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'stored':>10}  cpu cores (influxd/writers)")]
    for r in results.get("influx", []):
        lat, c = r["batch_latency_ms"], r["cpu_cores"]
        rows.append(f"{r['writers']:>7} {r['batch_points']:>6} {r['points_per_s']:>10,} "
                    f"{lat.get('p50', 0):>7} {lat.get('p99', 0):>7} {r.get('stored', -1):>10,}  "
                    f"{c['influxd']}/{c['writers']}")
    return "\n".join(rows)


def run_all(stack: LocalStack, seconds: float, only: str | None = None) -> dict:
    """Every case of ``main``: MQTT 2 payloads × QoS 0/1 × 1/2 publishers; InfluxDB 1/2 writers."""
    results: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                     "cores": os.cpu_count(), "loadavg_before": os.getloadavg(),
                     "seconds_per_case": seconds, "mqtt": [], "influx": []}
    if only in (None, "mqtt"):
        payloads = {"json-60B": small_payload(60), "senml-pack-50": senml_pack_payload(50)}
        for label, payload in payloads.items():
            for qos in (0, 1):
                for pubs in (1, 2):
                    r = mqtt_limit(stack, payload=payload, qos=qos, publishers=pubs,
                                   seconds=seconds, label=label)
                    print(json.dumps(r), flush=True)
                    results["mqtt"].append(r)
    if only in (None, "influx"):
        for writers in (1, 2):
            r = influx_limit(stack, writers=writers, seconds=seconds)
            print(json.dumps(r), flush=True)
            results["influx"].append(r)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=12.0, help="publishing/writing time per case")
    ap.add_argument("--only", choices=["mqtt", "influx"], help="run one family of cases")
    ap.add_argument("--out", type=Path, default=RESULTS / "limits.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from urbanbrain.localstack import LocalStack

    work = Path(tempfile.mkdtemp(prefix="ub-bench-limits-"))
    stack = LocalStack(work / "stack")
    stack.start(kafka=False)
    try:
        results = run_all(stack, args.seconds, args.only)
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(_table(results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
