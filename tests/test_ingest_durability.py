"""Ingest's delivery contract on real servers: no loss across a crash, under backpressure,
and across shared-subscription replicas.

A reading is identified by (sensor_id, ts): every published one is unique, so counting
keys in readings.<domain> shows loss (a key missing) and duplicates (a key twice).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import orjson
import pytest
from conftest import component_env
from harness import Component, Publisher, read_topic, wait_until

from urbanbrain.reading import decode_batch

pytestmark = pytest.mark.servers

DOMAINS = {
    "traffic": ("loop", "speed_kmh", 5.0),
    "environment": ("air", "pm25_ugm3", 3.0),
    "water": ("main", "pressure_kpa", 300.0),
    "power": ("substation", "load_mw", 10.0),
}
SENSORS_PER_DOMAIN = 50


def messages(run_id: str, n: int) -> list[tuple[str, bytes, tuple[str, int]]]:
    """``n`` single-reading JSON messages as (topic, payload, key), spread over 4 domains."""
    base = int(time.time() * 1000) - 3_600_000
    out = []
    names = list(DOMAINS)
    for i in range(n):
        domain = names[i % 4]
        kind, metric, value = DOMAINS[domain]
        sensor = f"{domain[:2]}-{run_id}-{(i // 4) % SENSORS_PER_DOMAIN:03d}"
        ts = base + i  # unique per message, so unique per sensor too
        payload = orjson.dumps({"ts": ts, "metrics": {metric: value + (i % 97) * 0.5}})
        out.append((f"city/d{run_id}/{domain}/{kind}/{sensor}", payload, (sensor, ts)))
    return out


def kafka_keys(bootstrap: str, run_id: str) -> Counter:
    """(sensor_id, ts) → how many times it is in readings.<domain>, for this run's district."""
    district = f"d{run_id}"
    seen: Counter = Counter()
    for domain in DOMAINS:
        for _, value in read_topic(bootstrap, f"readings.{domain}", timeout=20):
            for r in decode_batch(value):
                if r["district"] == district:
                    seen[(r["sensor_id"], r["ts"])] += 1
    return seen


def dead_letters(bootstrap: str, run_id: str) -> list[dict]:
    recs = [orjson.loads(v) for _, v in read_topic(bootstrap, "readings.deadletter")]
    return [r for r in recs if f"/d{run_id}/" in r["topic"]]


def wait_all(bootstrap: str, run_id: str, expected: set, timeout: float) -> Counter:
    """Poll Kafka until every expected key is there (then a short settle for stragglers)."""
    state: dict[str, Counter] = {}

    def complete() -> bool:
        state["keys"] = kafka_keys(bootstrap, run_id)
        return expected <= state["keys"].keys()

    try:
        wait_until(complete, timeout, interval=1.0, what="all readings in Kafka")
    except AssertionError:
        missing = expected - state["keys"].keys()
        raise AssertionError(f"{len(missing)} of {len(expected)} readings lost, e.g. "
                             f"{sorted(missing)[:5]}") from None
    time.sleep(0.5)
    return kafka_keys(bootstrap, run_id)


def publish_all(stack, msgs, progress: list[int] | None = None) -> None:
    pub = Publisher(stack.mqtt.port, auth=stack.mqtt_login("simulator"))
    try:
        for i, (topic, payload, _) in enumerate(msgs):
            pub.publish(topic, payload)
            if progress is not None:
                progress[0] = i + 1
            if i % 1000 == 999:
                pub.flush(60)  # bound paho's own outgoing queue
    finally:
        pub.close()


def ingest(stack, run_id, tmp_path, name="ingest", **extra: str) -> Component:
    env = component_env(stack, run_id, **extra)
    return Component(name, ["ingest"], env, tmp_path / f"{name}.log")


def last_stats(c: Component) -> int:
    """Messages processed by ``c``, from its latest progress line."""
    counts = re.findall(r"ingest: (\d+) messages", c.log())
    return int(counts[-1]) if counts else 0


def test_sigkill_mid_stream_loses_nothing(stack, run_id, components, tmp_path):
    n = 20_000
    bootstrap = stack.env()["URBANBRAIN_KAFKA_BOOTSTRAP"]
    bridge = ingest(stack, run_id, tmp_path)
    components.append(bridge.start())
    bridge.wait_for_log("MQTT subscribed", timeout=30)  # the persistent session now exists

    msgs = messages(run_id, n)
    progress = [0]
    publisher = threading.Thread(target=publish_all, args=(stack, msgs, progress))
    publisher.start()
    wait_until(lambda: progress[0] >= n * 0.4, 60, interval=0.02, what="40% published")
    bridge.kill()  # SIGKILL: whatever it had received but not acked is redelivered
    killed_at = progress[0]
    time.sleep(0.3)  # the broker queues for the offline session meanwhile
    bridge.start()  # same client id → same session
    bridge.wait_for_log("MQTT subscribed", timeout=30, count=2)
    publisher.join(120)
    assert not publisher.is_alive()
    assert killed_at < n, "the kill must happen in the middle of the stream"
    assert "session present: True" in bridge.log(), "the restart must resume the session"

    expected = {key for _, _, key in msgs}
    keys = wait_all(bootstrap, run_id, expected, timeout=90)
    assert keys.keys() == expected, "nothing but the published readings"
    duplicates = sum(c - 1 for c in keys.values())
    print(f"\nkill test: {n} readings, killed after {killed_at} published, "
          f"{duplicates} duplicates after redelivery")
    assert dead_letters(bootstrap, run_id) == []


def test_tiny_inflight_window_still_delivers_a_burst(stack, run_id, components, tmp_path):
    n = 5_000
    bootstrap = stack.env()["URBANBRAIN_KAFKA_BOOTSTRAP"]
    bridge = ingest(stack, run_id, tmp_path, URBANBRAIN_INGEST_MAX_INFLIGHT="50")
    components.append(bridge.start())
    bridge.wait_for_log("MQTT subscribed", timeout=30)
    msgs = messages(run_id, n)
    publish_all(stack, msgs)

    expected = {key for _, _, key in msgs}
    keys = wait_all(bootstrap, run_id, expected, timeout=60)
    assert keys.keys() == expected
    assert max(keys.values()) == 1, "no crash, so no redelivery and no duplicates"
    assert dead_letters(bootstrap, run_id) == []


def test_shared_subscription_replicas_split_the_load(stack, run_id, components, tmp_path):
    n = 6_000
    bootstrap = stack.env()["URBANBRAIN_KAFKA_BOOTSTRAP"]
    replicas = [
        ingest(stack, run_id, tmp_path, name=f"ingest-{x}",
               URBANBRAIN_MQTT_SHARED_GROUP=f"g1-{run_id}",
               URBANBRAIN_MQTT_CLIENT_ID=f"ingest-{run_id}-{x}")
        for x in "ab"
    ]
    for r in replicas:
        components.append(r.start())
    for r in replicas:
        r.wait_for_log("MQTT subscribed", timeout=30)
    msgs = messages(run_id, n)
    publish_all(stack, msgs)

    expected = {key for _, _, key in msgs}
    keys = wait_all(bootstrap, run_id, expected, timeout=60)
    assert keys.keys() == expected
    assert max(keys.values()) == 1, "each message goes to exactly one replica"

    # Each replica reports its count every 5 s; both must have taken a share.
    wait_until(lambda: sum(last_stats(r) for r in replicas) >= n, 15,
               what="both replicas' progress lines")
    shares = [last_stats(r) for r in replicas]
    print(f"\nshared subscription: replica shares {shares}")
    assert sum(shares) == n
    assert all(s > 0 for s in shares), shares
    assert dead_letters(bootstrap, run_id) == []


def test_session_takeover_mid_stream_loses_nothing(stack, run_id, components, tmp_path):
    """A reconnect without a restart: queued messages of the old connection must not be
    acked on the new one (their packet ids mean nothing there); the redeliveries count."""
    import paho.mqtt.client as mqtt

    n = 8_000
    bootstrap = stack.env()["URBANBRAIN_KAFKA_BOOTSTRAP"]
    bridge = ingest(stack, run_id, tmp_path)
    components.append(bridge.start())
    bridge.wait_for_log("MQTT subscribed", timeout=30)

    msgs = messages(run_id, n)
    progress = [0]
    publisher = threading.Thread(target=publish_all, args=(stack, msgs, progress))
    publisher.start()
    wait_until(lambda: progress[0] >= n * 0.4, 60, interval=0.02, what="40% published")
    # Same client id, persistent session: the broker drops ingest's connection for this one;
    # a clean DISCONNECT leaves the session (and its unacked messages) for ingest to resume.
    # It never acks what the session sends it meanwhile (manual_ack), so that is redelivered.
    thief = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ingest-{run_id}",
                        clean_session=False, manual_ack=True)
    thief.username_pw_set(*stack.mqtt_login("ingest"))
    thief.connect("127.0.0.1", stack.mqtt.port)
    thief.loop_start()
    time.sleep(0.2)
    thief.disconnect()
    thief.loop_stop()
    bridge.wait_for_log("MQTT connected", timeout=30, count=2)
    publisher.join(120)
    assert not publisher.is_alive()

    expected = {key for _, _, key in msgs}
    keys = wait_all(bootstrap, run_id, expected, timeout=60)
    assert keys.keys() == expected
    print(f"\ntakeover test: {sum(c - 1 for c in keys.values())} duplicates")
    # Redeliveries of messages forwarded before the takeover hit the normaliser's exact-resend
    # check; the bridge knows them by the DUP flag and must not dead-letter them.
    assert dead_letters(bootstrap, run_id) == []
