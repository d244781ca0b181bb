"""Live scoring (``urbanbrain rules livescore``): a scenario through the real servers,
scored exactly as the backtest scores.

    scenario ──▶ (history: ``rules warmup`` into InfluxDB, or replayed)
             ──▶ MQTT (mosquitto, production auth) at full speed ──▶ ingest ──▶ Kafka
             ──▶ N streams workers (optionally one SIGKILLed and restarted mid-replay)
             ──▶ Kafka ``alerts`` ──▶ firings ──▶ :func:`backtest.score`
    the same scenario ──▶ :func:`backtest.backtest` (the worker's stages in process)

The two alert sets must be equal: same rules and fingerprints, start times within one
evaluation step. Why full speed: it is how a worker catches up after an outage or a
deploy, the case where arrival order differs most from event order.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from urbanbrain.rules import backtest as bt
from urbanbrain.rules.alerts import AlertEvent


@dataclass
class LiveResult:
    live: list[bt.RuleScore]
    inproc: bt.BacktestResult
    live_firings: list[bt.Firing]
    events: list[AlertEvent]
    compare: dict[str, Any]
    timing: dict[str, float] = field(default_factory=dict)
    span_ms: tuple[int, int] = (0, 0)
    readings: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)  # by reason
    #: live firings that started after the recording's last reading, by rule (not scored)
    after_end: dict[str, int] = field(default_factory=dict)


def firing_keys(firings: Sequence[bt.Firing], until_ms: int) -> dict[tuple[str, str], list[int]]:
    """(rule, instance) -> sorted firing start times, for firings started by ``until_ms``."""
    out: dict[tuple[str, str], list[int]] = {}
    for f in firings:
        if f.start_ms <= until_ms:
            out.setdefault((f.rule, f.instance), []).append(f.start_ms)
    return {k: sorted(v) for k, v in out.items()}


def compare_firings(live: Sequence[bt.Firing], inproc: Sequence[bt.Firing], *,
                    from_ms: int, until_ms: int, tolerance_ms: int) -> dict[str, Any]:
    """Alert sets compared: firings matched by rule and instance, start times within
    ``tolerance_ms``; what only one side has is listed."""
    a = firing_keys([f for f in live if f.start_ms >= from_ms], until_ms)
    b = firing_keys([f for f in inproc if f.start_ms >= from_ms], until_ms)
    only_live, only_inproc, shifted = [], [], []
    per_rule: dict[str, dict[str, int]] = {}
    for key in sorted(set(a) | set(b)):
        la, lb = list(a.get(key, [])), list(b.get(key, []))
        rule = key[0]
        pr = per_rule.setdefault(rule, {"live": 0, "inproc": 0, "matched": 0})
        pr["live"] += len(la)
        pr["inproc"] += len(lb)
        for t in list(la):
            m = next((u for u in lb if abs(u - t) <= tolerance_ms), None)
            if m is not None:
                la.remove(t)
                lb.remove(m)
                pr["matched"] += 1
                if m != t:
                    shifted.append((rule, key[1], t - m))
        only_live += [(rule, key[1], t) for t in la]
        only_inproc += [(rule, key[1], t) for t in lb]
    return {"equal": not only_live and not only_inproc, "only_live": only_live,
            "only_inproc": only_inproc, "shifted": shifted, "per_rule": per_rule}


def clear_workdir(workdir: Path) -> None:
    """Live scoring starts from empty servers: a previous run's points, records and logs
    would be scored and read again, and its InfluxDB keeps accounts whose passwords were
    that run's (random; a second run was refused with "401 unable to parse
    authentication credentials"). Only what a previous run made is removed: a ``stack``
    folder holding anything else is refused, in case the workdir is someone's folder."""
    from urbanbrain.errors import BadValue

    stack = workdir / "stack"
    ours = {"credentials.json", "influxdb", "tansu", "mosquitto"}  # what LocalStack makes
    if stack.exists() and not {p.name for p in stack.iterdir()} <= ours:
        raise BadValue(f"--workdir {workdir}: its 'stack' folder is not a previous live "
                       "scoring run's; pass an empty or new folder")
    for sub in ("stack", "var", "logs"):
        shutil.rmtree(workdir / sub, ignore_errors=True)
    (workdir / "live-alerts.jsonl").unlink(missing_ok=True)


def live_score(readings: pd.DataFrame, truth: Sequence[Any], registry_csv: Path,
               rule_paths: Sequence[str], *, workdir: Path, scored_from_ms: int | None,
               workers: int = 2, kill_at: float | None = None, history: str = "warmup",
               fmt: str = "senml", env_overrides: Mapping[str, str] | None = None,
               on_status: Callable[[str], None] | None = None,
               timeout_s: float = 3600.0) -> LiveResult:
    """Run the scenario live (see the module docstring) and in process; score both."""
    from urbanbrain.components import Component, role_env
    from urbanbrain.influxql import InfluxQL
    from urbanbrain.kafka import ALERTS_TOPIC
    from urbanbrain.localstack import LocalStack
    from urbanbrain.rules.registry import load_registry_csv
    from urbanbrain.settings import Settings
    from urbanbrain.simulators.replay import replay
    from urbanbrain.streams.alerting import AlertSettings
    from urbanbrain.streams.settings import StreamsSettings
    from urbanbrain.streams.warmup import backfill

    if len(rule_paths) != 1:
        raise ValueError("live scoring takes one rule file or folder (the workers' "
                         "URBANBRAIN_ALERT_RULES_PATH)")
    say = on_status or (lambda msg: None)
    timing: dict[str, float] = {}
    registry = load_registry_csv(registry_csv)
    wide = bt.wide_readings(readings, registry)
    all_readings = [r for _, batch in bt.batches(wide, registry) for r in batch]
    overrides = dict(env_overrides or {})
    # the workers' settings and the in-process worker's are the same object of truth
    base_env = {k: v for k, v in os.environ.items() if k.startswith("URBANBRAIN_")}
    ss = StreamsSettings(**_fields({**base_env, **overrides}, "URBANBRAIN_"))
    cfg = AlertSettings(**_fields({**base_env, **overrides}, "URBANBRAIN_ALERT_"))
    warm_span = int(cfg.warmup_s * 1000)
    if scored_from_ms is not None and history == "warmup":
        history_rs = [r for r in all_readings
                      if scored_from_ms - warm_span <= r["ts"] < scored_from_ms]
        live_rs = [r for r in all_readings if r["ts"] >= scored_from_ms]
    else:
        history_rs, live_rs = [], all_readings

    from urbanbrain.retention import KEEP_EVERYTHING

    clear_workdir(workdir)
    # old recordings: every tier kept, or their raw points would be "beyond retention policy"
    stack = LocalStack(workdir / "stack", influx_retention=KEEP_EVERYTHING).start()
    comps: list[Component] = []
    try:
        env = {**stack.env(), **overrides,
               "URBANBRAIN_REGISTRY_PATH": str(registry_csv),
               "URBANBRAIN_ALERT_RULES_PATH": str(rule_paths[0]),
               "URBANBRAIN_STREAMS_APP_ID": "urbanbrain-livescore",
               "URBANBRAIN_MQTT_CLIENT_ID": "urbanbrain-livescore-ingest",
               "URBANBRAIN_DATA_DIR": str(workdir / "var"),
               "URBANBRAIN_INGEST_MAX_PAST_S": str(10 * 365 * 86400)}  # old recordings

        def settings_of(role: str) -> Settings:
            return Settings(**_fields(role_env(env, role), "URBANBRAIN_"))

        t0 = time.monotonic()
        if history_rs:
            say(f"rules warmup: {len(history_rs):,} readings of history into InfluxDB")
            asyncio.run(backfill(settings_of("streams"), history_rs))
        timing["warmup_s"] = time.monotonic() - t0

        def start(name: str, args: list[str]) -> Component:
            c = Component(name, args, env, workdir / "logs" / f"{name}.log").start(
                fresh_log=True)
            comps.append(c)
            return c

        ingest = start("ingest", ["ingest"])
        ws = [start(f"streams-{i}", ["streams", "worker"]) for i in range(workers)]
        _wait_log(ingest, "MQTT subscribed", 90)
        for w in ws:
            _wait_log(w, "Ready", 120)
        say(f"ingest and {workers} worker(s) ready; replaying {len(live_rs):,} readings")
        t0 = time.monotonic()
        killed = threading.Event()
        stop_watch = threading.Event()
        reader_user, reader_pw = stack.influx_login("reader")
        influx = InfluxQL(env["URBANBRAIN_INFLUX_URL"], env["URBANBRAIN_INFLUX_DB"],
                          reader_user, reader_pw)
        expected = len(live_rs) + len(history_rs)

        def killer() -> None:
            """SIGKILL a worker once ``kill_at`` of the readings are stored: mid-backlog,
            with records read but not yet acknowledged."""
            target = (len(history_rs) + int(kill_at * len(live_rs))
                      if kill_at is not None else None)
            while target is not None and not stop_watch.is_set():
                if _raw_count(influx) >= target:
                    say(f"SIGKILL {ws[0].name} at {target:,} stored readings")
                    ws[0].kill()
                    ws[0] = Component(ws[0].name, ws[0].args, env,
                                      workdir / "logs" / f"{ws[0].name}-restarted.log").start(
                                          fresh_log=True)
                    comps.append(ws[0])
                    killed.set()
                    return
                time.sleep(0.2)

        watcher = threading.Thread(target=killer, daemon=True)
        watcher.start()
        replay(settings_of("simulator"), live_rs, speed=0, fmt=fmt)
        timing["publish_s"] = time.monotonic() - t0
        say("published; waiting for the workers to store everything")
        if kill_at is not None:
            watcher.join(timeout_s)
        stop_watch.set()
        _wait_stored(influx, expected, timeout_s, comps)
        # stored is not enough: a restarted worker may still re-read records it had not
        # committed; wait until the group committed every record of every input topic
        asyncio.run(_wait_committed(settings_of("streams"), "urbanbrain-livescore", timeout_s))
        timing["drain_s"] = time.monotonic() - t0
        # let the last district ticks and alert deliveries settle, then read the topic
        events = asyncio.run(_settled_alerts(settings_of("console"), ALERTS_TOPIC))
        dead = asyncio.run(_dead_letters(settings_of("console")))
        timing["live_total_s"] = time.monotonic() - t0
    finally:
        for c in reversed(comps):
            c.stop()
        stack.stop()

    say("in-process backtest of the same data")
    t0 = time.monotonic()
    inproc = bt.backtest(list(rule_paths), readings, truth, registry_csv,
                         scored_from_ms=scored_from_ms, history=history, plots=False,
                         settings=ss, alert_settings=cfg)
    timing["inproc_s"] = time.monotonic() - t0
    span = inproc.span_ms
    ruleset = bt.RuleSet.load(list(rule_paths), registry)
    # after the recording's last reading the live workers go on in processing time: its
    # sensors did stop, so absence fires there; that is not part of the scenario's span
    # (in process nothing happens after it), so it is counted apart, not scored
    live_all = bt.firings_of(events, ruleset, span[1])
    live_f = [f for f in live_all if f.start_ms <= span[1]]
    after_end = dict(Counter(f.rule for f in live_all if f.start_ms > span[1]))
    with (workdir / "live-alerts.jsonl").open("wb") as fh:  # for a look at what differs
        fh.writelines(orjson.dumps(e.to_dict()) + b"\n" for e in events)
    scores, _ = bt.score(ruleset, live_f, truth, span=span, registry=registry,
                         peaks=inproc.peaks)
    # what both sides are sure to have evaluated: event time up to the last reading minus
    # the allowed lateness (the live workers go on with processing time after the end)
    until = span[1] - int(ss.streams_lateness_s * 1000)
    step = max(int(cfg.district_step_s * 1000), _interval_ms(wide))
    compare = compare_firings(live_f, inproc.firings, from_ms=span[0], until_ms=until,
                              tolerance_ms=step)
    return LiveResult(scores, inproc, live_f, events, compare, timing, span, len(all_readings),
                      dead, after_end)


def _fields(env: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {k[len(prefix):].lower(): v for k, v in env.items() if k.startswith(prefix)}


def _interval_ms(wide: pd.DataFrame) -> int:
    ts = wide["ts"].drop_duplicates().sort_values()
    return int(ts.diff().median()) if len(ts) > 1 else 60_000


def _wait_log(c: Any, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if c.exited:
            raise RuntimeError(f"{c.name} exited; see {c.log_path}")
        if text in c.log():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{c.name} did not log {text!r} within {timeout:.0f}s; see {c.log_path}")


def _raw_count(influx: Any) -> int:
    """Raw readings stored (per kind, the largest field count: kinds differ in fields)."""
    from urbanbrain.up import count_raw_points

    return count_raw_points(influx)


def _wait_stored(influx: Any, expected: int, timeout_s: float, comps: Sequence[Any]) -> None:
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        for c in comps:
            if c.exited and c.proc.returncode not in (0, -9, None):
                raise RuntimeError(f"{c.name} exited with {c.proc.returncode}; see {c.log_path}")
        n = _raw_count(influx)
        if n >= expected:
            return
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > 120:
            raise RuntimeError(f"stored readings stuck at {n:,} of {expected:,}")
        time.sleep(2.0)
    raise RuntimeError(f"not all readings stored within {timeout_s:.0f}s")


async def _settled_alerts(settings: Any, topic: str, quiet_s: float = 20.0) -> list[AlertEvent]:
    """Every record of the alerts topic, once it has been quiet for ``quiet_s``."""
    from urbanbrain.kafka import TopicReader

    out: list[AlertEvent] = []
    async with TopicReader(settings, [topic]) as reader:
        out += [AlertEvent.from_dict(orjson.loads(r.value)) for r in await reader.catch_up(120)]
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < quiet_s:
            got = await reader.poll(1000)
            if got:
                out += [AlertEvent.from_dict(orjson.loads(r.value)) for r in got]
                quiet_since = time.monotonic()
    return out


async def _dead_letters(settings: Any) -> dict[str, int]:
    """Dead letters of the run by reason (a clean replay has none)."""
    from collections import Counter

    from urbanbrain.kafka import DEADLETTER_TOPIC, TopicReader

    async with TopicReader(settings, [DEADLETTER_TOPIC]) as reader:
        recs = await reader.catch_up(120)
    return dict(Counter(orjson.loads(r.value).get("reason", "?") for r in recs))


async def _wait_committed(settings: Any, group: str, timeout_s: float,
                          stuck_s: float = 180.0) -> None:
    """Until the consumer group has committed the end of every partition of the readings
    topics and of its district topic as of the call (every record processed, nothing left
    to re-read).
    Offsets are fetched with a consumer of the group that never joins it (OffsetFetch)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from urbanbrain.kafka import READINGS_TOPICS, client_options
    from urbanbrain.streams.alerting import DISTRICT_TOPIC_SUFFIX

    topics = [*READINGS_TOPICS, f"{group}-{DISTRICT_TOPIC_SUFFIX}"]
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()  # no public API for this
        tps = [TopicPartition(t, p) for t in topics
               for p in (cluster.partitions_for_topic(t) or ())]
        deadline = time.monotonic() + timeout_s
        last: dict[str, int] = {}
        since = time.monotonic()
        # the ends as of now, every reading stored: what comes later are the idle ticks'
        # watermark forwards, which a worker with checkpointed state commits only at its
        # next state write (URBANBRAIN_ALERT_STATE_CHECKPOINT_S), so the moving end
        # would rarely be reached by every partition at once
        end = await consumer.end_offsets(tps)
        while time.monotonic() < deadline:
            behind: dict[str, int] = {}
            for tp in tps:
                done = await consumer.committed(tp) or 0
                if done < end[tp]:
                    behind[f"{tp.topic}[{tp.partition}] {done}/{end[tp]}"] = done
            if not behind:
                return
            if behind != last:
                last, since = behind, time.monotonic()
            elif time.monotonic() - since > stuck_s:
                # a record read and never acknowledged holds its partition's commit for
                # good (the workers' logs say which: "commit of ... stalled")
                raise RuntimeError(f"group {group}: commits stuck for {stuck_s:.0f} s at "
                                   f"(committed/end) {', '.join(behind)}")
            await asyncio.sleep(1.0)
        raise RuntimeError(f"group {group} did not commit every record within {timeout_s:.0f}s")
    finally:
        await consumer.stop()
