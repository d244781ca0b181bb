"""compose.yaml as close to running as we can get without Docker.

The effective configuration is rendered from compose.yaml and a sample .env (compose's own
substitution rules, tests/composefile.py). Our services (ingest, streams, the demo
simulator) then run as local processes with *exactly* each service's environment; only the
server addresses and in-container paths are mapped to the local stack, whose users and
passwords are the .env's. Only the images differ.

What must hold, end to end: readings published by the simulator's account reach InfluxDB,
the Grafana user reads them with the provisioned datasource's settings, and an alert rule
from the mounted rules folder fires on MQTT and on the configured webhook.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
import yaml
from composefile import (
    ROOT,
    env_mapping,
    filled_example_env,
    interpolate,
    interpolate_tree,
    load_compose,
)
from harness import Component, Publisher, wait_until

from urbanbrain.influxql import InfluxQL
from urbanbrain.localstack import LocalStack, StackSecrets, free_port

pytestmark = [pytest.mark.servers, pytest.mark.slow]

RULE = """
groups:
  - name: compose-check
    rules:
      - alert: ComposeSlowTraffic
        kind: threshold
        selector: {domain: traffic}
        metric: speed_kmh
        condition: {op: '<', value: 10}
        labels: {severity: warning}
        annotations:
          summary: 'slow traffic at {{ $labels.sensor }}'
"""


class Hook(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        n = int(self.headers.get("Content-Length", 0))
        Hook.bodies.append(json.loads(self.rfile.read(n)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _mapped(value: str, paths: dict[str, str]) -> str:
    for container, local in paths.items():
        value = value.replace(container, local)
    return value


def _local(env: dict[str, str], stack: LocalStack, paths: dict[str, str],
           metrics_port: int | None) -> dict[str, str]:
    """A service's compose environment with the compose network's addresses and the
    container's paths mapped to this machine. Nothing else is touched."""
    assert stack.mqtt and stack.kafka and stack.influx
    hosts = {"mqtt://mosquitto:1883": f"mqtt://127.0.0.1:{stack.mqtt.port}",
             "kafka:9092": f"127.0.0.1:{stack.kafka.port}",
             "http://influxdb:8086": f"http://127.0.0.1:{stack.influx.port}"}
    out = {k: _mapped(hosts.get(v, v), paths) for k, v in env.items()}
    if metrics_port is not None:
        assert out.pop("URBANBRAIN_METRICS_PORT") == "9108"
        out["URBANBRAIN_METRICS_PORT"] = str(metrics_port)
    # tansu needs short group timeouts (DESIGN.md); compose leaves Kafka's defaults
    out["URBANBRAIN_KAFKA_SESSION_TIMEOUT_S"] = "4"
    out["URBANBRAIN_KAFKA_HEARTBEAT_INTERVAL_S"] = "0.5"
    return out


def test_compose_environment_end_to_end(tmp_path: Path) -> None:
    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "check.yaml").write_text(RULE)
    dotenv = filled_example_env(
        ALERT_WEBHOOK_URLS=f"http://127.0.0.1:{hook.server_port}/hook",
        RULES_DIR=str(rules), SIMULATOR_RATE="200", URBANBRAIN_KAFKA_PARTITIONS="2")
    doc = interpolate_tree(load_compose(), dotenv)
    services = doc["services"]

    # the database as the influxdb image's first start leaves it: the influx-init service
    # below creates its retention policies
    stack = LocalStack(tmp_path / "stack", secrets=StackSecrets.from_dotenv(dotenv),
                       influx_db=services["influxdb"]["environment"]["INFLUXDB_DB"],
                       init_retention=False).start()
    components: list[Component] = []
    try:
        # the compose volumes, at local paths
        data = tmp_path / "data"
        registry_dir = tmp_path / "registry"
        registry_dir.mkdir()
        paths = {"/var/lib/urbanbrain/registry": str(registry_dir),
                 "/var/lib/urbanbrain/data": str(data)}
        mounts = {target: source for svc in ("streams",)
                  for source, target in (v.rsplit(":", 2)[:2] for v in services[svc]["volumes"]
                                         if v.startswith(("/", "."))) }
        assert mounts["/etc/urbanbrain/rules"] == str(rules)
        paths["/etc/urbanbrain/rules"] = str(rules)

        ports = {"ingest": free_port(), "streams": free_port()}
        envs = {name: _local(env_mapping(services[name]), stack, paths, ports.get(name))
                for name in ("influx-init", "ingest", "streams", "simulator")}
        # exactly compose's users: nothing came from the local stack's own accounts
        assert envs["streams"]["URBANBRAIN_INFLUX_USERNAME"] == "urbanbrain"
        assert envs["ingest"]["URBANBRAIN_INFLUX_PASSWORD"] == dotenv["INFLUXDB_WRITER_PASSWORD"]
        assert envs["streams"]["URBANBRAIN_MQTT_USERNAME"] == "urbanbrain-alerts"

        def start(name: str) -> Component:
            args = [_mapped(a, paths) for a in services[name]["command"]]
            c = Component(name, args, envs[name], tmp_path / f"{name}.log")
            components.append(c.start())
            return c

        got: list[tuple[str, dict]] = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        sub.username_pw_set("urbanbrain-console", dotenv["MQTT_CONSOLE_PASSWORD"])
        sub.on_message = lambda c, u, m: got.append((m.topic, orjson.loads(m.payload)))
        sub.connect("127.0.0.1", stack.mqtt.port)  # type: ignore[union-attr]
        sub.subscribe("city/alerts/#", qos=1)
        sub.loop_start()

        # the one-shot influx-init, as compose runs it before ingest and streams
        init = start("influx-init")
        wait_until(lambda: init.exited, 60, what="influx-init to finish")
        assert init.proc is not None and init.proc.returncode == 0, init.log()
        policies = stack.influx_admin.query(
            f'SHOW RETENTION POLICIES ON "{envs["streams"]["URBANBRAIN_INFLUX_DB"]}"')
        names = {row[0] for row in policies["results"][0]["series"][0]["values"]}
        assert names >= {"raw", "windows", "longterm", "alerts", "deadletters", "pipeline"}
        assert "URBANBRAIN_INFLUX_ADMIN_PASSWORD" not in envs["streams"]

        ingest, streams = start("ingest"), start("streams")
        # compose's own healthcheck command, against the local port: the simulator's
        # depends_on waits for exactly this
        for name in ("ingest", "streams"):
            health = services[name]["healthcheck"]["test"]
            check = [sys.executable if a == "python" else a.replace("9108", str(ports[name]))
                     for a in health[1:]]
            wait_until(lambda c=check: subprocess.run(c, capture_output=True,
                                                      check=False).returncode == 0,
                       90, what=f"{name} healthy by compose's healthcheck")
        streams.wait_for_log("Ready", timeout=90)

        sim = start("simulator")  # writes the registry, then publishes at SIMULATOR_RATE
        grafana_env = _local(env_mapping(services["grafana"]), stack, {}, None)
        reader = InfluxQL(*_datasource(grafana_env))
        wait_until(lambda: _count(reader) > 200, 90, what="simulated readings in InfluxDB")
        sim.stop()
        assert (registry_dir / "devices.csv").exists()

        # one slow reading as the simulator's MQTT account: the mounted rule fires
        pub = Publisher(stack.mqtt.port, auth=("urbanbrain-simulator",  # type: ignore[union-attr]
                                               dotenv["MQTT_SIMULATOR_PASSWORD"]))
        sensor = f"tl-compose-{secrets.token_hex(3)}"
        pub.publish(f"city/compose/traffic/loop/{sensor}",
                    {"ts": int(time.time() * 1000), "metrics": {"speed_kmh": 4.0}})
        pub.close()
        wait_until(lambda: any(p["labels"].get("sensor") == sensor for _, p in got), 60,
                   what="the alert on MQTT")
        wait_until(lambda: any(a["labels"].get("sensor") == sensor
                               for b in Hook.bodies for a in b["alerts"]), 30,
                   what="the alert on the webhook")
        body = next(b for b in Hook.bodies
                    if any(a["labels"].get("sensor") == sensor for a in b["alerts"]))
        assert body["externalURL"] == dotenv["ALERT_EXTERNAL_URL"]
        wait_until(lambda: reader.query(
            f"SELECT count(active) FROM alerts.alerts WHERE sensor = '{sensor}'"), 30,
            what="the alert in InfluxDB, read as Grafana")
        sub.loop_stop()
    finally:
        for c in reversed(components):
            c.stop()
        stack.stop()
        hook.shutdown()


def _datasource(grafana_env: dict[str, str]) -> tuple[str, str, str, str]:
    """(url, db, user, password) of the provisioned datasource, expanded as Grafana expands
    ``$VARIABLES`` from its own (compose) environment, mapped to the local InfluxDB."""
    raw = (ROOT / "dashboards/provisioning/datasources/influxdb.yaml").read_text()
    ds = yaml.safe_load(interpolate(raw, grafana_env))["datasources"][0]
    return (ds["url"], ds["jsonData"]["dbName"], ds["user"], ds["secureJsonData"]["password"])


def _count(client: InfluxQL) -> int:
    total = 0
    for domain in ("traffic", "environment", "water", "power"):
        try:
            for s in client.query(f'SELECT count(*) FROM "{domain}"'):
                total += max((v for v in s["values"][0][1:] if isinstance(v, int)), default=0)
        except Exception:  # noqa: BLE001 - nothing written yet
            return 0
    return total
