"""What mosquitto's persistence costs in QoS 1 throughput, and how much a kill -9 loses.

Issue #14: with ``persistence false`` (or ``autosave_interval 300``) a kill -9 of the broker
lost 10 % of a replay. ``autosave_on_changes`` closes most of that window by writing the
database after every N changes; mosquitto (2.0) writes the *whole* database each time, so
the cost grows with what the broker holds. Measured here on the real broker, per config:

* **online**: a persistent-session subscriber (clean_session False, QoS 1, like ingest)
  keeps up while one publisher sends ``--messages`` QoS 1 messages (window of 200 unacked,
  like simulators/publisher.py): publish rate until the last PUBACK;
* **backlog**: the subscriber is away, so every message is queued for its session (what
  the broker holds while ingest restarts or Kafka is down): publish rate;
* **kill -9** (``--kill``): the persistent subscriber online, the product's publisher
  (:class:`urbanbrain.simulators.publisher.MqttPool`, 2 connections, reconnecting) sends
  ``--messages`` at full speed; a quarter in, mosquitto is killed with SIGKILL and
  restarted on the same data folder 1 s later: how many messages (all PUBACKed to the
  publisher, which resends only what was unconfirmed) the subscriber never gets.

    .venv/bin/python bench/bench_broker_persistence.py [--messages 20000] [--kill] \
        [--out bench/results/broker_persistence.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from urbanbrain.localstack import ManagedProcess, _tcp_ready, mosquitto

#: name -> (persistence, autosave_changes); None = autosave_interval 300 (time based)
CONFIGS: dict[str, tuple[bool, int | None]] = {
    "persistence false": (False, None),
    "autosave_interval 300": (True, None),
    "autosave_on_changes 1000": (True, 1000),
    "autosave_on_changes 100": (True, 100),
    "autosave_on_changes 1": (True, 1),
}
PAYLOAD = b'{"ts":1700000000000,"metrics":{"speed_kmh":51.2}}'


def _client(port: int, cid: str, clean: bool) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    return c


class Subscriber:
    def __init__(self, port: int, cid: str = "bench-sub") -> None:
        self.got: set[int] = set()
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid,
                                  clean_session=False)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.got.add(int(m.topic.rsplit("/", 1)[1]))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.connected.wait(10)

    def _on_connect(self, c, u, flags, rc, props) -> None:  # noqa: ANN001
        c.subscribe("bench/#", qos=1)
        self.connected.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(port: int, n: int, window: int = 200) -> float:
    """n QoS 1 messages, at most ``window`` unacked; returns messages/s until the last PUBACK."""
    acked = [0]
    cond = threading.Condition()

    def on_publish(c, u, mid, rc, props) -> None:  # noqa: ANN001
        with cond:
            acked[0] += 1
            cond.notify_all()

    c = _client(port, f"bench-pub-{time.monotonic_ns()}", True)
    c.on_publish = on_publish
    t0 = time.perf_counter()
    for i in range(n):
        with cond:
            while i - acked[0] >= window:
                cond.wait(5)
        c.publish(f"bench/m/{i}", PAYLOAD, qos=1)
    with cond:
        while acked[0] < n:
            if not cond.wait(30):
                raise RuntimeError(f"only {acked[0]} of {n} PUBACKs")
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return n / dt


def start(workdir: Path, persistence: bool, changes: int | None) -> ManagedProcess:
    srv = mosquitto(workdir, persistence=persistence, autosave_changes=changes)
    srv.start(lambda: _tcp_ready(srv.port))
    return srv


def run_config(name: str, persistence: bool, changes: int | None, n: int, kill: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-mosq-") as tmp:
        out: dict = {"config": name}
        srv = start(Path(tmp) / "online", persistence, changes)
        try:
            sub = Subscriber(srv.port)
            out["online_msg_s"] = round(publish(srv.port, n))
            deadline = time.monotonic() + 30
            while len(sub.got) < n and time.monotonic() < deadline:
                time.sleep(0.05)
            out["online_received"] = len(sub.got)
            sub.close()
        finally:
            srv.stop()
        srv = start(Path(tmp) / "backlog", persistence, changes)
        try:
            Subscriber(srv.port, "bench-away").close()  # the session exists, its owner is away
            out["backlog_msg_s"] = round(publish(srv.port, n))
        finally:
            srv.stop()
        if kill:
            out.update(kill_mid_stream(Path(tmp) / "kill", persistence, changes, n))
    return out


def kill_mid_stream(workdir: Path, persistence: bool, changes: int | None, n: int) -> dict:
    from urbanbrain.settings import Settings
    from urbanbrain.simulators.publisher import MqttPool

    srv = start(workdir, persistence, changes)
    try:
        sub = Subscriber(srv.port, "bench-kill")
        sub.client.reconnect_delay_set(0.1, 1)
        pool = MqttPool(Settings(mqtt_url=f"mqtt://127.0.0.1:{srv.port}"), connections=2,
                        client_id_prefix="bench-kill-pub")
        restarted = threading.Event()

        def restart() -> None:
            time.sleep(1.0)
            srv.start(lambda: _tcp_ready(srv.port))
            restarted.set()

        for i in range(n):
            pool.publish(f"bench/m/{i}", PAYLOAD)
            if i == n // 4:
                srv.kill()
                threading.Thread(target=restart, daemon=True).start()
        restarted.wait(30)
        pool.flush(120)
        last, still = -1, time.monotonic()
        while time.monotonic() - still < 3.0:  # until nothing more arrives for 3 s
            if len(sub.got) != last:
                last, still = len(sub.got), time.monotonic()
            time.sleep(0.1)
        lost = n - len(sub.got)
        resent = pool.resent
        pool.close()
        sub.close()
        return {"kill_lost": lost, "kill_resent_by_publisher": resent}
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--kill", action="store_true", help="also measure loss after kill -9")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS),
                    metavar="CONFIG", help="names from CONFIGS (default: all)")
    args = ap.parse_args()
    rows = []
    for name in args.configs:
        persistence, changes = CONFIGS[name]
        row = run_config(name, persistence, changes, args.messages, args.kill)
        print(json.dumps(row))
        rows.append(row)
    if args.out:
        args.out.write_text(json.dumps({"messages": args.messages, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
