"""Issue #14: health, metrics and the pipeline's own alerts, while Kafka and InfluxDB fail.

One real pipeline (mosquitto → ingest → tansu through the cutting proxy → one worker →
InfluxDB), both components with ``--metrics-port``:

1. ``/healthz``, ``/readyz`` and ``/metrics`` answer on both, as curl sees them; the metric
   families the issue names are there, and their values follow the readings published.
2. Kafka unreachable (every connection cut, new ones refused for ``BLACKOUT_S``): both
   ``/readyz`` turn 503 naming ``kafka_reachable``, and 200 again once Kafka is back.
3. InfluxDB stopped while readings keep coming: the pipeline rules, evaluated inside the
   processes over these metrics, fire InfluxWriteRetries and NothingStored, delivered to
   Kafka ``alerts``, MQTT ``city/alerts/pipeline/...`` and the webhook — none of which
   goes through InfluxDB.
"""

from __future__ import annotations

import threading
import time

import orjson
import paho.mqtt.client as mqtt
import pytest
from conftest import component_env
from harness import Component, Influx, Publisher, read_topic, wait_until

from faults.gateway import WebhookReceiver, http_get, metric
from faults.replay import RULES, build_replay, raw_counter
from urbanbrain.localstack import free_port

pytestmark = [pytest.mark.servers, pytest.mark.slow, pytest.mark.timeout(400)]

BLACKOUT_S = 10.0
NO_SPANS = {k: (0.0, 0.0) for k in ("traffic", "district", "environment", "water", "power")}


def test_health_metrics_and_pipeline_alerts(proxied_stack, run_id, components, tmp_path):
    stack, proxy = proxied_stack
    replay = build_replay(run_id, 60, NO_SPANS)  # 6,000 readings, 1 s apart per sensor
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(district=f"{replay.prefix}-dz"))
    hook = WebhookReceiver()
    env = component_env(stack, run_id, URBANBRAIN_ALERT_RULES_PATH=str(rules),
                        URBANBRAIN_DATA_DIR=str(tmp_path / "var"),
                        URBANBRAIN_PIPELINE_INTERVAL_S="1",
                        URBANBRAIN_ALERT_WEBHOOK_URLS=hook.url)
    bootstrap = env["URBANBRAIN_KAFKA_BOOTSTRAP"]
    ports = {"ingest": free_port(), "worker": free_port()}
    ingest = Component("ingest", ["ingest", "--metrics-port", str(ports["ingest"])], env,
                       tmp_path / "ingest.log").start(fresh_log=True)
    worker = Component("worker", ["streams", "worker", "--metrics-port", str(ports["worker"])],
                       env, tmp_path / "worker.log").start(fresh_log=True)
    components += [ingest, worker]

    def ready(name: str) -> bool:
        for c in (ingest, worker):
            if c.exited:
                raise AssertionError(f"{c.name} exited:\n{c.log()[-3000:]}")
        return http_get(ports[name], "/readyz")[0] == 200

    wait_until(lambda: ready("ingest") and ready("worker"), 120, interval=0.5,
               what="both /readyz 200")

    # -- 1. endpoints and metrics ------------------------------------------------------------
    for name, port in ports.items():
        assert http_get(port, "/livez") == (200, "ok\n")
        status, body = http_get(port, "/healthz")
        health = orjson.loads(body)
        assert status == 200 and health["live"] and health["ready"], (name, health)
        assert health["checks"]["kafka_reachable"]["ok"], health
    seen: list[tuple[str, bytes]] = []
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{run_id}")
    watcher.username_pw_set(*stack.mqtt_login("console"))
    watcher.on_connect = lambda c, *a: c.subscribe("city/alerts/pipeline/#", qos=1)
    watcher.on_message = lambda c, u, m: seen.append((m.topic, m.payload))
    watcher.connect("127.0.0.1", stack.mqtt.port)
    watcher.loop_start()

    pub = Publisher(stack.mqtt.port, client_id=f"pub-{run_id}",
                    auth=stack.mqtt_login("simulator"))
    first = replay.messages[:2000]
    for topic, payload in first:
        pub.publish(topic, payload)
    pub.flush(60)
    count = raw_counter(Influx.reader(stack, f"test_{run_id}"))
    wait_until(lambda: count() >= len(first), 90, what="the first readings stored")

    def scrape(name: str) -> str:
        status, page = http_get(ports[name], "/metrics")
        assert status == 200, page
        return page

    wait_until(lambda: (metric(scrape("worker"), "urbanbrain_readings_out_total") or 0)
               >= len(first), 30, what="the worker's readings_out")
    page = scrape("ingest")
    assert metric(page, "urbanbrain_readings_out_total") == len(first)
    assert metric(page, "urbanbrain_mqtt_connected") == 1
    assert metric(page, "urbanbrain_mqtt_session_present") is not None
    assert metric(page, "urbanbrain_mqtt_puback_backlog") is not None
    assert metric(page, "urbanbrain_dead_letters_total") is None  # no reason yet, no series
    assert metric(page, "urbanbrain_ready") == 1
    page = scrape("worker")
    assert metric(page, "urbanbrain_readings_in_total") == len(first)
    assert metric(page, "urbanbrain_dead_letters_total", reason="late") == 0
    assert metric(page, "urbanbrain_kafka_lag_records", topic="readings.traffic") is not None
    assert metric(page, "urbanbrain_influx_write_seconds") is not None
    assert metric(page, "urbanbrain_influx_write_retries_total") == 0
    assert metric(page, "urbanbrain_influx_auth_failures_total") == 0
    # the pipeline's own rules evaluate on a 5-s processing-time timer (rules/pipeline_watch.py),
    # which a fast worker may not have reached when the first readings are stored
    wait_until(lambda: (metric(scrape("worker"), "urbanbrain_rule_evaluations_total") or 0) > 0,
               15, what="the worker's pipeline rules evaluated once")
    page = scrape("worker")
    assert metric(page, "urbanbrain_alerts", state="firing") is not None
    assert metric(page, "urbanbrain_ready") == 1

    # -- 2. readiness flips while Kafka is unreachable ----------------------------------------
    t_cut = time.monotonic()
    proxy.drop_all(refuse_for_s=BLACKOUT_S)
    wait_until(lambda: all(http_get(p, "/readyz")[0] == 503 for p in ports.values()),
               BLACKOUT_S, interval=0.2, what="both /readyz 503 while Kafka is cut")
    flipped = time.monotonic() - t_cut
    for port in ports.values():
        status, body = http_get(port, "/readyz")
        assert status == 503 and "kafka_reachable" in body, body
    assert metric(scrape("ingest"), "urbanbrain_ready") == 0
    assert metric(scrape("ingest"), "urbanbrain_kafka_reachable") == 0
    wait_until(lambda: ready("ingest") and ready("worker"), 60, interval=0.5,
               what="both /readyz 200 after the blackout")
    back = time.monotonic() - t_cut
    print(f"\nreadiness: 503 {flipped:.1f} s after the cut, 200 again {back:.1f} s after it "
          f"(blackout {BLACKOUT_S:g} s)")

    # -- 3. InfluxDB stopped: the pipeline rules fire, delivered without InfluxDB ------------
    stored = count()
    stack.influx.stop()
    t_stop = time.monotonic()
    stop = threading.Event()

    def keep_publishing() -> None:
        for topic, payload in replay.messages[len(first):]:
            if stop.is_set():
                return
            pub.publish(topic, payload)
            time.sleep(0.01)

    feeder = threading.Thread(target=keep_publishing, daemon=True)
    feeder.start()
    want = {("InfluxWriteRetries", "firing"), ("NothingStored", "firing")}

    def kafka_alerts() -> set[tuple[str, str]]:
        return {(r["labels"]["alertname"], r["status"]) for r in
                (orjson.loads(v) for _, v in read_topic(bootstrap, "alerts"))
                if r["labels"].get("district") == "pipeline"}

    try:
        wait_until(lambda: want <= kafka_alerts(), 120, interval=1.0,
                   what="InfluxWriteRetries and NothingStored on the alerts topic")
        fired_s = time.monotonic() - t_stop
        wait_until(lambda: {a for a, _ in want} <= {t.rsplit("/", 1)[-1] for t, _ in seen},
                   30, what="the pipeline alerts on MQTT")
        wait_until(lambda: want <= hook.alertnames(), 30, what="the pipeline alerts at the webhook")
    finally:
        stop.set()
        feeder.join(10)
        stack.restart_influx()
        watcher.loop_stop()
        hook.close()
    print(f"pipeline alerts with InfluxDB down: {sorted(kafka_alerts())}, all firing "
          f"{fired_s:.0f} s after the stop; MQTT topics {sorted({t for t, _ in seen})}")
    assert count() >= stored  # InfluxDB is back with what it had
    sensors = {orjson.loads(v)["labels"]["sensor"] for _, v in read_topic(bootstrap, "alerts")
               if orjson.loads(v)["labels"].get("district") == "pipeline"}
    assert any(s.startswith("pipeline-streams-") for s in sensors), sensors
