"""A worker killed while a batch's state is being written: the order of the state writes.

Kafka makes a batch's writes to *different* changelog partitions durable in no particular
order (window marks and rule state live in two tables). ``SourcePipeline.finish`` therefore
hands them out in steps, and the worker makes each step durable before the next. These
tests kill the in-process worker (the product's stages over in-memory stores) after each
step of a catch-up batch holding a whole AQI episode, rebuild it from the stores, read the
records again from the last committed offset, and require the alerts of an uninterrupted
run: no alert sent twice with a new start, none lost.

The failure this guards against (CI kill test, 2 of 7 runs): the window marks landed, the
rule state did not; the restarted worker never re-emitted those windows' AQI samples, so
its rule state missed the episode and fired it again hours later.
"""

from __future__ import annotations

from collections import Counter

from functools import cache
from pathlib import Path

import pytest

from urbanbrain.rules import RuleSet
from urbanbrain.rules import backtest as bt
from urbanbrain.streams.inprocess import InProcessWorker

CITY = str(Path(bt.__file__).parent / "city")


@cache
def episode() -> tuple[RuleSet, Path, list[list[dict]]]:
    """ci-day's air-quality stations from the scored start: ticks of event time."""
    df, _, reg, scored_from = bt.scenario_inputs("ci-day")
    registry = bt.load_registry_csv(reg)
    aq = df[df["sensor_id"].astype(str).str.startswith("aq-")]
    ticks = [b for ts, b in bt.batches(bt.wide_readings(aq, registry), registry)
             if ts >= scored_from]
    return RuleSet.load([CITY]), reg, ticks


@cache
def uninterrupted() -> frozenset[tuple]:
    rs, reg, ticks = episode()
    ref = InProcessWorker(rs, reg, checkpoint_s=0)
    for batch in ticks:
        ref.feed(batch)
    return frozenset(aqi_alerts(ref.events))


def aqi_alerts(events) -> set[tuple]:
    """What an alert consumer keeps: one transition per fingerprint, status and start."""
    return {(e.labels["alertname"], e.labels.get("sensor"), e.status, e.starts_at)
            for e in events if e.labels["alertname"].startswith("AirQuality")}


@pytest.mark.parametrize("landed_steps", [0, 1, 2])
def test_a_kill_between_state_writes_neither_repeats_nor_loses_an_alert(landed_steps):
    rs, reg, ticks = episode()
    want = uninterrupted()
    assert {a[0] for a in want} == {"AirQualityUnhealthySensitive", "AirQualityUnhealthy",
                                    "AirQualityVeryUnhealthy"}

    w = InProcessWorker(rs, reg, checkpoint_s=0)
    w.feed(ticks[0])
    committed = dict(w.offsets)
    # a catch-up: 20 ticks (5 h) in one batch, the whole episode. Its alerts are sent,
    # then the worker dies with ``landed_steps`` steps of its state writes durable
    catch_up = [r for batch in ticks[1:21] for r in batch]
    outs = w.process(catch_up)
    sent = [*w.events, *(e for out in outs for e in out.events)]
    assert aqi_alerts(sent) - want == set() and any(
        a[2] == "firing" for a in aqi_alerts(sent))  # the episode fired in this batch
    steps = w.pipeline.finish(outs)
    for _ in range(landed_steps):
        next(steps, None)
    if landed_steps == 2:
        assert next(steps, "done") == "done"  # two steps: rule state, then window marks
    # the partitions' next owner rebuilds from the stores and reads the same records again
    # from the committed offsets (nothing of the batch was acknowledged)
    again = InProcessWorker(rs, reg, checkpoint_s=0, stores=w.stores)
    again.offsets.update(committed)
    again.feed(catch_up)
    for batch in ticks[21:]:
        again.feed(batch)
    got = aqi_alerts(sent + again.events)
    assert got == want, (sorted(got - want)[:6], sorted(want - got)[:6])


def test_a_partition_not_fetched_yet_after_a_restart_is_not_caught_up():
    """The worker's idle tick moves the watermark of caught-up partitions only. Right after
    a restart, a partition with records left behind its committed offset has read nothing
    yet (Faust keeps no read offset for a seek to 0): it must not count as quiet."""
    from types import SimpleNamespace

    from faust.types import TP

    from urbanbrain.streams.worker import _caught_up

    def app(hw: int | None, committed: int | None):
        consumer = SimpleNamespace(highwater=lambda tp: hw,
                                   _committed_offset={TP("readings.water", 1): committed})
        return SimpleNamespace(consumer=consumer)

    end = 12  # the log end offset the broker reported
    assert not _caught_up(app(12, None), "readings.water", 1, None, end)  # never committed
    assert not _caught_up(app(12, 5), "readings.water", 1, None, end)     # a backlog from 5
    assert _caught_up(app(12, 12), "readings.water", 1, None, end)        # taken over at its end
    assert _caught_up(app(0, None), "readings.water", 1, None, 0)         # empty
    assert not _caught_up(app(12, 12), "readings.water", 1, None, None)   # end not known yet
    assert _caught_up(app(12, 0), "readings.water", 1, 11, end)           # processed to the end
    assert not _caught_up(app(12, 0), "readings.water", 1, 10, end)
    assert not _caught_up(app(None, 0), "readings.water", 1, 10, end)     # nothing fetched yet


def test_flush_durably_waits_for_a_table_write_the_producer_buffer_no_longer_holds():
    """Faust's buffer task takes a table write off its queue before aiokafka has it: the
    queue is empty and aiokafka's flush is done, but the write is not in Kafka. The worker
    makes rule state durable before window marks, so the flush must wait for the write's
    own acknowledgement (its future), or a kill can still land the marks first."""
    import asyncio
    from types import SimpleNamespace

    from urbanbrain.streams.state import TableStore, flush_durably

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        in_flight: list[asyncio.Future] = []

        def send_changelog(partition, key, value, **kw):
            fut = loop.create_future()  # acknowledged 50 ms later, by nobody we flush
            in_flight.append(fut)
            loop.call_later(0.05, lambda: (order.append(f"acked {key}"), fut.set_result(None)))
            return fut

        async def nothing() -> None:
            return None

        table = SimpleNamespace(data={}, send_changelog=send_changelog)
        store = TableStore(table)
        app = SimpleNamespace(producer=SimpleNamespace(
            buffer=SimpleNamespace(size=0, flush=nothing), flush=nothing))
        store.put(0, "rule-state", b"x")
        await flush_durably(app)
        order.append("flushed")
        return order

    assert asyncio.run(main()) == ["acked rule-state", "flushed"]


@pytest.mark.parametrize("deferred", [True, False])
def test_checkpointed_state_restarts_from_the_last_write(monkeypatch, deferred):
    """URBANBRAIN_ALERT_STATE_CHECKPOINT_S > 0: rule state is written once a minute here,
    window marks wait for it, and commits stop at the last write (faust patch 6). Killed
    20 ticks (5 h, the whole episode) after its last write, the worker's next owner reads
    those ticks again from the commit, evaluates the same alerts and sends only those not
    sent yet (the identities of what was sent since the checkpoint are in the table):
    every transition once, the same list as a worker never killed.
    With the marks written at every batch instead (``deferred`` False, the mistake this
    guards against) the restart misses the samples of windows marked closed after the
    last rule state write, and the alerts differ. (With the window deltas written at
    every batch and only the marks waiting, the AQI alerts matched, but the recovered
    windows closed five hours at once and the district clocks ran ahead of the replay.)"""
    from urbanbrain.streams import alert_stage

    rs, reg, ticks = episode()
    want = uninterrupted()
    clock = [0.0]
    monkeypatch.setattr(alert_stage.time, "monotonic", lambda: clock[0])
    w = InProcessWorker(rs, reg, checkpoint_s=60)
    w.pipeline.deferred_marks = deferred
    w.feed(ticks[0])  # the interval starts
    clock[0] = 100.0
    w.feed(ticks[1])  # due: everything so far written
    committed = dict(w.offsets)  # the ceiling lifted: what a commit may reach
    for batch in ticks[2:22]:
        clock[0] += 1.0
        w.feed(batch)  # in memory (and window deltas); commits held at `committed`
    assert any(e.status == "firing" for e in w.events
               if e.labels["alertname"].startswith("AirQuality"))
    again = InProcessWorker(rs, reg, checkpoint_s=60, stores=w.stores)
    again.offsets.update(committed)
    for batch in ticks[2:]:
        clock[0] += 1.0
        again.feed(batch)
    got = aqi_alerts(w.events + again.events)
    if not deferred:
        assert got != want
        return
    assert got == want, (sorted(got - want)[:6], sorted(want - got)[:6])
    # every rule, district ones too: the district clocks see the replay as the original
    ref = InProcessWorker(rs, reg, checkpoint_s=0)
    for batch in ticks:
        ref.feed(batch)
    every = all_alerts(ref.events)
    assert {a[0] for a in every} >= {"PollutionEpisode", "SensorSilent"}
    assert all_alerts(w.events + again.events) == every
    sent = Counter(alert_identities(w.events + again.events))
    assert max(sent.values()) == 1, [k for k, n in sent.items() if n > 1][:5]
    assert sorted(sent) == sorted(alert_identities(ref.events))
    # the replay did evaluate them again: the suppressed resends are counted
    assert again.sensors.resends_suppressed + again.districts.resends_suppressed > 0


def alert_identities(events) -> list[tuple]:
    return [(e.fingerprint, e.status, e.starts_at, e.silenced) for e in events]


def all_alerts(events) -> set[tuple]:
    return {(e.labels["alertname"], e.labels.get("sensor"), e.labels.get("district"),
             e.status, e.starts_at) for e in events}
