"""A Faust table used as a durable key/value log with *explicit* changelog partitions.

Why not ``table[key] = value``: Faust picks the changelog partition from the current event,
but an agent batch (``take_events``) holds records of several partitions at once. Writing
to ``table.data`` and sending the changelog entry to the source partition ourselves keeps the
state co-partitioned with its stream, which is what lets the worker that gets the partition
after a rebalance recover exactly that state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
import logging
from typing import Any
import weakref


def compact(value: bytes) -> bytes:
    """An exact-size copy of a value a store keeps.

    ``orjson.dumps`` returns bytes whose allocation is never shrunk to the content: a
    400-byte state entry holds ~8 KB of memory (measured: 8,169 bytes of RSS each, 419 for
    the copy). A table keeps one value per key for as long as the worker runs, so without
    the copy a worker's memory was ~20× its state (bench/bench_state.py)."""
    return bytes(memoryview(value))


#: every live TableStore: :func:`flush_durably` waits for all their changelog writes
_STORES: weakref.WeakSet[TableStore] = weakref.WeakSet()


class TableStore:
    """put/delete/items on a Faust table whose values are raw bytes, keys str.

    Each changelog write's future is kept until :meth:`acked`: that, not an empty producer
    buffer, is what says the write is in Kafka (see :func:`flush_durably`)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.unacked: list[Any] = []  # FutureMessages of changelog writes
        _STORES.add(self)

    def _store(self) -> Any:
        return self.table.data

    def _sent(self, fut: Any) -> None:
        unacked = self.unacked
        unacked.append(fut)
        if len(unacked) >= 50_000:  # written outside any durable cycle: drop what is done
            self.unacked = [f for f in unacked if not f.done()]

    def put(self, partition: int, key: str, value: bytes) -> None:
        value = compact(value)
        store = self._store()
        store[key] = value
        kp = getattr(store, "_key_partition", None)
        if kp is not None:
            kp[key] = partition
        self._sent(self.table.send_changelog(partition, key, value))

    def delete(self, partition: int, key: str) -> None:
        store = self._store()
        store.pop(key, None)
        kp = getattr(store, "_key_partition", None)
        if kp is not None:
            kp.pop(key, None)
        self._sent(self.table.send_changelog(partition, key, None, value_serializer="raw"))

    async def acked(self) -> None:
        """Until Kafka acknowledged every changelog write made so far; raises the error of
        one that failed (the batch is then not acknowledged, and is read again)."""
        while self.unacked:
            futs, self.unacked = self.unacked, []
            await asyncio.gather(*futs)

    def items(self) -> Iterator[tuple[str, bytes]]:
        """A snapshot of (key, value) — safe to iterate while the table changes."""
        return iter(list(self._store().items()))


class DictStore:
    """The same interface over a plain dict (unit tests, benchmarks of the pure parts)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.partitions: dict[str, int] = {}

    def put(self, partition: int, key: str, value: bytes) -> None:
        self.data[key] = compact(value)
        self.partitions[key] = partition

    def delete(self, partition: int, key: str) -> None:
        self.data.pop(key, None)

    def items(self) -> Iterator[tuple[str, bytes]]:
        return iter(list(self.data.items()))


async def flush_durably(app: Any) -> None:
    """Until every record sent so far is acknowledged by Kafka: Faust's producer buffer
    drained, aiokafka's flushed, and every table changelog write's future done.

    Why the futures: table writes go through Faust's ``ProducerBuffer``, whose background
    task takes a message off the queue and only then hands it to aiokafka. With the queue
    empty, a message may still be in that task's hands, in neither buffer; a flush of both
    returned without it, and the next writes (window marks) could reach Kafka before it (a
    rule state write). A worker killed then restarted with marks ahead of its rule state
    (the CI kill test, after the marks were already written last). ``Producer.flush()``
    alone also gives up after a 0.1 s pause in sending (ProducerBuffer.flush_atmost).
    Records sent with ``Topic.send`` are in aiokafka's buffer when that returns, so its
    flush covers them.
    """
    buffer = app.producer.buffer
    while buffer.size:
        await buffer.flush()
    await app.producer.flush()
    for store in tuple(_STORES):
        await store.acked()


class GenerationFence:
    """Drops events fetched under an older consumer-group generation, unprocessed and
    unacknowledged.

    Why: a worker that was hung (SIGSTOP, a long GC, a frozen VM) past its session timeout
    resumes with a batch it fetched before the group moved its partitions to another worker.
    Its window stage notices the new generation and reloads the partition's state from the
    table, which the other worker has since advanced, so those old readings would be judged
    ``late`` against windows that already hold them: false dead letters and pages (issue
    #14). Faust itself skips old-generation messages when it reads them from its queue, but
    not those already in an agent's ``take_events`` buffer.

    Dropping is safe: after a rebalance every assigned partition is sought back to its
    committed offset, so whoever owns the partition now (possibly this worker) reads those
    records again. They must not be *acked* either: an ack of an old offset at or above the
    committed one would let the commit skip past the re-read copy before it is processed.
    So they are marked acked on the message only (``Consumer.wait_empty`` then forgets them)
    without reaching ``Consumer.ack``'s offset bookkeeping.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.dropped = 0

    def __call__(self, events: list) -> list:
        gen = self.app.consumer_generation_id
        live = [e for e in events if e.message.generation_id in (None, gen)]
        if len(live) != len(events):
            stale = [e for e in events if e.message.generation_id not in (None, gen)]
            leave_unacked(stale)
            self.dropped += len(stale)
            logging.getLogger(__name__).info(
                "dropped %d events of consumer generation %s (now %s): the partitions' "
                "current owners re-read them from the committed offsets", len(stale),
                stale[0].message.generation_id, gen)
        return live


def leave_unacked(events: Sequence[Any]) -> None:
    """Let Faust forget events without acknowledging them: marked acked on the message
    only, so ``Consumer.wait_empty`` no longer waits for them and the stream's own ack
    after the batch is a no-op, while ``Consumer.ack``'s offset bookkeeping never sees
    them and the commit stays before them (their partitions' owners read them again)."""
    for e in events:
        e.message.acked = True


class BatchAbandoned(Exception):
    """A rebalance began while a batch was being processed (see :class:`RebalanceFence`)."""


class RebalanceFence:
    """Stops a batch that a rebalance overtook before it writes outputs or state.

    Why: Kafka fences no producer of ours. A worker whose revocation outlasts the session
    timeout (it waits for the batch in hand) is expelled, and the group gives its
    partitions to another worker, which recovers their tables from the changelogs while
    the expelled one is still finishing that batch. The expelled worker then writes its
    rule state and window marks *after* the new owner's: its older view of a sensor
    becomes the newest entry in the changelog, and whoever recovers the partition next
    rebuilds from it. The CI kill test caught one: a sensor's state set back to its first
    live reading, and ``SensorSilent`` fired live at that reading + 10 min, where the
    backtest saw readings every 5 min.

    The batch checks the fence between its runs (a revocation waits for it, so it stops
    early), before it sends anything and before each state write (:meth:`check`,
    synchronous up to the writes). The fence is keyed on *rebalances*,
    not on Faust's ``rebalancing`` flag: a token is the consumer generation and the
    number of rebalances begun when that generation was assigned (``app.rebalancing_count``,
    which aiokafka's listener bumps first thing when a revocation begins). A batch is
    abandoned when a rebalance began after its generation's assignment, or the generation
    moved on: it holds records fetched before the revocation that now runs, and the
    assignment that ends it seeks every partition back to its committed offset, so
    whoever owns a partition then reads those records again. Records fetched after that
    seek are never abandoned: the flag stays set until recovery has ended, after the
    seek, and a fence keyed on it abandoned such records, which no later seek read again
    (stop 27's fault-replay failure).

    An abandoned batch writes nothing more, its records stay unacknowledged (the commit
    stays before them, also on a partition with no commit yet: faust patch 5), and the
    revocation no longer waits for it, which also keeps the worker in the group.
    Abandoning a batch costs a re-read; a worker that writes after its partitions moved
    corrupts state.

    Not covered: a worker frozen (SIGSTOP, a VM pause) between a check and its writes
    reaching Kafka, which no client-side check can see; only a fence kept by the broker
    (transactional producers) would.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.abandoned = 0  # batches abandoned (metric urbanbrain_batches_abandoned_total)
        #: (generation, rebalances begun) when the current generation was assigned
        self._assigned: tuple[Any, int] | None = None

    def _now(self) -> tuple[Any, int]:
        app = self.app
        return app.consumer_generation_id, int(getattr(app, "rebalancing_count", 0))

    def assigned(self) -> None:
        """Call on every assignment (Faust's ``on_partitions_assigned`` signal)."""
        self._assigned = self._now()

    def token(self) -> tuple[Any, int]:
        """What a batch's records belong to: the current generation, and the rebalances
        begun when it was assigned (so a batch that starts while a revocation runs is
        already overtaken)."""
        now = self._now()
        a = self._assigned
        if a is None or a[0] != now[0] or not self.app.rebalancing:
            # no revocation running: the records are the current assignment's (also if
            # an assignment's signal never came, which must not stop every batch after)
            return now
        return a

    def check(self, token: tuple[Any, int], where: str) -> None:
        """Raise :class:`BatchAbandoned` if a rebalance began since ``token``."""
        if self._now() != token:
            raise BatchAbandoned(where)

    def abandon(self, events: Sequence[Any], what: str, where: str) -> None:
        leave_unacked(events)
        self.abandoned += 1
        logging.getLogger(__name__).info(
            "%s abandoned %s: a rebalance began (generation %s)%s", what, where,
            self.app.consumer_generation_id,
            f"; its {len(events)} records are left unacknowledged for the partitions' "
            "owners to read again" if events else "")
