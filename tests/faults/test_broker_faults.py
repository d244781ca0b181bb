"""Issue #14: the MQTT broker dies mid-stream, and the publishers behave like gateways.

* ``test_broker_kill9_restart``: a paced replay (the product's publisher, 2 connections)
  through mosquitto → ``urbanbrain ingest`` → tansu → one worker → InfluxDB; mosquitto is
  killed with SIGKILL at 30 % and started again 3 s later on the same port, config and
  persistence folder.

  - ``persistence`` (the local and production config: autosave_on_changes): ingest finds
    its session again, the publisher resends what was unconfirmed. mosquitto PUBACKs a
    message before it saves it, so a kill -9 can still lose what arrived since the last
    save: the test asserts the loss stays within that window (``LOSS_BOUND``; measured
    numbers in the printout and in /work/notes/issue-14.md), no dead letter, and that the
    pipeline saw no lost session.
  - ``no-persistence`` (the old local config, ``persistence false``): the broker forgets
    ingest's session and queue. Loss is expected here; what must hold is that it is *not
    silent*: ingest logs "session present: False", counts it on /metrics and the pipeline
    rule IngestSessionLost fires on the ``alerts`` topic. Ingest is paused (SIGSTOP) for
    2,000 readings before the kill so the broker surely holds a queue for it.

* ``test_simulator_survives_broker_restart``: ``urbanbrain simulate run`` (a subprocess, the
  real command) while mosquitto is stopped and started again: it exits 0, and Kafka holds
  exactly the readings it says it sent, none dead-lettered.
* ``test_simulator_gives_up_with_one_line``: with the broker gone for good it exits 69 after
  ``URBANBRAIN_MQTT_PUBLISH_GIVE_UP_S`` with one error line and no traceback.
"""

from __future__ import annotations

import re
import signal
import time
from datetime import datetime, timezone

import orjson
import pytest
from conftest import component_env, make_stack
from harness import Component, Influx, read_topic, wait_until

from faults.gateway import GatewayReplay, http_get, metric
from faults.replay import RULES, Timeline, build_replay, kafka_readings, raw_counter
from urbanbrain.components import role_env
from urbanbrain.localstack import AUTOSAVE_CHANGES, free_port
from urbanbrain.settings import Settings

pytestmark = [pytest.mark.servers, pytest.mark.slow, pytest.mark.timeout(400)]

RATE = 1000.0
STEPS = 100  # x 100 sensors
DOWN_S = 3.0
#: Readings the publisher sends while ingest is paused before the no-persistence kill: more
#: than the socket buffers hold, so some are only in the broker's queue when it dies.
PAUSED_BACKLOG = 2000
#: What a kill -9 may lose with autosave_on_changes N: messages PUBACKed since the last
#: save, fewer than N changes (each stored message is at least one change). Measured at
#: 1000 msg/s: see the printout; the bound is the config's, not a measured constant.
LOSS_BOUND = AUTOSAVE_CHANGES
NO_SPANS = {k: (0.0, 0.0) for k in ("traffic", "district", "environment", "water", "power")}


def _settings(env: dict[str, str], role: str) -> Settings:
    own = role_env(env, role)
    return Settings(**{k[len("URBANBRAIN_"):].lower(): v for k, v in own.items()
                       if k.startswith("URBANBRAIN_")})


@pytest.mark.parametrize("persistent", [True, False], ids=["persistence", "no-persistence"])
def test_broker_kill9_restart(tmp_path, run_id, components, persistent):
    stack = make_stack(tmp_path / "stack", mqtt_persistence=persistent).start()
    try:
        _broker_kill9(stack, tmp_path, run_id, components, persistent)
    finally:
        for c in components:
            c.stop()
        stack.stop()


def _broker_kill9(stack, tmp_path, run_id, components, persistent) -> None:  # noqa: ANN001
    replay = build_replay(run_id, STEPS, NO_SPANS)
    n = replay.n
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(district=f"{replay.prefix}-dz"))
    env = component_env(stack, run_id, URBANBRAIN_ALERT_RULES_PATH=str(rules),
                        URBANBRAIN_DATA_DIR=str(tmp_path / "var"),
                        URBANBRAIN_PIPELINE_INTERVAL_S="1")
    env.pop("URBANBRAIN_INGEST_LINGER_MS", None)
    bootstrap = env["URBANBRAIN_KAFKA_BOOTSTRAP"]
    port = free_port()
    log = Timeline()
    ingest = Component("ingest", ["ingest", "--metrics-port", str(port)], env,
                       tmp_path / "ingest.log").start(fresh_log=True)
    worker = Component("worker", ["streams", "worker"], env,
                       tmp_path / "worker.log").start(fresh_log=True)
    components += [ingest, worker]
    ingest.wait_for_log("MQTT subscribed", timeout=60)
    worker.wait_for_log("Ready", timeout=90)
    count = raw_counter(Influx.reader(stack, f"test_{run_id}"))

    gw = GatewayReplay(_settings(env, "simulator"), replay.messages, RATE,
                       client_id=f"gw-{run_id}")
    gw.start()
    gw.wait_progress(int(0.3 * n), 60)
    if not persistent:
        # Make the broker hold a queue for ingest when it dies: pause ingest (SIGSTOP) while
        # the publisher goes on, so the loss the test asserts does not depend on whether
        # ingest happened to be caught up at the instant of the kill.
        ingest.proc.send_signal(signal.SIGSTOP)
        gw.wait_progress(gw.progress + PAUSED_BACKLOG, 60)
    stack.mqtt.kill()
    if not persistent:
        ingest.proc.send_signal(signal.SIGCONT)
    t_kill = time.monotonic()
    log("SIGKILL mosquitto", published=gw.progress)
    time.sleep(DOWN_S)
    stack.restart_mqtt()
    log("mosquitto restarted", published=gw.progress)
    ingest.wait_for_log("MQTT subscribed", timeout=60, count=2)
    resubscribed = time.monotonic() - t_kill
    log("ingest subscribed again", after_s=round(resubscribed, 1))
    gw.join(120)
    assert not gw.is_alive(), "the replay did not finish"
    assert gw.error is None, f"the publisher died with the broker: {gw.error!r}"
    assert gw.reconnects >= 2, "both publisher connections must have reconnected"
    log("replay finished", reconnects=gw.reconnects, resent=gw.resent)

    state = {"count": -1, "since": time.monotonic()}

    def settled() -> bool:
        c = count()
        if c != state["count"]:
            state.update(count=c, since=time.monotonic())
        return c >= n or (c >= 0 and time.monotonic() - state["since"] > 20)

    wait_until(settled, 180, interval=0.5, what="the stored count to settle")
    stored = count()
    all_stored_s = time.monotonic() - t_kill
    lost = n - stored
    in_kafka = kafka_readings(bootstrap)
    duplicates = sum(len(v) - 1 for v in in_kafka.values())
    dead = [orjson.loads(v) for _, v in read_topic(bootstrap, "readings.deadletter")]
    status, page = http_get(port, "/metrics")
    assert status == 200, page
    sessions_lost = metric(page, "urbanbrain_mqtt_sessions_lost_total")
    print(f"\nbroker kill -9 ({'persistence' if persistent else 'persistence false'}, "
          f"autosave_on_changes {AUTOSAVE_CHANGES}): {n} readings at {RATE:g}/s, lost "
          f"{lost}, duplicates in Kafka {duplicates}, dead letters {len(dead)}, ingest "
          f"resubscribed {resubscribed:.1f} s after the kill, settled {all_stored_s:.1f} s "
          f"after it; publisher reconnects {gw.reconnects}, resent {gw.resent}; sessions "
          f"lost {sessions_lost}\n{log}")
    # Exact resends only: a publish the broker forwarded but whose PUBACK the kill cut off
    # is sent again by the publisher (QoS 1), the broker does not pass the DUP flag on, and
    # ingest refuses the second copy as "duplicate" (the reading is in Kafka once: no
    # duplicates above). A clean CI run had 5 such of 7 resends (2026-12-06), when this
    # still required no dead letter at all; anything else is a failure.
    assert {d["reason"] for d in dead} <= {"duplicate"}, f"dead letters, e.g. {dead[:3]}"
    assert len(dead) <= gw.resent, (len(dead), gw.resent)
    assert duplicates == 0, f"{duplicates} readings twice in Kafka"
    assert stored <= n
    if persistent:
        assert "session present: True" in ingest.log().split("MQTT disconnected", 1)[-1], \
            "the restarted broker must still hold ingest's session"
        assert sessions_lost == 0
        assert lost <= LOSS_BOUND, f"{lost} readings lost, beyond the autosave window"
    else:
        assert "session present: False" in ingest.log()
        assert sessions_lost == 1
        # the pipeline tells: IngestSessionLost fired (Kafka alerts, via ingest's outputs)
        def fired() -> bool:
            return any(orjson.loads(v)["labels"]["alertname"] == "IngestSessionLost"
                       for _, v in read_topic(bootstrap, "alerts"))
        wait_until(fired, 30, interval=1.0, what="IngestSessionLost on the alerts topic")
        assert lost > 0, "without persistence the queue for ingest is gone"


def test_simulator_survives_broker_restart(private_stack, run_id, components, tmp_path):
    stack = private_stack
    env = component_env(stack, run_id)
    bootstrap = env["URBANBRAIN_KAFKA_BOOTSTRAP"]
    ingest = Component("ingest", ["ingest"], env, tmp_path / "ingest.log").start(fresh_log=True)
    components.append(ingest)
    ingest.wait_for_log("MQTT subscribed", timeout=60)
    start = datetime.fromtimestamp(time.time() - 3600, tz=timezone.utc).isoformat()
    sim = Component("simulate", ["simulate", "run", "--size", "tiny", "--speed", "60",
                                 "--interval", "10", "--format", "json", "--duration", "12s",
                                 "--faults", "off", "--no-incidents", "--seed", "7",
                                 "--start", start],
                    env, tmp_path / "simulate.log").start(fresh_log=True)
    components.append(sim)
    time.sleep(4.0)
    assert not sim.exited, sim.log()[-2000:]
    stack.mqtt.stop()  # a clean stop: mosquitto saves its database on the way out
    time.sleep(DOWN_S)
    stack.restart_mqtt()
    assert sim.proc.wait(90) == 0, sim.log()[-3000:]
    done = re.search(r"done: ([\d,]+) readings", sim.log())
    assert done, sim.log()[-2000:]
    sent = int(done.group(1).replace(",", ""))
    assert sent > 0

    def forwarded() -> int:
        return len(kafka_readings(bootstrap))

    wait_until(lambda: forwarded() >= sent, 60, interval=1.0, what=f"{sent} readings in Kafka")
    time.sleep(1.0)
    assert forwarded() == sent, f"{forwarded()} distinct readings in Kafka for {sent} sent"
    # The only dead letters allowed are exact resends: a publish the broker forwarded but
    # whose PUBACK the stop cut off is sent again by the simulator (QoS 1), and the broker
    # does not pass the DUP flag on to subscribers, so ingest sees a second copy, refuses
    # it as "duplicate" and keeps the reading once (above). Timing: a clean CI run failed
    # on it once (2026-12-06) when the test still required no dead letter at all.
    reasons = [orjson.loads(v)["reason"] for _, v in read_topic(bootstrap, "readings.deadletter")]
    assert set(reasons) <= {"duplicate"}, reasons
    assert "Traceback" not in sim.log()


def test_simulator_gives_up_with_one_line(private_stack, run_id, components, tmp_path):
    stack = private_stack
    env = component_env(stack, run_id, URBANBRAIN_MQTT_PUBLISH_GIVE_UP_S="3")
    sim = Component("simulate", ["simulate", "run", "--size", "tiny", "--speed", "0",
                                 "--format", "json", "--duration", "60s", "--faults", "off"],
                    env, tmp_path / "simulate.log").start(fresh_log=True)
    components.append(sim)
    time.sleep(3.0)
    assert not sim.exited, sim.log()[-2000:]
    stack.mqtt.stop()
    code = sim.proc.wait(60)
    out = sim.log()
    assert code == 69, out[-2000:]
    # stdout (the progress table) and stderr share the log: the error is one line of its own
    # on stderr, wherever the table's last line left the cursor
    errors = re.findall(r"error: [^\n]*", out)
    assert len(errors) == 1 and "unreachable for 3s; gave up" in errors[0], out[-2000:]
    assert "Traceback" not in out
