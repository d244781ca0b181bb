"""run_simulation and the CLI against a real mosquitto: what is sent is what arrives."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from conftest import role_settings, make_stack
from urbanbrain.components import role_env
from urbanbrain.localstack import LocalStack
from urbanbrain.mqtt import apply_security
from urbanbrain.settings import Settings, get_settings
from urbanbrain.simulators.cli import app
from urbanbrain.simulators.incidents import read_ground_truth
from urbanbrain.simulators.publisher import Progress
from urbanbrain.simulators.runner import run_simulation

T0 = 1767600000000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    s = make_stack(tmp_path_factory.mktemp("sim-run")).start(kafka=False, influx=False)
    yield s
    s.stop()


class Sink:
    """A plain paho subscriber counting messages and (un)parseable payloads."""

    def __init__(self, settings: Settings) -> None:
        """``settings``: of the ingest account, the one that may read ``city/#``."""
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2)
        apply_security(c, settings)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("city/#", qos=1)
        c.on_subscribe = lambda cl, u, mid, rcs, p: ready.set()

        def on_message(cl, u, msg):  # noqa: ANN001
            with self.lock:
                self.messages.append((msg.topic, msg.payload))

        c.on_message = on_message
        c.connect(settings.mqtt_host, settings.mqtt_port)
        c.loop_start()
        assert ready.wait(10)
        self.client = c

    def wait(self, n: int, timeout: float = 20.0) -> None:
        import time

        end = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < end:
            time.sleep(0.05)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.servers
def test_run_simulation_delivers_everything_and_counts_malformed(stack: LocalStack,
                                                                 tmp_path: Path) -> None:
    settings = role_settings(stack, "simulator")
    sink = Sink(role_settings(stack, "ingest"))
    seen: list[Progress] = []
    try:
        res = run_simulation(
            settings, seed=3, size="small", speed=0, sim_duration_s=20 * 60, fmt="json",
            start_ms=T0, registry_path=tmp_path / "registry.csv",
            ground_truth_path=tmp_path / "gt.jsonl", faults="malformed=0.01,duplicate=0.01",
            connections=3, on_progress=seen.append, progress_interval_s=0.05)
        total = res.progress.messages
        sink.wait(total)
    finally:
        sink.stop()
    assert res.progress.readings == 400 * 20 - res.faults.silent_readings - \
        res.faults.malformed_readings
    assert total == res.progress.readings + res.faults.malformed_messages + \
        res.faults.duplicated_messages
    assert len(sink.messages) == total  # QoS 1 end to end, nothing lost
    bad = 0
    for _, payload in sink.messages:
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError:
            bad += 1
    assert bad == res.faults.malformed_messages > 0
    assert seen and seen[-1].done and seen[-1].readings == res.progress.readings
    assert (tmp_path / "registry.csv").read_text().startswith("sensor_id,domain,kind,district")
    stats = json.loads((tmp_path / "gt.jsonl.stats.json").read_text())
    assert stats["faults"]["malformed_messages"] == res.faults.malformed_messages


@pytest.mark.servers
def test_stop_event_and_rate_limit(stack: LocalStack) -> None:
    settings = role_settings(stack, "simulator")
    stop = threading.Event()
    timer = threading.Timer(1.5, stop.set)
    timer.start()
    res = run_simulation(settings, seed=1, size="small", speed=0, rate=2000, fmt="senml",
                         start_ms=T0, stop_event=stop)
    assert res.progress.done
    assert 1500 <= res.progress.readings <= 4000  # ~2,000/s for ~1.5 s


def test_cli_scenario_and_city(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["scenario", str(tmp_path / "sw.parquet"), "--days", "0.25"])
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(tmp_path / "sw.parquet")
    assert len(df) > 100_000
    truth = read_ground_truth(tmp_path / "sw.ground_truth.jsonl")
    assert [i.incident_id for i in truth if not i.kind.startswith("fault.")] == []  # first at 08:10
    manifest = json.loads((tmp_path / "sw.manifest.json").read_text())
    assert manifest["scenario"] == "standard-week" and manifest["sensors"] == 1200
    r = runner.invoke(app, ["city", str(tmp_path / "city"), "--size", "tiny"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "city" / "sensors.geojson").exists()


@pytest.mark.servers
def test_cli_run_smoke(stack: LocalStack, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in role_env(stack.env(), "simulator").items():  # the simulator's account
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, [
            "run", "--size", "tiny", "--speed", "0", "--sim-duration", "10m", "--format",
            "fiware", "--registry", str(tmp_path / "reg.csv"), "--ground-truth",
            str(tmp_path / "gt.csv"), "--start", "2026-01-05T09:00:00+01:00"])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    assert (tmp_path / "reg.csv").exists() and (tmp_path / "gt.csv").exists()


@pytest.mark.servers
def test_qos0_publisher_is_not_paced_by_its_own_store(stack: LocalStack) -> None:
    """QoS 0 has no PUBACK: a message leaves the store when paho takes it, and a publisher
    blocked on a full store must be woken then. Before: it slept 0.5 s per full window
    (10 messages here: 1,000 messages took 50 s; the limits bench saw 400 msg/s)."""
    import time

    from urbanbrain.simulators.publisher import MqttPool

    sink = Sink(role_settings(stack, "ingest"))
    pool = MqttPool(role_settings(stack, "simulator"), qos=0, max_outstanding=10,
                    client_id_prefix="qos0")
    try:
        t0 = time.monotonic()
        for k in range(1000):
            pool.publish("city/t/traffic/loop/q0", b"%d" % k)
        pool.flush(30)
        elapsed = time.monotonic() - t0
        sink.wait(1000, timeout=20)
    finally:
        pool.close()
        sink.stop()
    assert elapsed < 15, f"1,000 QoS 0 messages took {elapsed:.1f} s"
    # QoS 0 may drop under overload, but not on an idle local broker with one subscriber
    assert len(sink.messages) == 1000
