"""Sink durability: InfluxDB goes away for ~20 s in the middle of a stream; the worker holds
its Kafka offsets (the writer retries, the agent acks only after writing), so afterwards every
raw point and every window aggregate is stored. Uses its own servers (a stopped influxd
would disturb the other tests)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from conftest import component_env, make_stack
from harness import Component, Influx, wait_until

from urbanbrain.localstack import LocalStack
from urbanbrain.streams.loadgen import batches_by_partition, produce_sync, steady_readings, ticks

pytestmark = [pytest.mark.servers, pytest.mark.slow]
MIN = 60_000


@pytest.fixture
def own_stack(tmp_path):
    s = make_stack(tmp_path / "stack").start(mqtt=False)
    yield s
    s.stop()


def test_influx_outage_loses_nothing(own_stack, run_id, components, tmp_path):
    stack = own_stack
    env = component_env(stack, run_id, URBANBRAIN_STREAMS_LATENESS_S="60",
                        URBANBRAIN_STREAMS_ROLLUP_GRACE_S="1")
    worker = Component("streams", ["streams", "worker", "-l", "info"], env,
                       tmp_path / "streams.log").start()
    components.append(worker)
    worker.wait_for_log("Ready", timeout=60)
    bootstrap = stack.env()["URBANBRAIN_KAFKA_BOOTSTRAP"]
    influx = Influx.reader(stack, f"test_{run_id}")

    prefix = f"o{run_id}"
    t0 = (int(time.time() * 1000) - 7_200_000) // MIN * MIN
    readings = steady_readings(prefix, t0, sensors_per_domain=25, seconds=300, period_s=5)
    n = len(readings)  # 25 sensors x 4 domains x 60 = 6000
    records = batches_by_partition(readings, 4, batch_size=50)
    third = len(records) // 3

    def raw_count() -> int:
        try:
            return sum(influx.count(d, f, f"WHERE district =~ /^{prefix}-d/") for d, f in
                       (("traffic", "speed_kmh"), ("environment", "pm25_ugm3"),
                        ("water", "pressure_kpa"), ("power", "load_mw")))
        except Exception:  # noqa: BLE001 - influxd down
            return -1

    produce_sync(bootstrap, records[:third])
    wait_until(lambda: raw_count() > 0, 30, what="first points")
    stack.influx.stop()
    t_stop = time.monotonic()
    for i in range(third, 2 * third, 20):  # the middle third trickles in during the outage
        produce_sync(bootstrap, records[i:min(i + 20, 2 * third)])
        time.sleep(1.0)
    time.sleep(max(0.0, 20 - (time.monotonic() - t_stop)))
    stack.restart_influx()
    produce_sync(bootstrap, records[2 * third:] + [(t, p, [r]) for r in
                 ticks(prefix, t0 + 20 * MIN, 4) for t, p, _ in
                 batches_by_partition([r], 4)])

    wait_until(lambda: raw_count() >= n, 90, what=f"{n} raw points")
    assert raw_count() == n

    # every (sensor, pane) window, with exactly the readings of its minute
    expected = Counter((r["sensor_id"], r["ts"] // MIN * MIN) for r in readings)

    def windows() -> dict:
        try:
            rows = influx.rows(f'SELECT "speed_kmh_count", "pm25_ugm3_count", '
                               f'"pressure_kpa_count", "load_mw_count" FROM windows.agg_sensor_1m '
                               f"WHERE district =~ /^{prefix}-d/ GROUP BY sensor")
        except Exception:  # noqa: BLE001
            return {}
        return {(r["sensor"], r["time"]): next(v for k, v in r.items() if k.endswith("_count")
                                               and v is not None) for r in rows}

    got = wait_until(lambda: len(w := windows()) >= len(expected) and w, 60, what="windows")
    assert got == expected
    # roll-ups: one district row per district, domain and minute, counting every reading
    n_traffic = sum(1 for r in readings if r["domain"] == "traffic")

    def rolled_up() -> float:
        rows = influx.rows(f"SELECT sum(\"speed_kmh_count\") AS n FROM windows.district_1m "
                           f"WHERE district =~ /^{prefix}-d/")
        return rows[0]["n"] if rows else 0

    wait_until(lambda: rolled_up() >= n_traffic, 30, what="district roll-ups")
    assert rolled_up() == n_traffic
    # the outage is visible in the writer metrics
    # (the worker reports every 5 s: the report after the outage may still be on its way)
    def retries() -> list:
        rs = influx.rows("SELECT max(\"write_retries_total\") AS r, max(\"lag_records\") AS "
                         "lag FROM pipeline.pipeline WHERE stage = 'streams'")
        return rs if rs and rs[0]["r"] else []

    rs = wait_until(retries, 20, what="a pipeline report counting the write retries")
    assert rs[0]["r"] > 0
