"""End to end on real servers: MQTT → ingest → Kafka → Faust → InfluxDB, and dead letters."""

from __future__ import annotations

import time

import orjson
import pytest
from conftest import INJECTOR, INJECTOR_PASSWORD, component_env
from harness import Component, Influx, Publisher, read_topic, wait_until

pytestmark = pytest.mark.servers

DOMAIN_METRICS = {
    "traffic": ("loop", {"vehicle_count": 12.0, "occupancy_pct": 8.5, "speed_kmh": 48.25}),
    "environment": ("air", {"pm25_ugm3": 11.5, "no2_ugm3": 33.0, "o3_ugm3": 40.125}),
    "water": ("main", {"pressure_kpa": 412.5, "flow_ls": 35.75}),
    "power": ("substation", {"load_mw": 21.5, "voltage_kv": 11.02, "frequency_hz": 50.01}),
}


def test_readings_reach_influx_and_rejects_reach_deadletters(stack, run_id, components, tmp_path):
    env = component_env(stack, run_id)
    streams = Component("streams", ["streams", "worker", "-l", "info"], env, tmp_path / "streams.log")
    ingest = Component("ingest", ["ingest"], env, tmp_path / "ingest.log")
    components += [ingest.start(), streams.start()]
    ingest.wait_for_log("MQTT connected", timeout=30)
    t0 = time.monotonic()
    streams.wait_for_log("Ready", timeout=60)
    ready_s = time.monotonic() - t0
    assert ready_s < 20, f"Faust group took {ready_s:.1f}s to become ready on tansu"

    district = f"d{run_id}"
    now = int(time.time() * 1000)
    expected: dict[tuple[str, str], tuple[str, dict[str, float], int]] = {}
    pub = Publisher(stack.mqtt.port, auth=stack.mqtt_login("simulator"))
    n_per_domain = 50
    for domain, (kind, metrics) in DOMAIN_METRICS.items():
        for i in range(n_per_domain):
            sensor = f"{domain[:2]}-{run_id}-{i:03d}"
            values = {k: round(v + i * 0.01, 6) for k, v in metrics.items()}
            ts = now - 60_000 + i * 1000
            pub.publish(f"city/{district}/{domain}/{kind}/{sensor}", {"ts": ts, "metrics": values})
            expected[(domain, sensor)] = (kind, values, ts)
    # A sensor id full of line-protocol specials must be stored under exactly that id.
    nasty = f'x,y z="q"=w-{run_id}'
    pub.publish(f"city/{district}/traffic/loop/{nasty}", {"ts": now, "metrics": {"speed_kmh": 7.5}})
    expected[("traffic", nasty)] = ("loop", {"speed_kmh": 7.5}, now)

    bad_topic = f"city/{district}/traffic/loop/bad-{run_id}"
    malformed = {
        "malformed": b'{"metrics": {"speed_kmh": 5',
        "not_utf8": b"\xff\xfe\x00garbage",
        "schema": b'{"metrics": {"speed_kmh": "fast"}}',
        "unknown_metric": b'{"metrics": {"warp_factor": 9}}',
        "out_of_range": b'{"metrics": {"speed_kmh": 9000}}',
        "bad_timestamp": orjson.dumps({"ts": now + 10 * 86_400_000, "metrics": {"speed_kmh": 5}}),
        "domain_mismatch": b'{"metrics": {"pm25_ugm3": 5}}',
    }
    for payload in malformed.values():
        pub.publish(bad_topic, payload)
    # mosquitto itself refuses control characters in topics; payload ids must be checked by us.
    pub.publish(f"city/{district}/traffic/pack/gw-{run_id}",
                {"sensor_id": "evil\nid", "metrics": {"speed_kmh": 5}})
    # the production ACL keeps devices out of unknown domains; ingest must refuse it anyway
    injector = Publisher(stack.mqtt.port, auth=(INJECTOR, INJECTOR_PASSWORD))
    injector.publish(f"city/{district}/sewage/pump/p-{run_id}", {"metrics": {"speed_kmh": 5}})
    injector.close()
    pub.close()
    n_bad = len(malformed) + 2

    influx = Influx.reader(stack, f"test_{run_id}")
    where = f"WHERE district = '{district}'"

    def stored() -> int:
        try:
            return sum(
                len(influx.rows(f'SELECT * FROM "{d}" {where}')) for d in DOMAIN_METRICS
            )
        except Exception:
            return 0

    wait_until(lambda: stored() >= len(expected), 60, what=f"{len(expected)} points")
    time.sleep(1.0)  # anything extra would show up now
    rows = {}
    for domain in DOMAIN_METRICS:
        for row in influx.rows(f'SELECT * FROM "{domain}" {where} GROUP BY *'):
            rows[(domain, row["sensor"])] = row
    assert len(rows) == len(expected), "exactly one point per published reading"
    for (domain, sensor), (kind, values, ts) in expected.items():
        row = rows[(domain, sensor)]
        assert row["time"] == ts
        assert row["kind"] == kind and row["district"] == district
        for name, value in values.items():
            assert row[name] == pytest.approx(value, abs=0), (sensor, name)

    def dead() -> list[dict]:
        recs = [orjson.loads(v) for _, v in read_topic(stack.env()["URBANBRAIN_KAFKA_BOOTSTRAP"],
                                                       "readings.deadletter")]
        return [r for r in recs if district in r["topic"]]

    letters = wait_until(lambda: len(dead()) >= n_bad and dead(), 30, what="dead letters")
    assert len(letters) == n_bad, sorted((r["reason"], r["message"][:60]) for r in letters)
    reasons = sorted(r["reason"] for r in letters)
    assert reasons == sorted([*malformed, "invalid_id", "bad_topic"])
    binary = next(r for r in letters if r["reason"] == "not_utf8")
    assert binary["payload"] is None and binary["payload_b64"]
    assert all(r["message"] for r in letters)


def test_ingest_enriches_from_registry_and_publishes_sensor_locations(
        stack, run_id, components, tmp_path):
    from urbanbrain.registry import Registry, Sensor

    district = f"reg{run_id}"
    reg = Registry()
    for i in range(5):
        sid = f"aq-{run_id}-{i}"
        reg[sid] = Sensor(sid, "environment", "air_quality", district, round(45.7 + i / 100, 4), 4.8,
                          frozenset({"pm25_ugm3"}))
    reg.save(tmp_path / "registry.csv")
    env = component_env(stack, run_id, URBANBRAIN_REGISTRY_PATH=str(tmp_path / "registry.csv"),
                        URBANBRAIN_INGEST_UNKNOWN_SENSORS="reject")
    ingest = Component("ingest", ["ingest"], env, tmp_path / "ingest.log").start()
    components.append(ingest)
    ingest.wait_for_log("MQTT subscribed", timeout=30)
    pub = Publisher(stack.mqtt.port, auth=stack.mqtt_login("simulator"))
    now = int(time.time() * 1000)
    # The topic says another district and kind: the registry is authoritative.
    pub.publish(f"city/elsewhere/environment/sensor/aq-{run_id}-3",
                {"ts": now, "metrics": {"pm25_ugm3": 12.5}})
    pub.publish(f"city/{district}/environment/air_quality/aq-{run_id}-unknown",
                {"ts": now, "metrics": {"pm25_ugm3": 12.5}})
    pub.close()
    bootstrap = stack.env()["URBANBRAIN_KAFKA_BOOTSTRAP"]

    def readings() -> list[dict]:
        from urbanbrain.reading import decode_batch
        return [r for _, v in read_topic(bootstrap, "readings.environment")
                for r in decode_batch(v) if r["sensor_id"].startswith(f"aq-{run_id}")]

    got = wait_until(readings, 20, what="the registered reading in Kafka")
    assert len(got) == 1
    r = got[0]
    assert (r["district"], r["kind"], r["lat"], r["lon"]) == (district, "air_quality", 45.73, 4.8)
    letters = wait_until(lambda: [orjson.loads(v) for _, v in read_topic(bootstrap, "readings.deadletter")
                                  if f"aq-{run_id}-unknown".encode() in v], 20, what="dead letter")
    assert [d["reason"] for d in letters] == ["unknown_sensor"]
    influx = Influx.reader(stack, f"test_{run_id}")

    def locations() -> list[dict]:
        try:
            return influx.rows(f"SELECT lat, lon FROM longterm.sensors WHERE district = '{district}'")
        except AssertionError:  # database not created yet
            return []

    rows = wait_until(locations, 20, what="sensor locations in InfluxDB")
    assert sorted((row["lat"], row["lon"]) for row in rows) == [
        (round(45.7 + i / 100, 4), 4.8) for i in range(5)]


def test_alert_topics_are_not_readings():
    """Alerts published under city/alerts/... reach ingest's subscription: skipped, not refused."""
    from urbanbrain.ingest.normalise import Normaliser
    from urbanbrain.settings import Settings

    n = Normaliser(Settings())
    now = int(time.time() * 1000)
    assert n.process("city/alerts/centre/critical/Outage", b'{"status": "firing"}', now) == ([], [])
    assert n.ignored == 1
    readings, dead = n.process("city/centre/power/substation/ps-1",
                               b'{"metrics": {"load_mw": 3.5}}', now)
    assert len(readings) == 1 and not dead
