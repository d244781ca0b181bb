"""A Faust table used as a durable key/value log with *explicit* changelog partitions.

Why not ``table[key] = value``: Faust picks the changelog partition from the current event,
but an agent batch (``take_events``) holds records of several partitions at once. Writing
to ``table.data`` and sending the changelog entry to the source partition ourselves keeps the
state co-partitioned with its stream, which is what lets the worker that gets the partition
after a rebalance recover exactly that state.
"""

from __future__ import annotations

from collections.abc import Iterator
import logging
from typing import Any


def compact(value: bytes) -> bytes:
    """An exact-size copy of a value a store keeps.

    ``orjson.dumps`` returns bytes whose allocation is never shrunk to the content: a
    400-byte state entry holds ~8 KB of memory (measured: 8,169 bytes of RSS each, 419 for
    the copy). A table keeps one value per key for as long as the worker runs, so without
    the copy a worker's memory was ~20× its state (bench/bench_state.py)."""
    return bytes(memoryview(value))


class TableStore:
    """put/delete/items on a Faust table whose values are raw bytes, keys str."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def _store(self) -> Any:
        return self.table.data

    def put(self, partition: int, key: str, value: bytes) -> None:
        value = compact(value)
        store = self._store()
        store[key] = value
        kp = getattr(store, "_key_partition", None)
        if kp is not None:
            kp[key] = partition
        self.table.send_changelog(partition, key, value)

    def delete(self, partition: int, key: str) -> None:
        store = self._store()
        store.pop(key, None)
        kp = getattr(store, "_key_partition", None)
        if kp is not None:
            kp.pop(key, None)
        self.table.send_changelog(partition, key, None, value_serializer="raw")

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
    """Drain Faust's producer buffer, then aiokafka's.

    ``Producer.flush()`` gives up on its buffer after a 0.1 s pause in sending (see
    faust.transport.producer.ProducerBuffer.flush_atmost), so under CPU pressure a table
    write could still sit in the buffer when the offsets are committed; a SIGKILL then
    loses window state. Loop until the buffer is really empty.
    """
    buffer = app.producer.buffer
    while buffer.size:
        await buffer.flush()
    await app.producer.flush()


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
            for e in stale:
                e.message.acked = True  # see the class docstring: never Consumer.ack
            self.dropped += len(stale)
            logging.getLogger(__name__).info(
                "dropped %d events of consumer generation %s (now %s): the partitions' "
                "current owners re-read them from the committed offsets", len(stale),
                stale[0].message.generation_id, gen)
        return live
