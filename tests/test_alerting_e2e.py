"""Alerting end to end on real servers: MQTT → ingest → Kafka → alerting worker →
Kafka ``alerts`` + InfluxDB ``alerts`` + MQTT city/alerts/# + Alertmanager-style webhook;
then a restart of the worker must not re-send a transition."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import orjson
import paho.mqtt.client as mqtt
import pytest
from conftest import component_env
from harness import Component, Influx, Publisher, read_topic, wait_until

from urbanbrain.components import role_env

import urbanbrain.rules

SCHEMA = json.loads(
    (Path(urbanbrain.rules.__file__).parent / "schema" / "alertmanager-webhook.schema.json")
    .read_text()
)


class AlertingWorker(Component):
    """``python -m urbanbrain.streams.alerting`` as a subprocess."""

    def start(self) -> AlertingWorker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "urbanbrain.streams.alerting"],
                env=role_env({**os.environ, **self.env}, "streams"), stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        return self


class Hook:
    """A stand-in for Alertmanager: records every JSON body POSTed to it."""

    def __init__(self) -> None:
        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


RULES = """
groups:
  - name: e2e
    rules:
      - alert: SlowTraffic
        kind: threshold
        selector: {{domain: traffic, sensors: [{sensor}]}}
        metric: speed_kmh
        condition: {{op: '<', value: 20, clear: 30}}
        for: 0s
        labels: {{severity: warning}}
        annotations: {{summary: 'Slow traffic {{{{ $value }}}} km/h at {{{{ $labels.sensor }}}}'}}
      - alert: SlowDistrict
        kind: threshold
        scope: district
        across: mean
        selector: {{domain: traffic, district: {district}}}
        metric: speed_kmh
        condition: {{op: '<', value: 20, clear: 30}}
        labels: {{severity: critical}}
"""


@pytest.mark.servers
def test_alerts_fire_resolve_and_survive_restart(private_stack, run_id, components, tmp_path):
    stack = private_stack
    sensor, district = f"tl-{run_id}", f"d{run_id}"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(sensor=sensor, district=district))
    hook = Hook()
    # A 35-second episode: event time must move on without data (idle partitions follow
    # the clock after 2 s) and district rules must be evaluated on a fine grid.
    env = component_env(stack, run_id, URBANBRAIN_ALERT_RULES_PATH=str(rules),
                        URBANBRAIN_ALERT_WEBHOOK_URLS=hook.url,
                        URBANBRAIN_ALERT_RELOAD_INTERVAL_S="1",
                        URBANBRAIN_STREAMS_LATENESS_S="2", URBANBRAIN_ALERT_IDLE_S="2",
                        URBANBRAIN_ALERT_DISTRICT_STEP_S="5",
                        # checkpointed every 2 s (production: 30), so the restart below
                        # rebuilds from written state within this test's span
                        URBANBRAIN_ALERT_STATE_CHECKPOINT_S="2",
                        URBANBRAIN_DATA_DIR=str(tmp_path / "var"))
    bootstrap = env["URBANBRAIN_KAFKA_BOOTSTRAP"]
    ingest = Component("ingest", ["ingest"], env, tmp_path / "ingest.log")
    worker = AlertingWorker("alerting", [], env, tmp_path / "alerting.log")
    components += [ingest.start(), worker.start()]

    got: list[tuple[str, dict]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.username_pw_set(*stack.mqtt_login("console"))  # the account that reads alerts
    sub.on_message = lambda c, u, m: got.append((m.topic, orjson.loads(m.payload)))
    sub.connect("127.0.0.1", stack.mqtt.port)
    sub.subscribe(f"city/alerts/{district}/#", qos=1)
    sub.loop_start()
    try:
        ingest.wait_for_log("MQTT connected", timeout=30)
        worker.wait_for_log("Ready", timeout=60)
        pub = Publisher(stack.mqtt.port, auth=stack.mqtt_login("simulator"))
        topic = f"city/{district}/traffic/loop/{sensor}"
        t0 = int(time.time() * 1000) - 120_000

        def send(speeds: list[float], start: int) -> None:
            for i, v in enumerate(speeds):
                pub.publish(topic, {"ts": t0 + (start + i) * 5_000, "metrics": {"speed_kmh": v}})
                pub.flush()
                time.sleep(0.25)  # one reading per Kafka record: the engine ticks per record

        # 15 fires; 25 stays firing (hysteresis: clears only above 30); 35 resolves.
        send([50, 45, 15, 18, 25, 35, 40], 0)

        def alerts() -> list[dict]:
            recs = [orjson.loads(v) for _, v in read_topic(bootstrap, "alerts")]
            return [r for r in recs if r["labels"].get("district") == district]

        def status(recs: list[dict], name: str) -> list[str]:
            return [r["status"] for r in recs if r["labels"]["alertname"] == name]

        recs = wait_until(lambda: len(alerts()) >= 4 and alerts(), 30, what="4 alert records")
        assert status(recs, "SlowTraffic") == ["firing", "resolved"]
        assert status(recs, "SlowDistrict") == ["firing", "resolved"]
        firing = next(r for r in recs if r["status"] == "firing"
                      and r["labels"]["alertname"] == "SlowTraffic")
        assert firing["labels"]["sensor"] == sensor and firing["value"] == 15
        assert firing["starts_at"] == t0 + 2 * 5_000
        resolved = next(r for r in recs if r["status"] == "resolved"
                        and r["labels"]["alertname"] == "SlowTraffic")
        assert resolved["ends_at"] == t0 + 5 * 5_000
        assert resolved["fingerprint"] == firing["fingerprint"]

        influx = Influx.reader(stack, f"test_{run_id}")

        def points() -> list[dict]:
            try:
                return influx.rows(f"SELECT * FROM alerts.alerts WHERE sensor = '{sensor}'")
            except Exception:  # noqa: BLE001 - database not created yet
                return []

        rows = wait_until(lambda: len(points()) >= 2 and points(), 15, what="alerts points")
        assert sorted(r["active"] for r in rows) == [0.0, 1.0]
        assert {r["rule"] for r in rows} == {"SlowTraffic"}

        wait_until(lambda: len(got) >= 4, 10, what="MQTT alerts")
        assert {t for t, _ in got} == {f"city/alerts/{district}/warning/SlowTraffic",
                                       f"city/alerts/{district}/critical/SlowDistrict"}
        assert sorted(p["status"] for _, p in got) == ["firing", "firing", "resolved", "resolved"]

        def hooked_alerts() -> int:  # transitions of one batch share one body (grouping)
            return sum(len(b["alerts"]) for b in hook.bodies)

        wait_until(lambda: hooked_alerts() >= 4, 15, what="4 alerts in webhook bodies")
        for body in hook.bodies:
            jsonschema.validate(body, SCHEMA)
        hooked = [(a["labels"]["alertname"], a["status"]) for b in hook.bodies for a in b["alerts"]]
        assert sorted(hooked) == sorted([("SlowDistrict", "firing"), ("SlowDistrict", "resolved"),
                                         ("SlowTraffic", "firing"), ("SlowTraffic", "resolved")])

        # Restart: state comes back from the changelog; nothing is sent again.
        assert worker.stop() == 0, worker.log()[-3000:]
        worker = AlertingWorker("alerting", [], env, tmp_path / "alerting2.log")
        components.append(worker.start())
        worker.wait_for_log("Ready", timeout=60)
        send([45, 50, 28], 7)  # resolved stays resolved (28 is inside the hysteresis band)
        time.sleep(3.0)
        assert "rebuilt from" in worker.log(), worker.log()[-3000:]
        assert len(alerts()) == 4, alerts()
        assert hooked_alerts() == 4 and len(got) == 4

        # Hot reload: a broken file keeps the old set, a fixed one is taken.
        rules.write_text("groups: [{name: e2e, rules: [{alert: Bad, kind: nonsense}]}]\n")
        worker.wait_for_log("alert rules NOT reloaded", timeout=10)
        rules.write_text(RULES.format(sensor=sensor, district=district).replace("value: 20",
                                                                               "value: 29"))
        worker.wait_for_log("alert rules reloaded", timeout=10)
        send([27], 10)  # below the new threshold: the reloaded rule fires
        wait_until(lambda: len(alerts()) >= 6, 15, what="alerts of the reloaded rules")
        new = sorted((r["labels"]["alertname"], r["status"]) for r in alerts()[4:])
        assert new == [("SlowDistrict", "firing"), ("SlowTraffic", "firing")], new
    finally:
        sub.loop_stop()
        sub.disconnect()
        hook.close()


# -- the pure parts, without servers ------------------------------------------------------

UNIT_RULES = """
groups:
  - name: unit
    rules:
      - alert: Slow
        kind: threshold
        selector: {domain: traffic}
        metric: speed_kmh
        condition: {op: '<', value: 20, clear: 30}
        labels: {severity: warning}
      - alert: Silent
        kind: absence
        selector: {domain: traffic}
        condition: {silent_for: 1m}
        labels: {severity: warning}
"""


def test_sensor_rules_rebuild_from_store_and_split_registry(tmp_path, monkeypatch):
    from urbanbrain.reading import Partitioner
    from urbanbrain.rules import loads
    from urbanbrain.streams.alert_stage import SensorRules
    from urbanbrain.streams.alerting import AlertSettings
    from urbanbrain.streams.state import DictStore

    monkeypatch.setenv("URBANBRAIN_ALERT_WEBHOOK_URLS", "http://a/1, http://b/2")
    assert AlertSettings().webhook_urls == ["http://a/1", "http://b/2"]

    rs = loads(UNIT_RULES)
    part = Partitioner(4)
    sensors = [f"tl-{i}" for i in range(12)]
    registry = {s: {"domain": "traffic", "kind": "loop", "district": "c"} for s in sensors}
    store = DictStore()
    pe = SensorRules(store, registry, lambda: rs, 4, lateness_ms=0)
    p = max(range(4), key=lambda q: sum(part(s) == q for s in sensors))
    mine = [s for s in sensors if part(s) == p]
    assert len(mine) >= 3
    slow = mine[0]
    t = 1_700_000_000_000
    readings = [{"sensor_id": s, "domain": "traffic", "district": "c", "ts": t,
                 "metrics": {"speed_kmh": 10.0 if s == slow else 50.0}} for s in mine[:2]]
    events = pe.process("readings.traffic", p, readings)
    pe.persist("readings.traffic", p)
    assert [(e.alertname, e.labels["sensor"], e.status) for e in events] == [
        ("Slow", slow, "firing")]
    # Absence: only this partition's registered sensors, so no other partition fires them.
    events = pe.process("readings.traffic", p, [{**readings[0], "ts": t + 59_000,
                                                 "metrics": {"speed_kmh": 12.0}},
                                                {**readings[0], "ts": t + 61_000,
                                                 "metrics": {"speed_kmh": 12.0}}])
    pe.persist("readings.traffic", p)
    silent = sorted(e.labels["sensor"] for e in events if e.alertname == "Silent")
    assert silent == sorted(mine[1:]) and len(silent) >= 2
    assert all(k.startswith(f"readings.traffic|{p}|") for k, _ in store.items())

    # A new generation (restart/rebalance): rebuilt from the store, nothing fires twice.
    pe.reset("gen-2")
    events = pe.process("readings.traffic", p, [{**readings[0], "ts": t + 62_000,
                                                 "metrics": {"speed_kmh": 11.0}}])
    assert [e for e in events if e.status == "firing"] == []
    # A rule that vanished while the partition was not live is resolved on rebuild.
    pe.persist("readings.traffic", p)
    rs = loads(UNIT_RULES.split("      - alert: Silent")[0])
    pe.reset("gen-3")
    _, resolved = pe.get("readings.traffic", p)
    assert {e.alertname for e in resolved} == {"Silent"}
    assert {e.status for e in resolved} == {"resolved"}
    assert all(e.ends_at >= e.starts_at for e in resolved)
