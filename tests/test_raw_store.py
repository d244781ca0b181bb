"""Raw points in a consumer group of their own (streams/raw_store.py), on real servers.

With ``URBANBRAIN_STREAMS_RAW_POINTS=own-group`` the worker computes windows and stores no
raw point; ``urbanbrain streams store-raw`` stores every reading, resumes after SIGKILL
from its last commit without losing one, and dead-letters what InfluxDB cannot take.
"""

from __future__ import annotations

import time
import urllib.request

import orjson
import pytest
from conftest import component_env
from harness import Component, Influx, read_topic, wait_until

from urbanbrain.kafka import DEADLETTER_TOPIC
from urbanbrain.retention import policy_of
from urbanbrain.streams.loadgen import batches_by_partition, produce_sync, steady_readings, ticks

pytestmark = pytest.mark.servers
MIN = 60_000
DOMAINS = ("traffic", "environment", "water", "power")


def _raw_count(influx: Influx, prefix: str) -> int:
    total = 0
    for d in DOMAINS:
        try:
            # one field every domain's readings have at every step: the first of each
            total += influx.count(d, {"traffic": "vehicle_count", "environment": "pm25_ugm3",
                                      "water": "pressure_kpa", "power": "voltage_kv"}[d],
                                  f"WHERE sensor =~ /^{prefix}-/")
        except Exception:  # noqa: BLE001 - the measurement does not exist yet
            pass
    return total


def test_encode_lines_letters_and_offsets_of_one_fetch():
    """No server: what one fetch becomes. A record that is not a batch is skipped and
    counted (the worker dead-letters it); a reading line protocol cannot carry is a
    dead letter of its own; the offsets to commit are each partition's last + 1."""
    from types import SimpleNamespace

    from urbanbrain.reading import encode_batch
    from urbanbrain.streams.raw_store import RawStore
    from urbanbrain.streams.settings import StreamsSettings

    good = steady_readings("enc", 1_700_000_000_000, sensors_per_domain=2, seconds=20,
                           period_s=10, domains=("water",))
    bad = {**good[0], "sensor_id": "enc-bad", "metrics": {"pressure_kpa": "high"}}

    def rec(offset: int, value: bytes) -> SimpleNamespace:
        return SimpleNamespace(topic="readings.water", offset=offset, value=value)

    store = RawStore(StreamsSettings())
    out = store.encode({("readings.water", 0): [rec(7, encode_batch(good[:2])),
                                                rec(8, b"not a batch")],
                        ("readings.water", 1): [rec(3, encode_batch([*good[2:], bad]))]})
    assert out.offsets == {("readings.water", 0): 9, ("readings.water", 1): 4}
    assert out.records == 3 and out.readings == len(good) + 1
    assert len(out.lines) == len(good) and store.stats.malformed == 1
    assert all(line.startswith("water,") for line in out.lines)
    [letter] = [orjson.loads(x) for x in out.letters]
    assert letter["reason"] == "sink_refused" and "enc-bad" in letter["payload"]
    assert sorted(out.event_ms) == sorted(r["ts"] for r in [*good, bad])


def test_worker_skips_raw_and_the_store_writes_every_reading(private_stack, run_id, components,
                                                             tmp_path):
    env = component_env(private_stack, run_id, URBANBRAIN_STREAMS_RAW_POINTS="own-group",
                        URBANBRAIN_STREAMS_LATENESS_S="60")
    bootstrap = private_stack.env()["URBANBRAIN_KAFKA_BOOTSTRAP"]
    worker = Component("streams", ["streams", "worker", "-l", "info"], env,
                       tmp_path / "streams.log").start()
    components.append(worker)
    worker.wait_for_log("Ready", timeout=90)

    t0 = (int(time.time() * 1000) + 6 * 3_600_000) // MIN * MIN
    readings = steady_readings(run_id, t0, sensors_per_domain=5, seconds=240, period_s=10)
    # a reading InfluxDB's line protocol cannot carry (a field that is not a number)
    bad = {"sensor_id": f"{run_id}-tr-bad", "domain": "traffic", "kind": "loop",
           "district": f"{run_id}-d0", "ts": t0, "recv": t0, "metrics": {"speed_kmh": "fast"}}
    tick = ticks(run_id, t0 + 10 * MIN, 4)  # closes every partition's windows
    records = batches_by_partition([*readings, bad, *tick], 4, 50)
    produce_sync(bootstrap, records)
    influx = Influx.reader(private_stack, f"test_{run_id}")

    # the worker closes windows of these readings ...
    def windows() -> int:
        try:
            rows = influx.rows(f'SELECT count("vehicle_count_count") FROM '
                               f'"{policy_of("agg_sensor_1m")}"."agg_sensor_1m" '
                               f"WHERE sensor =~ /^{run_id}-tr-/")
            return int(rows[0]["count"]) if rows else 0
        except Exception:  # noqa: BLE001 - not written yet
            return 0

    wait_until(windows, 60, what="1-min windows from the worker")
    time.sleep(2)  # the raw write would have started with the batch, before the windows
    # ... and stores no raw point: that is the store's job now
    assert _raw_count(influx, run_id) == 0

    store = Component("store", ["streams", "store-raw", "-l", "info"],
                      env, tmp_path / "store.log").start()
    components.append(store)
    store.wait_for_log("raw store assignment: readings.", timeout=60)
    n = len(readings) + len(tick)
    wait_until(lambda: _raw_count(influx, run_id) >= n, 60, what="every raw point")
    time.sleep(1)
    assert _raw_count(influx, run_id) == n
    # the values are the readings', exactly
    rows = influx.rows(f"SELECT sensor, pressure_kpa, flow_ls FROM water "
                       f"WHERE sensor =~ /^{run_id}-wa-/")
    got = {(r["sensor"], r["time"]): (r["pressure_kpa"], r["flow_ls"]) for r in rows}
    want = {(r["sensor_id"], r["ts"]): (r["metrics"]["pressure_kpa"], r["metrics"]["flow_ls"])
            for r in readings if r["domain"] == "water"}
    assert got == want

    def refused() -> list[dict]:
        letters = [orjson.loads(v) for _, v in read_topic(bootstrap, DEADLETTER_TOPIC)]
        return [d for d in letters if d["reason"] == "sink_refused" and "-tr-bad" in d["payload"]]

    letters = wait_until(refused, 30, what="the unstorable reading dead-lettered")
    assert len(letters) == 1 and letters[0]["topic"] == "raw-store"


def test_store_killed_midway_resumes_without_losing_a_reading(private_stack, run_id, components,
                                                               tmp_path):
    env = component_env(private_stack, run_id, URBANBRAIN_INFLUX_BATCH_POINTS="500",
                        URBANBRAIN_STREAMS_TAKE_RECORDS="20")
    bootstrap = private_stack.env()["URBANBRAIN_KAFKA_BOOTSTRAP"]
    t0 = (int(time.time() * 1000) - 3_600_000) // MIN * MIN
    readings = steady_readings(run_id, t0, sensors_per_domain=250, seconds=1200, period_s=10)
    produce_sync(bootstrap, batches_by_partition(readings, 4, 100))
    n = len(readings)
    influx = Influx.reader(private_stack, f"test_{run_id}")

    def store() -> Component:
        c = Component("store", ["streams", "store-raw", "-l", "info"], env,
                      tmp_path / "store.log").start()
        components.append(c)
        return c

    first = store()
    at_kill = wait_until(lambda: _raw_count(influx, run_id), 90, interval=0.05,
                         what="the first raw points")
    first.kill()
    assert 0 < at_kill < n, f"the store must be killed mid-way (stored {at_kill} of {n})"
    second = store()
    wait_until(lambda: _raw_count(influx, run_id) >= n, 120, what="every raw point after the kill")
    time.sleep(1)
    assert _raw_count(influx, run_id) == n
    second.stop()
    assert "raw store assignment" in second.log()


def test_metrics_and_readiness_without_influxdb(stack, run_id, components, tmp_path):
    """/readyz and /metrics answer from the process, whatever InfluxDB does."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = component_env(stack, run_id, URBANBRAIN_INFLUX_URL="http://127.0.0.1:9")
    c = Component("store", ["streams", "store-raw", "--metrics-port", str(port)], env,
                  tmp_path / "store.log").start()
    components.append(c)
    c.wait_for_log("raw store assignment: readings.", timeout=60)

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    status, body = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(get("/readyz")),
                              30, what="/readyz 200")
    assert status == 200
    status, body = get("/metrics")
    text = body.decode()
    assert status == 200
    assert 'urbanbrain_raw_lag_records{stage="raw"}' in text
    assert "urbanbrain_influx_write_retries_total" in text
