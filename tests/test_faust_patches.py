"""The faust-streaming patches a restart without loss depends on (streams/faust_patches.py)
apply to the pinned release only, and a worker refuses any other."""

from __future__ import annotations

import asyncio
import inspect
import tomllib
from pathlib import Path

import pytest

from urbanbrain.streams import faust_patches

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_pins_the_verified_release() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"faust-streaming=={faust_patches.VERIFIED_VERSION}" in deps


def test_the_installed_release_is_verified_and_the_patches_apply() -> None:
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer

    assert faust_patches.mismatches() == []
    assert faust_patches.apply() is True
    assert Recovery.on_recovery_completed is faust_patches._on_recovery_completed
    assert Consumer._new_offset is faust_patches._new_offset
    assert Consumer.wait_empty is faust_patches._wait_empty_bounded
    assert Consumer.perform_seek is faust_patches._perform_seek
    assert faust_patches.apply() is True  # idempotent


def test_the_worker_consumer_gets_the_configured_fetch_wait(tmp_path: Path) -> None:
    """Patch 8: Faust's hard-coded 1500 ms is replaced on the consumer it really builds."""
    import faust

    from urbanbrain.streams.app import faust_config
    from urbanbrain.settings import Settings

    faust_patches.apply()
    settings = Settings(data_dir=tmp_path, kafka_fetch_max_wait_ms=40)
    app = faust.App("patch-8-test", **faust_config(settings))
    thread = app.consumer._thread

    async def waits() -> list[int]:  # aiokafka builds its consumer inside a running loop
        out = []
        for ms in (None, settings.kafka_fetch_max_wait_ms):
            faust_patches.set_fetch_max_wait(ms)
            out.append(thread._create_worker_consumer(app.transport)._fetch_max_wait_ms)
        return out

    try:
        assert asyncio.run(waits()) == [1500, 40]
    finally:
        faust_patches.set_fetch_max_wait(None)


def test_a_changed_upstream_method_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    real = inspect.getsource

    def changed(fn):  # noqa: ANN001, ANN202 - stands for a new faust release's source
        src = real(fn)
        return src + "\n# changed upstream\n" if fn.__name__ == "_new_offset" else src

    monkeypatch.setattr(inspect, "getsource", changed)
    monkeypatch.setattr(faust_patches, "_applied", False)
    assert faust_patches.mismatches() == ["Consumer._new_offset"]
    with pytest.raises(faust_patches.FaustPatchError, match="Consumer._new_offset") as exc:
        faust_patches.apply()
    assert exc.value.exit_code == 78


def _sought_consumer(broker: dict):  # noqa: ANN202
    """Faust's offset bookkeeping of a worker whose revocation commit failed (the member
    was expelled): it believes partition 1 committed at 120, the broker has no commit."""
    from collections import defaultdict
    from types import SimpleNamespace

    from aiokafka.structs import TopicPartition as ATP
    from faust.types import TP

    async def seek_to_committed():  # noqa: ANN202 - aiokafka's answer, keyed by its type
        return {ATP(*tp): off for tp, off in broker.items()}

    async def earliest_offsets(*tps):  # noqa: ANN202 - aiokafka's answer, its type
        return {ATP(tp.topic, tp.partition): 7 for tp in tps}

    sought: dict = {}

    async def _seek(tp, offset):  # noqa: ANN001, ANN202 - aiokafka's fetcher position
        sought[(tp.topic, tp.partition)] = offset

    c = SimpleNamespace(seek_to_committed=seek_to_committed, earliest_offsets=earliest_offsets,
                        _seek=_seek, sought=sought,
                        app=SimpleNamespace(tables=SimpleNamespace(
                            changelog_topics={"app-alert-state-changelog"})),
                        _read_offset=defaultdict(lambda: None),
                        _committed_offset=defaultdict(lambda: None),
                        _acked=defaultdict(list), _acked_index=defaultdict(set),
                        _gap=defaultdict(list))
    one, two = TP("readings.power", 1), TP("readings.power", 3)
    c._committed_offset.update({one: 120, two: 10})
    c._read_offset.update({one: 119, two: 30})
    c._acked[one] = [118, 119]
    c._acked_index[one] = {118, 119}
    return c, one, two


def test_after_a_seek_faust_believes_what_the_broker_has_committed() -> None:
    """Patch 4: a partition without a commit at the broker is read from its start; Faust
    must not go on believing it committed at 120, or it ignores every ack below 120 and
    the partition never commits again (the CI kill test's hang)."""
    import asyncio

    from faust.transport.consumer import Consumer

    key = ("faust.transport.consumer", "Consumer", "perform_seek")
    upstream = faust_patches._originals.get(key) or Consumer.perform_seek
    assert upstream is not faust_patches._perform_seek
    c, one, two = _sought_consumer({("readings.power", 1): None, ("readings.power", 3): 40})
    asyncio.run(upstream(c))
    assert c._committed_offset[one] == 120  # the bug: the failed commit's belief survives

    c, one, two = _sought_consumer({("readings.power", 1): None, ("readings.power", 3): 40})
    asyncio.run(faust_patches._perform_seek(c))
    assert c._committed_offset[one] is None and c._committed_offset[two] == 40
    assert c._read_offset[one] is None and c._read_offset[two] == 40
    assert one not in c._acked and one not in c._acked_index  # counted before the seek
    assert all(type(tp).__name__ == "TP" for tp in c._committed_offset)


def test_a_partition_without_a_commit_is_read_again_from_its_start() -> None:
    """Patch 7: aiokafka's seek moves only partitions committed past 0, so a partition
    this worker kept across a rebalance, with no commit yet, stayed at its fetch position,
    past the records of the batch the rebalance abandoned (the checkpointed kill test:
    15 records of readings.water never read again). Now it is put at its first offset (or
    at 0, when committed there); a committed partition and the changelogs are left as
    aiokafka and Faust's recovery put them."""
    import asyncio

    c, one, two = _sought_consumer({("readings.power", 1): None, ("readings.power", 3): 40,
                                    ("readings.water", 0): 0,
                                    ("app-alert-state-changelog", 1): None})
    asyncio.run(faust_patches._perform_seek(c))
    assert c.sought == {("readings.power", 1): 7, ("readings.water", 0): 0}
    assert c._commit_floor[one] == 7 and c._commit_floor[two] == 40


def _acking_consumer(committed: int | None, floor: dict | None, acked: range):  # noqa: ANN202
    from collections import defaultdict
    from types import SimpleNamespace

    from faust.types import TP

    tp = TP("readings.traffic", 1)
    c = SimpleNamespace(_acked={tp: list(acked)}, _acked_index={tp: set(acked)},
                        _gap=defaultdict(list), _committed_offset=defaultdict(lambda: None))
    c._committed_offset[tp] = committed
    if floor is not None:
        c._commit_floor = {tp: floor}
    return c, tp


def test_a_partition_without_a_commit_is_not_committed_over_a_gap() -> None:
    """Patch 5: records 100-149 were read and left unacknowledged (a batch abandoned at a
    rebalance), 150-199 acked. faust's own code commits 200 when the partition has no
    commit yet, and 100-149 are never processed (the fence's first CI run lost 1,740
    readings that way); with the floor the seek recorded, nothing is committed."""
    from faust.transport.consumer import Consumer

    key = ("faust.transport.consumer", "Consumer", "_new_offset")
    upstream = faust_patches._originals.get(key) or Consumer._new_offset
    c, tp = _acking_consumer(None, None, range(150, 200))
    c._acked_index = {tp: set(range(150, 200))}
    assert upstream(c, tp) == 200  # the bug
    c, tp = _acking_consumer(None, 100, range(150, 200))
    assert faust_patches._new_offset(c, tp) is None
    c, tp = _acking_consumer(None, 100, range(100, 200))
    assert faust_patches._new_offset(c, tp) == 200


def test_the_floor_follows_the_commits_through_a_revocation() -> None:
    """At a revocation Faust forgets what it committed, then commits what is acked while
    it waits: the run must start where the last commit ended, not at the seek's floor."""
    c, tp = _acking_consumer(None, 100, range(100, 150))
    assert faust_patches._new_offset(c, tp) == 150 and c._commit_floor[tp] == 150
    c._acked[tp] = list(range(170, 180))  # 150-169 abandoned
    c._acked_index[tp] = set(range(170, 180))
    assert faust_patches._new_offset(c, tp) is None
    c._acked[tp] = list(range(150, 160)) + list(range(170, 180))
    c._acked_index[tp] = set(c._acked[tp])
    assert faust_patches._new_offset(c, tp) == 160 and c._commit_floor[tp] == 160


def test_the_seek_records_where_reading_starts() -> None:
    """The floor of a partition without a commit is its first offset in the log (7 here);
    of one with a commit, the committed offset (also 0, which Faust stores as None)."""
    import asyncio

    c, one, two = _sought_consumer({("readings.power", 1): None, ("readings.power", 3): 40})
    asyncio.run(faust_patches._perform_seek(c))
    assert c._commit_floor == {one: 7, two: 40}
    c, one, two = _sought_consumer({("readings.power", 1): 0, ("readings.power", 3): 40})
    asyncio.run(faust_patches._perform_seek(c))
    assert c._commit_floor == {one: 0, two: 40} and c._committed_offset[one] is None


def test_a_commit_stops_at_the_first_record_whose_state_is_not_written() -> None:
    """Patch 6: with checkpointed state, records 100-199 are acked but the state holds
    only 100-149 (the batch of 150-199 left it in memory): the commit stops at 150 and
    the acks above it wait, committed once the state is written (the ceiling lifted)."""
    import asyncio

    c, tp = _acking_consumer(100, 100, range(100, 200))
    faust_patches.set_commit_ceiling(c, tp.topic, tp.partition, 150)
    faust_patches.set_commit_ceiling(c, tp.topic, tp.partition, 180)  # a later batch: kept
    assert faust_patches.commit_ceiling(c, tp.topic, tp.partition) == 150
    assert faust_patches._new_offset(c, tp) == 150
    assert c._acked[tp] == list(range(150, 200))  # not dropped: committed later
    c._committed_offset[tp] = 150
    assert faust_patches._new_offset(c, tp) is None  # still held at 150
    faust_patches.set_commit_ceiling(c, tp.topic, tp.partition, None)  # state written
    assert faust_patches.commit_ceiling(c, tp.topic, tp.partition) is None
    assert faust_patches._new_offset(c, tp) == 200

    # the seek of the next assignment clears the ceilings with the acks
    s, one, _ = _sought_consumer({("readings.power", 1): 5, ("readings.power", 3): 40})
    faust_patches.set_commit_ceiling(s, one.topic, one.partition, 3)
    asyncio.run(faust_patches._perform_seek(s))
    assert faust_patches.commit_ceiling(s, one.topic, one.partition) is None
