"""Node-RED as a peer: the same offered load as ``bench_e2e.py``, through a Node-RED flow.

A script, not a test: ``python bench/bench_peer_nodered.py [--format senml|json] [--size large]
[--minutes 20]``. Our end-to-end readings/s only mean something next to what a popular
low-code tool does with the same job on the same machine, so this runs Node-RED with a
competent flow doing what urbanbrain does minus the windows: MQTT ``city/#`` in → decode
JSON readings and SenML packs → edge-triggered threshold alerts → 5,000-point batches →
InfluxDB 1.x (``bench/peers/nodered/flow.json``), and measures readings/s stored.

Node-RED comes from npm, pinned in ``bench/peers/nodered/package.json`` and its lockfile;
the first run installs it with ``npm ci`` into ``bench/peers/nodered/node_modules``. Only
this script installs it (never CI, never the tests). Writes
``bench/results/peer-nodered-<format>.json``; ``run_nodered`` is importable (``bench/run.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_limits import proc_cpu_s  # noqa: I001 - bench/ is on the path only from here
from urbanbrain.influxql import InfluxQL
from urbanbrain.localstack import free_port
from urbanbrain.up import count_raw_points

if TYPE_CHECKING:
    from urbanbrain.simulators.city import City

    from urbanbrain.localstack import LocalStack

PEER_DIR = ROOT / "bench" / "peers" / "nodered"
RESULTS = ROOT / "bench" / "results"
DB = "nodered"  # its own database: the stack may already hold our pipeline's "bench" points
#: a topic of the flow's shape (city/<district>/<domain>/<kind>/<sensor>) outside the four
#: domains, so the probe lands in its own measurement; the ACL lets the alert publisher
#: account write under city/alerts/
PROBE_TOPIC = "city/alerts/probe/probe/nodered-probe"


class NodeRedError(RuntimeError):
    """Node-RED could not be installed or started; the message says why."""


# ------------------------------------------------------------------------------ install


def pinned_versions(peer_dir: Path = PEER_DIR) -> dict[str, str]:
    return json.loads((peer_dir / "package.json").read_text())["dependencies"]


def _installed_version(peer_dir: Path, name: str) -> str | None:
    try:
        return json.loads((peer_dir / "node_modules" / name / "package.json").read_text())[
            "version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed(peer_dir: Path = PEER_DIR) -> Path:
    """``npm ci`` from the lockfile unless node_modules already has the pinned versions.

    Idempotent and cheap when installed, so every run can call it. ``--ignore-scripts``:
    none of the locked packages needs an install script, and one that fetched a prebuilt
    binary would fail here. Returns Node-RED's entry point.
    """
    pins = pinned_versions(peer_dir)
    if any(_installed_version(peer_dir, n) != v for n, v in pins.items()):
        for tool in ("node", "npm"):
            if not shutil.which(tool):
                raise NodeRedError(f"{tool} not found: Node.js ≥ 18 with npm is needed")
        print(f"installing {', '.join(f'{n}@{v}' for n, v in pins.items())} (npm ci) ...",
              flush=True)
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                              cwd=peer_dir, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise NodeRedError(f"npm ci failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return peer_dir / "node_modules" / "node-red" / "red.js"


# ------------------------------------------------------------------------------ config


def render_flow(template: list[dict], mqtt_port: int, influx_port: int, db: str) -> list[dict]:
    """The template flow pointed at this stack: broker port, InfluxDB port and database."""
    flow = json.loads(json.dumps(template))
    for node in flow:
        if node["type"] == "mqtt-broker":
            node.update(broker="127.0.0.1", port=mqtt_port)
        elif node["type"] == "influxdb":
            node.update(hostname="127.0.0.1", port=influx_port, database=db,
                        url=f"http://127.0.0.1:{influx_port}")
    return flow


def write_userdir(userdir: Path, stack: LocalStack, db: str = DB) -> None:
    """A Node-RED userDir of its own: settings.js as is, flows.json rendered for the stack."""
    assert stack.mqtt is not None and stack.influx is not None
    userdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(PEER_DIR / "settings.js", userdir / "settings.js")
    template = json.loads((PEER_DIR / "flow.json").read_text())
    flow = render_flow(template, stack.mqtt.port, stack.influx.port, db)
    (userdir / "flows.json").write_text(json.dumps(flow, indent=1))
    # the production security model holds for the peer too: it reads city/# as ingest does
    # and writes as the pipeline's InfluxDB writer. settings.js has credentialSecret: false,
    # so Node-RED reads this file as plain JSON (node id -> its credentials).
    mqtt_user, mqtt_password = stack.mqtt_login("ingest")
    influx_user, influx_password = stack.influx_login("writer")
    creds = {}
    for node in flow:
        if node["type"] == "mqtt-broker":
            creds[node["id"]] = {"user": mqtt_user, "password": mqtt_password}
        elif node["type"] == "influxdb":
            creds[node["id"]] = {"username": influx_user, "password": influx_password}
    cred_file = userdir / "flows_cred.json"
    cred_file.touch(mode=0o600)
    cred_file.write_text(json.dumps(creds))


# ------------------------------------------------------------------------------ process


@dataclass
class NodeRed:
    """A headless Node-RED we started (own process group, stopped by its pid, never by name)."""

    red_js: Path
    userdir: Path
    registry: Path
    log_path: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        """Start and wait until the flows run and the MQTT node is connected."""
        self.port = self.port or free_port()
        env = {**os.environ, "UB_NODERED_PORT": str(self.port),
               "UB_REGISTRY_PATH": str(self.registry), "NODE_ENV": "production"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["node", str(self.red_js), "--userDir", str(self.userdir),
                 "--settings", str(self.userdir / "settings.js")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NodeRedError(f"Node-RED exited with {self.proc.returncode}:\n{self.tail()}")
            text = self.log()
            if "Started flows" in text and "Connected to broker" in text:
                return
            time.sleep(0.2)
        self.stop()
        raise NodeRedError(f"Node-RED not ready after {timeout_s:.0f}s:\n{self.tail()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid) if self.proc is not None and self.running else 0.0

    def peak_rss_mb(self) -> float:
        """VmHWM of the node process (read before stopping it)."""
        if self.proc is None:
            return 0.0
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return 0.0
        m = re.search(r"VmHWM:\s+(\d+) kB", status)
        return round(int(m[1]) / 1024, 1) if m else 0.0

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self.running:
            return
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def flow_stats(log: str) -> dict[str, int]:
    """The batch node's last counters and how many errors Node-RED logged (write failures)."""
    found = re.findall(r"stats decoded=(\d+) points=(\d+) batches=(\d+)", log)
    decoded, points, batches = (int(x) for x in found[-1]) if found else (0, 0, 0)
    return {"decoded_readings": decoded, "points_sent_to_influx_node": points,
            "batches": batches, "errors_logged": log.count("[error]")}


def first_errors(log: str, n: int = 3) -> list[str]:
    seen: list[str] = []
    for line in log.splitlines():
        if "[error]" in line:
            msg = line.split("[error]", 1)[1].strip()[:200]
            if msg not in seen:
                seen.append(msg)
        if len(seen) >= n:
            break
    return seen


# ------------------------------------------------------------------------------ measuring


def wait_probe(stack: LocalStack, client: InfluxQL, timeout_s: float = 30.0) -> None:
    """Publish one reading and wait until it is a point: MQTT subscribed, flow and writes live."""
    from paho.mqtt import publish

    assert stack.mqtt is not None
    payload = json.dumps({"sensor_id": "nodered-probe", "ts": int(time.time() * 1000),
                          "metrics": {"probe": 1.0}})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        user, password = stack.mqtt_login("alerts")
        publish.single(PROBE_TOPIC, payload, qos=1, hostname="127.0.0.1", port=stack.mqtt.port,
                       auth={"username": user, "password": password})
        t = time.monotonic()
        while time.monotonic() - t < 3:
            if client.query('SELECT count("probe") FROM "probe"'):
                return
            time.sleep(0.2)
    raise NodeRedError(f"the probe reading did not reach InfluxDB within {timeout_s:.0f}s")


def wait_stored(client: InfluxQL, sent: int, t0: float, nodered: NodeRed,
                stall_s: float = 30.0, poll_s: float = 0.5) -> tuple[int, float]:
    """Poll the raw-point count until all ``sent`` are stored or it stops growing for
    ``stall_s``; returns (count, seconds from ``t0`` to the last increase)."""
    n, t_last = 0, time.monotonic()
    while True:
        now_n = count_raw_points(client)
        if now_n > n:
            n, t_last = now_n, time.monotonic()
        if n >= sent or time.monotonic() - t_last >= stall_s or not nodered.running:
            return n, t_last - t0
        time.sleep(poll_s)


def _stack_cpu(stack: LocalStack) -> dict[str, float]:
    return {name: proc_cpu_s(s.proc.pid) if s and s.proc else 0.0
            for name, s in (("influxd", stack.influx), ("mosquitto", stack.mqtt))}


def _measure(stack: LocalStack, nodered: NodeRed, client: InfluxQL, city: City, fmt: str,
             minutes: float, seed: int, stall_s: float, interval_s: float = 60.0) -> dict:
    """Publish the load, wait for the points, and take every number while Node-RED still runs."""
    from urbanbrain.simulators.runner import run_simulation

    from urbanbrain.settings import Settings

    assert stack.mqtt is not None
    user, password = stack.mqtt_login("simulator")
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{stack.mqtt.port}",  # type: ignore[arg-type]
                        mqtt_username=user, mqtt_password=password)
    cpu0, own0 = {"nodered": nodered.cpu_s(), **_stack_cpu(stack)}, time.process_time()
    start_ms = int(time.time() * 1000 - minutes * 60_000)
    t0 = time.monotonic()
    sim = run_simulation(settings, seed=seed, size=city.size, speed=0, rate=None,
                         start_ms=start_ms, sim_duration_s=minutes * 60, fmt=fmt,
                         interval_s=interval_s, incidents=False, connections=2, city=city)
    t_pub, publisher_cpu = time.monotonic() - t0, time.process_time() - own0
    sent = sim.progress.readings
    stored, t_all = wait_stored(client, sent, t0, nodered, stall_s)
    wall = time.monotonic() - t0
    cpu = {k: round(v - cpu0[k], 2)
           for k, v in {"nodered": nodered.cpu_s(), **_stack_cpu(stack)}.items()}
    cpu["publisher"] = round(publisher_cpu, 2)
    out = {
        "readings": sent, "stored": stored, "lost": sent - stored,
        "messages": sim.progress.messages, "publish_s": round(t_pub, 2),
        "end_to_end_s": round(t_all, 2), "offered_readings_per_s": round(sent / t_pub),
        "end_to_end_readings_per_s": round(stored / max(t_all, 1e-9)),
        "cpu_s": cpu, "nodered_cpu_cores": round(cpu["nodered"] / max(wall, 1e-9), 2),
        "nodered_peak_rss_mb": nodered.peak_rss_mb(), "nodered_survived": nodered.running,
    }
    time.sleep(1.5)  # the batch node's last 1 s flush logs the final counters
    log = nodered.log()
    alerts = client.query('SELECT count("value") FROM "alerts"')
    out["alert_points"] = alerts[0]["values"][0][1] if alerts else 0
    out["flow"], out["first_errors"] = flow_stats(log), first_errors(log)
    return out


def run_nodered(stack: LocalStack, fmt: str = "senml", size: str = "large",
                minutes: float = 20.0, *, seed: int = 7, stall_s: float = 30.0,
                workdir: Path | None = None, interval_s: float = 60.0) -> dict:
    """Publish ``minutes`` of a simulated ``size`` city as fast as possible through Node-RED.

    The load is ``bench_e2e``'s (same seed, format, 2 publisher connections at QoS 1, event
    times ending now). Time runs from the first publish until every reading is a raw point
    in InfluxDB (database ``nodered``), or until the count stops growing for ``stall_s``:
    then ``lost`` says how many never arrived. CPU is per process over that time. Stop our
    own pipeline before calling this (a leftover subscriber would compete for the cores).
    """
    from urbanbrain.simulators.city import City

    assert stack.mqtt is not None and stack.influx is not None, "needs mosquitto and influxd"
    red_js = ensure_installed()
    work = workdir or Path(tempfile.mkdtemp(prefix="ub-bench-nodered-"))
    city = City.generate(seed, size)
    city.write_registry(work / "registry.csv")
    stack.influx_admin.query(f'DROP DATABASE "{DB}"')
    stack.provision_database(DB)  # the writer's and reader's grants, as compose's first start
    write_userdir(work / "userdir", stack)
    client = InfluxQL(f"http://127.0.0.1:{stack.influx.port}", DB,
                      *stack.influx_login("reader"))
    nodered = NodeRed(red_js, work / "userdir", work / "registry.csv", work / "nodered.log")
    nodered.start()
    try:
        wait_probe(stack, client)
        measured = _measure(stack, nodered, client, city, fmt, minutes, seed, stall_s,
                            interval_s)
    finally:
        nodered.stop()
    return {"peer": "node-red", "versions": pinned_versions(), "node": _node_version(),
            "format": fmt, "size": size, "minutes": minutes, "interval_s": interval_s,
            **measured, "workdir": str(work)}


def _node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True, check=False,
                              timeout=10).stdout.strip()
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--format", default="senml", choices=["senml", "json"])
    ap.add_argument("--size", default="large")
    ap.add_argument("--minutes", type=float, default=20, help="simulated minutes (1 tick/min)")
    ap.add_argument("--stall", type=float, default=30, help="give up after this long without progress")
    args = ap.parse_args()
    from urbanbrain.localstack import LocalStack

    work = Path(tempfile.mkdtemp(prefix="ub-bench-nodered-"))
    stack = LocalStack(work / "stack").start(kafka=False)
    try:
        out = run_nodered(stack, args.format, args.size, args.minutes, stall_s=args.stall,
                          workdir=work)
    finally:
        stack.stop()
    print(json.dumps(out, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"peer-nodered-{args.format}.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
