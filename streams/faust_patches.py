"""Fixes to faust-streaming 0.15 that "a restart loses nothing" depends on.

Found by the fault suite (tests/faults/test_fault_replay.py): a worker restarted while its
partitions had waiting records lost 1–50 readings in about half the runs, always whole
Kafka records that were in Kafka but never stored.

1. **Recovery discards fetched records** (upstream faust-streaming issue #596).
   ``Recovery.on_recovery_completed`` resumes the stream partitions, seeks them to the
   committed offsets, *then* calls ``app.flow_control.resume()``, which empties every
   agent queue (``clear_on_resume``). Records the fetcher delivered between the seek and
   that call are thrown away although the consumer already counts them as read, so they
   are never fetched again. Patched order: empty the queues first, while the stream
   partitions are still paused (that still drops what was buffered before the
   rebalance, the purpose of the clearing), then resume and seek, then let the flow go
   without emptying anything.

2. **A gap at the head of the acked offsets is committed over** (upstream #606, PR #707).
   ``Consumer._new_offset`` treats a single missing offset right after the committed one
   as a compacted-topic gap and commits past it. Our topics are not compacted, and gaps
   the fetcher knows about are merged into the acked set before this check, so a missing
   head offset is a record still in flight (or lost in 1.): never commit past it. The
   worst case becomes a stalled commit (visible as lag), never a skipped record.

3. **A rebalance waits forever for messages nobody will ack** (found by issue #14's
   two-worker fault test). On revocation Faust clears the agents' channel queues, then
   ``Consumer.wait_empty`` waits until every tracked message is acked. A record read by
   two agents (``store_readings`` and ``alert_sensors``) whose copy in one agent's queue was
   cleared keeps a reference count of 1; it would be forgotten once garbage, but the other
   stream still holds it as its ``current_event`` and no new event replaces it while the
   flow is paused. The worker then never rejoins and the whole group stalls. Patched: the
   wait is bounded (``WAIT_EMPTY_S``), and what is still unacked is simply not committed:
   the partition's next owner reads it again (duplicates in InfluxDB are upserts).

4. **A commit that failed in a rebalance outlives the next assignment** (found by the CI
   kill test hanging: every reading stored, a partition never committed). At revocation
   Faust forgets what it believed committed, then commits what the agents ack while it
   waits; when the member has already been expelled (a revocation that outlasts the session
   timeout) that commit fails, but ``Consumer._commit_offsets`` records its offsets as
   committed anyway (upstream #316, fixed on master by PR #692, after 0.15.3). On the
   next assignment ``perform_seek`` overwrites that belief only for partitions the broker
   has a commit for. A partition with none is read again from
   its start while Faust believes it committed further on: it ignores every ack below that
   belief (``Consumer.ack``), so the commit never moves, and the partition's next owner
   reads it all again. Patched: after the seek, what Faust believes committed is what the
   broker has, for every partition sought (None when it has none), and the acks counted
   before the seek are dropped: they were counted against the old position; the records
   from the new one are read, processed and acked again. Fixed at the seek rather than by
   back-porting PR #692: the seek after a rebalance is where the belief must match the
   broker whatever made them differ, and a failed commit is always followed by one here
   (it fails only with "already rebalanced"; any other error crashes the worker).

5. **A partition with no commit yet is committed over its gaps.** 2.'s check compares
   the acked offsets with the committed one, and a partition without a commit (or
   committed at 0, which Faust also stores as "none") has none to compare with: faust's
   own ``_new_offset`` skips its check then too (``if committed_offset:``). A record left
   unacknowledged there (``RebalanceFence`` abandons a batch a rebalance overtook) was
   committed over, and never processed: the fence's first CI run stalled with 1,740 of
   52,638 readings missing. Patched: the seek records each partition's floor, the offset
   its reading starts from (the committed one, else the partition's first offset in the
   log, asked of the broker: ``auto_offset_reset`` is ``earliest``), and a commit must
   start there. The floor follows every offset ``_new_offset`` hands out, so it also
   holds at a revocation, where Faust forgets what it committed before its last commit.

6. **Commits follow the state checkpoints (not a fix: the hook the worker's checkpointed
   state needs).** With ``URBANBRAIN_ALERT_STATE_CHECKPOINT_S`` > 0 the worker writes its
   rule state and window marks of a partition only every so often (Kafka Streams'
   commit interval), so a record acked since the last checkpoint is not in the durable
   state yet and must be read again after a crash. The worker keeps, per partition, the
   first offset whose state is not durable (:func:`set_commit_ceiling`); ``_new_offset``
   never commits past it. The seek after an assignment clears the ceilings, with the
   acks (4.): from there the partition is read again from its committed offset, which
   the ceilings held at or below what the state holds.

7. **A partition without a commit keeps its fetch position across a rebalance.**
   aiokafka's ``seek_to_committed`` moves a partition only to a commit past 0
   (``if offset and offset > 0``); one without a commit keeps whatever position the
   fetcher had. For a partition newly assigned that is none, and the reset policy reads
   it from its start; but a partition this worker keeps across the rebalance stays past
   the records of the batch the rebalance made it abandon (left unacknowledged "for the
   partitions' owners to read again": the owner is itself). They were never read again:
   one CI kill test in five with checkpointed state (its commits held at 0 until the
   first checkpoint) stopped with `readings.water` 0 and 2 at "15 records left from
   offset 0, aiokafka position 15". Patched: after the seek, every stream partition
   without a commit past 0 is put at its floor (5.), where the reset policy would start a
   new owner. The tables' changelog partitions are left to Faust's recovery.

8. **The fetch wait is hard-coded (not a fix: a setting).** Faust builds the worker's
   aiokafka consumer with ``fetch_max_wait_ms=1500``. Apache Kafka answers a fetch as
   soon as a record arrives, but a broker that answers only when the wait is over (tansu,
   the local stack's) then made a readings batch every ~0.9 s at a steady 7,500
   readings/s: 81 batches in 70 s, each with ~0.15 s of work. Patched: the consumer
   Faust creates gets ``URBANBRAIN_KAFKA_FETCH_MAX_WAIT_MS`` (:func:`set_fetch_max_wait`)
   before it starts; nothing else of it changes.

All eight are applied once, by :func:`apply`, and only to faust-streaming 0.15.3 whose
replaced methods still have the source they were written against (the sha256 of each is
checked at every start): any other release refuses to start with one line (exit 78),
because running unpatched loses data on a restart.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from urbanbrain.errors import EX_CONFIG, ActionableError

log = logging.getLogger(__name__)

#: The faust-streaming release the patches were written against and verified on
#: (pyproject.toml pins it exactly).
VERIFIED_VERSION = "0.15.3"
#: sha256 of the upstream source of every method replaced here, in that release. A method
#: whose source differs is code these patches were not written for: the worker refuses to
#: start rather than run with a recovery that may lose data, or with patches that undo an
#: upstream fix.
UPSTREAM_SHA256: dict[tuple[str, str, str], str] = {
    ("faust.tables.recovery", "Recovery", "on_recovery_completed"):
        "6ef567acf072e46da3fccbccc6d662371f634f622c3d510972d5df81f70ae3ac",
    ("faust.transport.consumer", "Consumer", "_new_offset"):
        "1d2c7ea89a7ad4f1a216c1d51936e569162cd66bd56f889e13fd29c910b58eb0",
    ("faust.transport.consumer", "Consumer", "wait_empty"):
        "e4662fe24f094819add590b2d75f233840e77823b432aea6504539768572102f",
    ("faust.transport.consumer", "Consumer", "perform_seek"):
        "0e8c130ff4b0afd82c0be9c5fd831316e10febc62c94032833911096e156d7c6",
    ("faust.transport.drivers.aiokafka", "AIOKafkaConsumerThread", "_create_worker_consumer"):
        "c2701bfc3e6f6cad95c2be36d6a255a86e2c57d18d36cc1082b5fb5c482d99d7",
}
#: what the worker's consumer waits for at most per fetch (patch 8); None: Faust's 1500
_fetch_max_wait_ms: int | None = None
_applied = False
_originals: dict[tuple[str, str, str], Any] = {}  # the upstream methods, once replaced


class FaustPatchError(ActionableError):
    """The installed faust-streaming is not the one the patches were verified on."""

    exit_code = EX_CONFIG


def mismatches() -> list[str]:
    """Replaced methods whose upstream source differs from the verified one."""
    import hashlib
    import importlib
    import inspect

    bad = []
    for key, want in UPSTREAM_SHA256.items():
        module, cls, name = key
        fn = _originals.get(key) or getattr(getattr(importlib.import_module(module), cls), name)
        got = hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()
        if got != want:
            bad.append(f"{cls}.{name}")
    return bad


def apply() -> bool:
    """Patch faust (idempotent); raises :class:`FaustPatchError` on any other release."""
    global _applied
    if _applied:
        return True
    from importlib.metadata import version

    v = version("faust-streaming")
    bad = mismatches()
    if v != VERIFIED_VERSION or bad:
        raise FaustPatchError(
            f"faust-streaming {v} is installed, but the recovery and commit patches a "
            f"restart without loss depends on (streams/faust_patches.py) were verified on "
            f"{VERIFIED_VERSION}" + (f" and these methods differ: {', '.join(bad)}" if bad
                                     else "") +
            f": install faust-streaming=={VERIFIED_VERSION} (pyproject pins it), or review "
            "the patches against the new release and update UPSTREAM_SHA256")
    import importlib

    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    for key in UPSTREAM_SHA256:
        module, cls, name = key
        _originals[key] = getattr(getattr(importlib.import_module(module), cls), name)
    Recovery.on_recovery_completed = _on_recovery_completed  # type: ignore[method-assign]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    Consumer.wait_empty = _wait_empty_bounded  # type: ignore[method-assign]
    Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    _applied = True
    return True


def set_fetch_max_wait(ms: int | None) -> None:
    """The fetch wait of worker consumers created from now on (patch 8)."""
    global _fetch_max_wait_ms
    _fetch_max_wait_ms = ms


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    """faust 0.15.3's consumer, with :func:`set_fetch_max_wait`'s wait (read by aiokafka
    when the consumer starts, so setting it on the new instance is enough)."""
    key = ("faust.transport.drivers.aiokafka", "AIOKafkaConsumerThread",
           "_create_worker_consumer")
    consumer = _originals[key](self, transport)
    if _fetch_max_wait_ms is not None:
        consumer._fetch_max_wait_ms = _fetch_max_wait_ms  # noqa: SLF001 - see patch 8
    return consumer


def _resume_without_clearing(flow_control: Any) -> None:
    """``FlowControlEvent.resume()`` minus its ``clear()`` of the managed queues."""
    queues = flow_control._queues
    flow_control._queues = type(queues)()
    try:
        flow_control.resume()
    finally:
        flow_control._queues = queues


async def _on_recovery_completed(self: Any, generation_id: int = 0) -> None:
    """faust 0.15.3 ``Recovery.on_recovery_completed`` with the queues emptied before the
    stream partitions resume instead of after (see the module docstring)."""
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callback_coros = [
        asyncio.ensure_future(
            table.on_recovery_completed(
                self.actives_for_table[table], self.standbys_for_table[table]
            )
        )
        for table in self.tables.values()
    ]
    if callback_coros:
        await asyncio.wait(callback_coros)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(
            f"Recovery rebalancing again app id "
            f"{self.app.consumer_generation_id} param {generation_id}"
        )
        return
    self.app.flow_control.clear()  # pre-rebalance leftovers; stream partitions still paused
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    if assignment:
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
    self.completed.set()
    self.log.dev("Resume stream partitions")
    _resume_without_clearing(self.app.flow_control)  # keep what was fetched after the seek
    consumer.resume_flow()
    await self.app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


def _new_offset(self: Any, tp: Any) -> int | None:
    """faust 0.15.3 ``Consumer._new_offset``, committing only a run that starts at the
    committed offset (see the module docstring)."""
    from faust.utils.functional import consecutive_numbers

    acked = self._acked[tp]
    if not acked:
        return None
    max_offset = max(acked)
    gap_for_tp = self._gap[tp]
    if gap_for_tp:
        candidates = sorted(gap_for_tp.overlap(0, max_offset), key=lambda x: x.begin)
        if candidates:
            stuff_to_add: list[int] = []
            for entry in candidates:
                stuff_to_add.extend(range(entry.begin, entry.end))
            new_max_offset = max(stuff_to_add[-1], max_offset + 1)
            acked.extend(stuff_to_add)
            gap_for_tp.chop(0, new_max_offset)
    acked.sort()
    committed = self._committed_offset[tp]
    if committed is None:  # none yet, or forgotten at a revocation: where the run must start
        committed = getattr(self, "_commit_floor", {}).get(tp)
    if committed is not None and min(acked) > committed:
        return None  # the next offset to commit over is not acked (in flight, or lost)
    batch = next(consecutive_numbers(acked))
    ceiling = _ceilings(self).get(tp)
    if ceiling is not None and batch[-1] >= ceiling:  # 6.: not in the durable state yet
        batch = [o for o in batch if o < ceiling]
        if not batch:
            return None
    acked[: len(batch)] = []
    self._acked_index[tp].difference_update(batch)
    floor = getattr(self, "_commit_floor", None)
    if floor is not None:  # the next run starts here, also after a revocation forgot it
        floor[tp] = batch[-1] + 1
    return batch[-1] + 1


async def _perform_seek(self: Any) -> None:
    """faust 0.15.3 ``Consumer.perform_seek``, taking the broker's committed offset as the
    truth for every partition sought, also one without a commit (see the module docstring,
    4.), forgetting the acks counted before the seek, and keeping each partition's commit
    floor: the offset reading starts from (5.)."""
    from faust.types import TP

    committed = await self.seek_to_committed()
    floor: dict[Any, int] = {}
    unset = []
    for atp, offset in committed.items():
        tp = TP(atp.topic, atp.partition)
        self._read_offset[tp] = offset if offset is not None and offset >= 0 else None
        self._committed_offset[tp] = offset if offset else None  # upstream's: 0 is None
        self._acked.pop(tp, None)
        self._acked_index.pop(tp, None)
        self._gap.pop(tp, None)
        if offset is not None and offset >= 0:
            floor[tp] = offset
        else:
            unset.append(tp)
    if unset:  # read from their first record (auto_offset_reset earliest): that is the floor
        earliest = await self.earliest_offsets(*unset)
        for atp, offset in earliest.items():
            floor[TP(atp.topic, atp.partition)] = offset
    # 7.: aiokafka moved only the partitions committed past 0; put the others at their floor
    changelogs = _changelog_topics(self)
    for atp, offset in committed.items():
        tp = TP(atp.topic, atp.partition)
        if not (offset and offset > 0) and tp in floor and tp.topic not in changelogs:
            await self._seek(atp, floor[tp])
    self._commit_floor = floor
    self._commit_ceiling = {}  # 6.: read again from the committed offset, all durable


def _changelog_topics(consumer: Any) -> set[str]:
    """The tables' changelog topics: their positions are Faust's recovery's, not the seek's."""
    tables = getattr(getattr(consumer, "app", None), "tables", None)
    return set(getattr(tables, "changelog_topics", ()) or ())


def _ceilings(consumer: Any) -> dict[Any, int]:
    """TP -> the first offset whose state is not durable (patch 6); created on first use."""
    ceilings = getattr(consumer, "_commit_ceiling", None)
    if ceilings is None:
        ceilings = consumer._commit_ceiling = {}
    return ceilings


def set_commit_ceiling(consumer: Any, topic: str, partition: int, offset: int | None) -> None:
    """Commit ``topic[partition]`` no further than ``offset`` (the first record whose
    state is not durable yet); None lifts it (everything processed is durable)."""
    from faust.types import TP

    if offset is None:
        _ceilings(consumer).pop(TP(topic, partition), None)
    else:  # the first undurable one stays
        _ceilings(consumer).setdefault(TP(topic, partition), offset)


def commit_ceiling(consumer: Any, topic: str, partition: int) -> int | None:
    """The offset ``topic[partition]``'s commit is held at (None: not held)."""
    from faust.types import TP

    return _ceilings(consumer).get(TP(topic, partition))


#: how long a revocation waits for in-flight messages to be acked (see the module doc, 3.)
WAIT_EMPTY_S = 10.0


async def _wait_empty_bounded(self: Any) -> None:
    """faust 0.15.3 ``Consumer.wait_empty`` with a deadline (see the module docstring)."""
    import gc
    import time

    deadline = time.monotonic() + WAIT_EMPTY_S
    while not self.should_stop and self._unacked_messages:
        await self.commit()
        if not self._unacked_messages:
            break
        await self._wait_for_ack(timeout=1)
        self._clean_unacked_messages()
        if self._unacked_messages and time.monotonic() > deadline:
            gc.collect()
            self._clean_unacked_messages()
            left = len(self._unacked_messages)
            if left:
                log.warning("rebalance: %d messages still unacked after %.0fs; not committed, "
                            "so their partitions' next owners read them again", left,
                            WAIT_EMPTY_S)
            break
    await self.commit_and_end_transactions()
