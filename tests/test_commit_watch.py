"""The commit watch names a partition whose commit stopped behind what was read, with the
record that holds it, once; a partition that commits, or has read nothing past its
commit, is left alone."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from faust.types import TP
from intervaltree import IntervalTree

from urbanbrain.streams.commit_watch import CommitWatch

HELD, MOVING, QUIET = TP("readings.traffic", 0), TP("readings.traffic", 1), TP("readings.power", 0)


def _consumer() -> SimpleNamespace:
    held_msg = SimpleNamespace(tp=HELD, offset=40, refcount=1, generation_id=3, acked=False)
    return SimpleNamespace(
        assignment=lambda: {HELD, MOVING, QUIET, TP("other", 0)},
        _committed_offset={HELD: 40, MOVING: 10, QUIET: 7},
        _read_offset={HELD: 99, MOVING: 50, QUIET: 6},
        _acked={HELD: [41, 42, 43], MOVING: [], QUIET: []},
        _gap={HELD: IntervalTree()},
        _unacked_messages=[held_msg],
        app=SimpleNamespace(consumer_generation_id=4))


def test_reports_the_partition_held_by_an_unacked_record_once(caplog) -> None:
    c, w = _consumer(), CommitWatch()
    topics = ["readings.traffic", "readings.power"]
    assert w.check(c, topics, stall_s=30, now=0.0) == []  # first sight: nothing to compare
    c._committed_offset[MOVING] = 20
    assert w.check(c, topics, stall_s=30, now=20.0) == []  # not stalled long enough
    c._committed_offset[MOVING] = 30
    with caplog.at_level(logging.WARNING):
        lines = w.check(c, topics, stall_s=30, now=31.0)
    assert len(lines) == 1 and w.stalls == 1
    line = lines[0]
    assert "readings.traffic[0] stalled at offset 40" in line
    assert "records up to 99 were read" in line and "offset 40 is not acked" in line
    assert "(40, 1, 3, False)" in line and "generation 4" in line
    assert line in caplog.text
    # said once per stall, not at every check
    c._committed_offset[MOVING] = 40
    assert w.check(c, topics, stall_s=30, now=90.0) == [] and w.stalls == 1
    # it moved on, then stopped again further on: a new stall, said again
    c._committed_offset[HELD] = 44
    c._committed_offset[MOVING] = 45
    assert w.check(c, topics, stall_s=30, now=91.0) == []
    c._committed_offset[MOVING] = 50  # all it read: caught up, not stalled
    assert w.check(c, topics, stall_s=30, now=100.0) == []
    lines = w.check(c, topics, stall_s=30, now=130.0)
    assert len(lines) == 1 and "readings.traffic[0] stalled at offset 44" in lines[0]
    assert w.stalls == 2


def test_reports_a_partition_the_broker_has_committed_behind_faust_belief() -> None:
    """Faust ignores acks of offsets below what it believes committed: if the broker holds
    less (a commit that failed in a rebalance), that partition's commit never moves."""
    c, w = _consumer(), CommitWatch()
    c._committed_offset[HELD] = 100  # believed; everything up to 99 was read and acked
    c._read_offset[MOVING] = 10  # a quiet partition, sought to its commit
    c._unacked_messages = []
    topics = ["readings.traffic"]
    agree = {HELD: 100, MOVING: 10}
    assert w.check(c, topics, 30, 0.0, agree) == []
    assert w.check(c, topics, 30, 40.0, agree) == []  # read == committed: nothing held
    lines = w.check(c, topics, 30, 41.0, {HELD: 60, MOVING: 10})
    assert len(lines) == 1 and "broker has it committed at 60 only" in lines[0]
