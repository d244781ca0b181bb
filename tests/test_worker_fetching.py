"""A partition Faust stopped fetching is fetched again (StreamsWorker.check_fetching).

Faust drops a partition from its fetch set while the agent's queue is under pressure and
is meant to put it back when the queue drains; a restarted worker of the CI kill test had
two partitions that never came back, and stored nothing more. The stall cannot be made to
happen on demand against a real broker, so the consumer here is a stand-in holding exactly
the state Faust keeps (fetch set, paused set, buffered set, committed offsets)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from faust.types import TP

from urbanbrain.streams.worker import StreamsWorker, _caught_up

STUCK, DONE, PAUSED, BUSY = (TP("readings.traffic", 0), TP("readings.traffic", 2),
                             TP("readings.water", 0), TP("readings.power", 1))


def worker(now: float):
    consumer = SimpleNamespace(
        assignment=lambda: {STUCK, DONE, PAUSED, BUSY, TP("alerts", 0)},
        _active_partitions={DONE, BUSY},  # STUCK fell out and never came back
        _paused_partitions={PAUSED},      # paused by recovery: not ours to touch
        _buffered_partitions={STUCK},
        _committed_offset={STUCK: 1},
        _read_offset={},
        highwater=lambda tp: 24,           # aiokafka's: the last fetch's, frozen
    )

    async def highwaters(*tps):  # keyed by aiokafka's type, as Faust's consumer answers
        from aiokafka.structs import TopicPartition as ATP

        return {ATP(*STUCK): 40, ATP(*DONE): 24, ATP(*PAUSED): 30, ATP(*BUSY): 50}

    consumer.highwaters = highwaters
    app = SimpleNamespace(consumer=consumer, rebalancing=False, in_recovery=False)
    w = SimpleNamespace(app=app, processed={("readings.traffic", 0): 23,
                                            ("readings.traffic", 2): 23},
                        last_record={("readings.traffic", 0): now - 60,
                                     ("readings.traffic", 2): now - 60,
                                     ("readings.power", 1): now - 1},
                        _generation_started=now - 120, log_end={}, refetched=0,
                        _busy_since=None, _idle_since=now - 60, _left_behind=set())
    w._report_left_behind = lambda *a: StreamsWorker._report_left_behind(w, *a)
    return w


def test_a_partition_out_of_the_fetch_set_with_records_left_is_fetched_again(caplog):
    w = worker(time.monotonic())
    asyncio.run(StreamsWorker.check_fetching(w, stall_s=30))
    c = w.app.consumer
    assert STUCK in c._active_partitions and STUCK not in c._buffered_partitions
    assert all(type(tp) is TP for tp in c._active_partitions)  # Faust asserts its own type
    assert PAUSED not in c._active_partitions  # paused for recovery: left alone
    assert w.refetched == 1
    assert "readings.traffic[0]: 16 records left from offset 24, out of Faust's" in caplog.text
    # the broker's end offset, not the frozen highwater, decides "caught up"
    assert w.log_end[("readings.traffic", 0)] == 40
    assert _caught_up(w.app, "readings.traffic", 0, 23, 24) is True   # the frozen view
    assert _caught_up(w.app, "readings.traffic", 0, 23, 40) is False  # the broker's end
    assert _caught_up(w.app, "readings.traffic", 0, 23) is False      # unknown: not idle


def test_a_partition_left_behind_in_the_fetch_set_is_reported_once_per_stall(caplog):
    """Records left in a partition Faust believes it fetches (or paused) cannot be put
    back by this check; the stall is logged once, with what Faust and aiokafka hold of
    it, and again only after the agent ran a batch in between."""
    w = worker(time.monotonic())
    asyncio.run(StreamsWorker.check_fetching(w, stall_s=30))
    asyncio.run(StreamsWorker.check_fetching(w, stall_s=30))
    busy = [r for r in caplog.messages if r.startswith("readings.power[1]: 50 records left")]
    assert len(busy) == 1 and "in the fetch set" in busy[0] and "aiokafka: unknown" in busy[0]
    paused = [r for r in caplog.messages if r.startswith("readings.water[0]: 30 records left")]
    assert len(paused) == 1 and "has it paused" in paused[0]
    w._idle_since = time.monotonic()  # a batch ran: the episode is over
    asyncio.run(StreamsWorker.check_fetching(w, stall_s=30))
    assert not w._left_behind
    w._idle_since = time.monotonic() - 60
    asyncio.run(StreamsWorker.check_fetching(w, stall_s=30))
    assert len([r for r in caplog.messages if r.startswith("readings.power[1]")]) == 2


def test_nothing_is_touched_while_the_agent_works_or_during_a_rebalance():
    """A catch-up keeps the queue under pressure for minutes: partitions are rightly out
    of the fetch set while the agent works through it."""
    w = worker(time.monotonic())
    asyncio.run(StreamsWorker.check_fetching(w, stall_s=120))  # waiting 60 s only
    assert STUCK not in w.app.consumer._active_partitions and w.refetched == 0
    w._busy_since = time.monotonic() - 300  # one long batch (a warm start, a catch-up)
    asyncio.run(StreamsWorker.check_fetching(w, stall_s=30))
    assert STUCK not in w.app.consumer._active_partitions and w.refetched == 0
    w._busy_since = None
    w.app.rebalancing = True
    asyncio.run(StreamsWorker.check_fetching(w, stall_s=30))
    assert STUCK not in w.app.consumer._active_partitions and w.refetched == 0
