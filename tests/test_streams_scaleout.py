"""Scale-out and fail-over: two workers of one app split the partitions; one is SIGKILLed
with windows open; the other takes its partitions over, recovers the open windows from the
table changelog, and every window ends up in InfluxDB with exactly its readings."""

from __future__ import annotations

import re
import time
from collections import Counter

import orjson
import pytest
from conftest import component_env
from harness import Component, Influx, wait_until

from urbanbrain.kafka import READINGS_TOPICS
from urbanbrain.retention import policy_of
from urbanbrain.streams.loadgen import batches_by_partition, produce_sync, steady_readings, ticks

pytestmark = [pytest.mark.servers, pytest.mark.slow]
MIN = 60_000


def assignments(worker: Component) -> list[dict[str, list[int]]]:
    return [orjson.loads(m)["partitions"] for m in re.findall(r"ASSIGNMENT (\{.*\})", worker.log())]


def test_two_workers_split_and_fail_over(private_stack, run_id, components, tmp_path):
    # Own servers: a rebalance must not wait behind other tests' backlog of readings.
    stack = private_stack
    # state checkpointed every 2 s (production: 30): the failover below must find the
    # window state written, which a 30-s interval would not have reached in this test
    env = component_env(stack, run_id, URBANBRAIN_STREAMS_LATENESS_S="60",
                        URBANBRAIN_STREAMS_ROLLUP_GRACE_S="1",
                        URBANBRAIN_ALERT_STATE_CHECKPOINT_S="2",
                        URBANBRAIN_STREAMS_SENSOR_HOPS="all")  # every hop, counted
    a = Component("streams-a", ["streams", "worker", "-l", "info"], env, tmp_path / "a.log").start()
    components.append(a)
    a.wait_for_log("Ready", timeout=60)
    b = Component("streams-b", ["streams", "worker", "-l", "info"], env, tmp_path / "b.log").start()
    components.append(b)
    b.wait_for_log("ASSIGNMENT", timeout=60)
    a.wait_for_log("ASSIGNMENT", count=2, timeout=60)
    b.wait_for_log("Ready", timeout=60)
    # split: disjoint and together covering every partition of every readings topic
    la, lb = assignments(a)[-1], assignments(b)[-1]
    for topic in READINGS_TOPICS:
        pa, pb = set(la.get(topic, [])), set(lb.get(topic, []))
        assert pa and pb and not pa & pb and pa | pb == {0, 1, 2, 3}, (topic, pa, pb)

    prefix = f"s{run_id}"
    # ahead of every other test's event times on the shared topics (see test_streams_e2e)
    t0 = (int(time.time() * 1000) + 12 * 3_600_000) // MIN * MIN
    readings = steady_readings(prefix, t0, sensors_per_domain=12, seconds=480, period_s=10,
                               domains=("traffic", "water"))
    first = [r for r in readings if r["ts"] < t0 + 4 * MIN + 30_000]  # panes 0-2 close
    rest = [r for r in readings if r["ts"] >= t0 + 4 * MIN + 30_000]
    bootstrap = stack.env()["URBANBRAIN_KAFKA_BOOTSTRAP"]
    influx = Influx.reader(stack, f"test_{run_id}")

    def rows(meas: str) -> list[dict]:
        try:
            return influx.rows(f'SELECT "speed_kmh_count", "pressure_kpa_count" '
                               f'FROM "{policy_of(meas)}"."{meas}" '
                               f"WHERE district =~ /^{prefix}-d/ GROUP BY sensor")
        except Exception:  # noqa: BLE001
            return []

    produce_sync(bootstrap, batches_by_partition(first, 4, batch_size=20))
    # both workers closed windows of their own partitions: B holds open panes 3-4 now
    wait_until(lambda: len({r["time"] for r in rows("agg_sensor_1m")}) >= 3
               and len(rows("agg_sensor_1m")) >= 3 * 24, 60, what="first windows")
    # B's state is written at its checkpoint: 2 s after its batches, by the idle tick
    # (every 10 s) once it has nothing to process; killed after that, A recovers it
    time.sleep(13.0)
    b.kill()
    produce_sync(bootstrap, batches_by_partition(rest, 4, batch_size=20)
                 + batches_by_partition(ticks(prefix, t0 + 20 * MIN, 4, ("traffic", "water")), 4))
    wait_until(lambda: any(all(set(x.get(t, [])) == {0, 1, 2, 3} for t in READINGS_TOPICS)
                           for x in assignments(a)), 60, what="A to take over all partitions")

    def counts(meas: str) -> dict:
        return {(r["sensor"], r["time"]): r["speed_kmh_count"] or r["pressure_kpa_count"]
                for r in rows(meas)}

    expected_1m = Counter((r["sensor_id"], r["ts"] // MIN * MIN) for r in readings)
    got = wait_until(lambda: len(c := counts("agg_sensor_1m")) >= len(expected_1m) and c, 60,
                     what="all 1-min windows")
    assert got == expected_1m
    last_end = max(p for _, p in expected_1m) + MIN
    expected_5m = Counter()
    for r in readings:
        for end in range(t0 + MIN, last_end + 5 * MIN, MIN):
            if end - 5 * MIN <= r["ts"] < end:
                expected_5m[(r["sensor_id"], end - 5 * MIN)] += 1
    got5 = wait_until(lambda: len(c := counts("agg_sensor_5m")) >= len(expected_5m) and c, 30,
                      what="all 5-min windows")
    assert got5 == expected_5m
    assert "recovered window state" in a.log()
