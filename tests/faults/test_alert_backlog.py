"""An alert episode that arrives inside one batch must still fire and resolve.

Why this belongs to the fault suite: after a crash or an outage the pipeline catches up on a
backlog, and a backlog travels in big units. Ingest drains its resumed MQTT session into
Kafka records of up to 500 readings of one partition (a gateway's SenML pack of a minute of
1 Hz samples is one record too), and the worker's agents take up to 200 records per batch.
Event time inside such a batch can span minutes. A threshold episode of a few seconds that
happened while ingest or the worker was down is in the data all the same, and the operators
must hear about it (late, but once).

The control sensor gets the same episode one reading per Kafka record, spaced beyond the
agent's ``take`` window, so each reading is its own batch: its alert must fire and resolve
(the rule and the outputs work). The backlog sensor gets its episode inside one record.

Found by this suite: ``PartitionEvaluators.process`` (streams/alerting.py) used to observe
a whole batch and tick once, at its newest event time, so such an episode never alerted.
It now evaluates a batch in event-time steps of ``URBANBRAIN_ALERT_EVAL_STEP_S``.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import component_env
from harness import Component, Influx, wait_until

from faults.replay import alert_key, alert_records
from urbanbrain.kafka import readings_topic
from urbanbrain.reading import Partitioner, encode_batch

pytestmark = [pytest.mark.servers, pytest.mark.timeout(300)]

RULES = """
groups:
  - name: backlog
    rules:
      - alert: SlowTraffic
        kind: threshold
        selector: {domain: traffic}
        metric: speed_kmh
        condition: {op: '<', value: 20, clear: 30}
        labels: {severity: warning}
"""
REGRESSION = (
    "an episode inside one backlog batch did not alert: SensorRules.process must "
    "evaluate a batch in event-time steps (URBANBRAIN_ALERT_EVAL_STEP_S), not once at its end"
)


def reading(sensor: str, district: str, ts: int, speed: float) -> dict:
    return {"sensor_id": sensor, "domain": "traffic", "kind": "loop", "district": district,
            "ts": ts, "recv": int(time.time() * 1000), "metrics": {"speed_kmh": speed}}


async def produce(bootstrap: str, records: list[tuple[int, list[dict]]], pause_s: float) -> None:
    """One Kafka record per entry (partition, readings), ``pause_s`` apart."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, batch in records:
            await producer.send_and_wait(readings_topic("traffic"), encode_batch(batch),
                                         partition=partition)
            await asyncio.sleep(pause_s)
    finally:
        await producer.stop()


def test_episode_inside_one_backlog_batch_alerts(private_stack, run_id, components,
                                                 tmp_path):
    stack = private_stack
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = component_env(stack, run_id, URBANBRAIN_ALERT_RULES_PATH=str(rules),
                        URBANBRAIN_DATA_DIR=str(tmp_path / "var"))
    bootstrap = env["URBANBRAIN_KAFKA_BOOTSTRAP"]
    worker = Component("streams", ["streams", "worker", "-l", "info"], env,
                       tmp_path / "streams.log").start()
    components.append(worker)
    worker.wait_for_log("Ready", timeout=90)

    district = f"b{run_id}"
    control, backlog = f"tl-{run_id}-control", f"tl-{run_id}-backlog"
    part = Partitioner(int(env.get("URBANBRAIN_KAFKA_PARTITIONS", "4")))
    t0 = (int(time.time() * 1000) - 3_600_000) // 60_000 * 60_000
    episode = [50.0] * 20 + [10.0] * 10 + [50.0] * 30  # 10 s below 20 km/h, 1 Hz

    # control: one reading per record, each its own agent batch (take window 0.2 s)
    spread = [(part(control), [reading(control, district, t0 + i * 1000, v)])
              for i, v in enumerate(episode) if 15 <= i < 36]
    asyncio.run(produce(bootstrap, spread, pause_s=0.4))
    # backlog: the same minute in one record, then one reading in a record of its own
    t1 = t0 + 120_000
    one = [reading(backlog, district, t1 + i * 1000, v) for i, v in enumerate(episode)]
    after = [reading(backlog, district, t1 + 70_000, 50.0)]
    asyncio.run(produce(bootstrap, [(part(backlog), one), (part(backlog), after)],
                        pause_s=0.4))

    influx = Influx.reader(stack, f"test_{run_id}")
    n = len(spread) + len(one) + len(after)

    def stored() -> int:
        try:
            return influx.count("traffic", "speed_kmh")
        except Exception:  # noqa: BLE001 - database not created yet
            return 0

    wait_until(lambda: stored() >= n, 60, what=f"{n} raw points")
    time.sleep(2.0)  # the alert agent runs beside the storing one
    recs = [r for r in alert_records(bootstrap) if r["labels"].get("district") == district]
    got = {who: [r["status"] for r in recs if alert_key(r)[1] == who]
           for who in (control, backlog)}
    print(f"\nalert transitions: {got}")
    assert got[control] == ["firing", "resolved"], got
    fired = next(r for r in recs if alert_key(r) == ("SlowTraffic", control))
    assert t0 + 20_000 <= fired["starts_at"] < t0 + 30_000, fired
    assert got[backlog] == ["firing", "resolved"], (REGRESSION, got)
    fired = next(r for r in recs if alert_key(r) == ("SlowTraffic", backlog))
    # evaluated in event-time steps of URBANBRAIN_ALERT_EVAL_STEP_S (5 s): late, but in range
    assert t1 + 20_000 <= fired["starts_at"] < t1 + 35_000, fired
