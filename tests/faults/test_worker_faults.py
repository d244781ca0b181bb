"""Issue #14: two workers, one hung for 30 s, then a second kill while the group recovers.

A paced replay (the product's publisher) through mosquitto → ingest → tansu → two
``urbanbrain streams worker`` → InfluxDB:

1. worker A is SIGSTOPped for ``STOP_S`` (30 s, the issue's number) while readings keep
   coming: its session expires, B takes all partitions and advances their windows. A is
   resumed with a batch it fetched before the stop. Before the fix that batch was judged
   against B's window state and 154–257 readings were dead-lettered ``late`` (2 of 3
   runs); now the generation fence drops it unprocessed and unacked, and the partitions'
   owners re-read it.
2. A is SIGKILLed; while B is taking over and recovering A's tables, B is SIGKILLed too;
   both are started again and recover from the changelogs and committed offsets.

Exactly N distinct points are stored (per sensor too), nothing is dead-lettered, and the
resumed worker printed the "OffsetCommit failed ... will rejoin" burst as one line.
"""

from __future__ import annotations

import os
import signal
import time

import orjson
import pytest
from conftest import component_env
from harness import Component, Influx, read_topic, wait_until

from faults.gateway import GatewayReplay
from faults.replay import (
    RULES,
    STEP_MS,
    Timeline,
    build_replay,
    kafka_readings,
    missing_points,
    points_per_sensor,
    raw_counter,
)
from urbanbrain.components import role_env
from urbanbrain.settings import Settings

pytestmark = [pytest.mark.servers, pytest.mark.slow, pytest.mark.timeout(500)]

RATE = 1000.0
STEPS = int(os.environ.get("URBANBRAIN_FAULTS_WORKER_STEPS", "500"))  # x 100 sensors
STOP_S = float(os.environ.get("URBANBRAIN_FAULTS_STOP_S", "30"))
NO_SPANS = {k: (0.0, 0.0) for k in ("traffic", "district", "environment", "water", "power")}


def test_hung_worker_and_kill_during_recovery(private_stack, run_id, components, tmp_path):
    stack = private_stack
    replay = build_replay(run_id, STEPS, NO_SPANS)
    n = replay.n
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(district=f"{replay.prefix}-dz"))
    env = component_env(stack, run_id, URBANBRAIN_ALERT_RULES_PATH=str(rules),
                        URBANBRAIN_DATA_DIR=str(tmp_path / "var"))
    env.pop("URBANBRAIN_INGEST_LINGER_MS", None)
    bootstrap = env["URBANBRAIN_KAFKA_BOOTSTRAP"]
    log = Timeline()
    count = raw_counter(Influx.reader(stack, f"test_{run_id}"))

    def start(name: str, args: list[str]) -> Component:
        c = Component(name, args, env, tmp_path / f"{name}.log").start(fresh_log=True)
        components.append(c)
        return c

    ingest = start("ingest", ["ingest"])
    a = start("worker-a", ["streams", "worker", "-l", "info"])
    ingest.wait_for_log("MQTT subscribed", timeout=60)
    a.wait_for_log("Ready", timeout=90)
    b = start("worker-b", ["streams", "worker", "-l", "info"])
    b.wait_for_log("ASSIGNMENT", timeout=90)
    a.wait_for_log("ASSIGNMENT", count=2, timeout=90)
    log("two workers share the partitions")

    own = role_env(env, "simulator")
    gw = GatewayReplay(Settings(**{k[11:].lower(): v for k, v in own.items()
                                   if k.startswith("URBANBRAIN_")}),
                       replay.messages, RATE, client_id=f"gw-{run_id}")
    gw.start()
    try:
        # 1. A hangs for STOP_S while the stream goes on
        gw.wait_progress(int(0.1 * n), 60)
        wait_until(lambda: count() > 0, 60, what="points stored before the stop")
        b_assignments = b.log().count("ASSIGNMENT")
        os.killpg(a.proc.pid, signal.SIGSTOP)
        t_stop = time.monotonic()
        log("SIGSTOP worker A", published=gw.progress, stored=count())
        b.wait_for_log("ASSIGNMENT", count=b_assignments + 1, timeout=STOP_S)
        log("B took A's partitions", stored=count())
        time.sleep(max(0.0, STOP_S - (time.monotonic() - t_stop)))
        a_assignments = a.log().count("ASSIGNMENT")
        os.killpg(a.proc.pid, signal.SIGCONT)
        log("SIGCONT worker A", published=gw.progress, stored=count())
        a.wait_for_log("ASSIGNMENT", count=a_assignments + 1, timeout=90)
        log("A rejoined", stored=count())
        before = count()
        wait_until(lambda: count() > before, 90, what="points after A's resume")

        # 2. A dies; B dies too while it takes over and recovers A's state
        gw.wait_progress(int(0.7 * n), 120)
        b_assignments = b.log().count("ASSIGNMENT")
        a.kill()
        log("SIGKILL worker A", published=gw.progress, stored=count())
        b.wait_for_log("ASSIGNMENT", count=b_assignments + 1, timeout=60)
        b.kill()
        log("SIGKILL worker B during its recovery", stored=count())
        a2 = start("worker-a2", ["streams", "worker", "-l", "info"])
        b2 = start("worker-b2", ["streams", "worker", "-l", "info"])
        a2.wait_for_log("Ready", timeout=120)
        b2.wait_for_log("Ready", timeout=120)
        log("A2 and B2 ready", stored=count())
        gw.join(180)
        assert not gw.is_alive() and gw.error is None, gw.error
        log("replay finished")
    finally:
        gw.stopping.set()
        if a.proc.poll() is None:
            os.killpg(a.proc.pid, signal.SIGCONT)

    state = {"count": -1, "since": time.monotonic()}

    def all_stored() -> bool:
        c = count()
        if c != state["count"]:
            state.update(count=c, since=time.monotonic())
        if c < n and time.monotonic() - state["since"] > 30:
            raise AssertionError(f"stalled at {c} of {n} points")
        return c >= n

    try:
        wait_until(all_stored, 240, interval=0.5, what=f"{n} points")
    except AssertionError:
        lost = sorted(missing_points(Influx.reader(stack, f"test_{run_id}"), replay))
        raise AssertionError(f"{count()} of {n} stored; missing e.g. "
                             f"{[(s, (ts - replay.t0) // STEP_MS) for s, ts in lost[:10]]}\n"
                             f"{log}") from None
    log("all points stored")
    time.sleep(1.0)
    dead = [orjson.loads(v) for _, v in read_topic(bootstrap, "readings.deadletter")]
    in_kafka = kafka_readings(bootstrap)
    commit_lines = a.log().count("OffsetCommit failed")
    fenced = [line for line in a.log().splitlines() if "events of consumer generation" in line]
    print(f"\ntwo workers, {n} readings at {RATE:g}/s, A stopped {STOP_S:g} s: stored "
          f"{count()}, dead letters {len(dead)} "
          f"({sorted({d['reason'] for d in dead})}), readings in Kafka more than once "
          f"{sum(len(v) - 1 for v in in_kafka.values())}; A's 'OffsetCommit failed' lines "
          f"{commit_lines}; fenced batches {len(fenced)}: {fenced[:3]}\n{log}")
    assert count() == n
    assert points_per_sensor(Influx.reader(stack, f"test_{run_id}")) == {
        s: STEPS for s in replay.sensors}
    assert not dead, f"{len(dead)} dead letters, e.g. {dead[:3]}"
    assert commit_lines <= 2, "the rejoin burst must be one line (plus at most one more)"
