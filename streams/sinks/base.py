"""Destinations of a batch: one batching base, an InfluxDB sink and a Kafka sink.

Why one base: every destination of a readings batch follows the same durability order
(streams/worker.py): gather while the stages run, *start* writing as soon as the part is
complete (requests in flight while the worker computes the rest), *finish* before anything
that says the batch is done (window marks, rule state, Faust's acknowledgement), and hand
what the destination refused to the dead-letter topic. Written once here, the worker reads
as the flow it is: raw → stages → windows, hours, aggregates, partials → done.

In the spirit of Quix Streams' ``BatchingSink``: ``add`` collects, ``write`` is the one
method a destination implements.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from urbanbrain.influx import InfluxWriter

T = TypeVar("T")

#: (what was refused, as text, why): the shape of a dead letter's payload and reason
Refused = list[tuple[str, str]]


class BatchingSink(Generic[T]):
    """Items of one batch for one destination; at most one write in flight."""

    name = "sink"

    def __init__(self) -> None:
        self._items: list[T] = []
        self._inflight: asyncio.Future[Refused] | None = None
        #: items written since the process started (for /metrics and the bench)
        self.written = 0
        #: when the last write that succeeded completed (epoch ms): the moment its items
        #: were stored, which a batch's later stages must not be counted into
        self.finished_ms: int | None = None

    def add(self, items: Iterable[T]) -> None:
        self._items.extend(items)

    def start(self) -> None:
        """Begin writing what was added (in the background); nothing to do when empty."""
        if not self._items:
            return
        if self._inflight is not None:
            raise RuntimeError(f"{self.name}: start() twice before done()")
        batch, self._items = self._items, []
        self.written += len(batch)
        self.finished_ms = None
        self._inflight = asyncio.ensure_future(self.write(batch))
        self._inflight.add_done_callback(self._finished)

    def _finished(self, fut: asyncio.Future[Refused]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.finished_ms = int(time.time() * 1000)

    async def done(self) -> Refused:
        """Wait for the write in flight, write what was added since, and return what the
        destination refused."""
        refused: Refused = []
        for _ in range(2):
            if self._inflight is None:
                self.start()
            fut, self._inflight = self._inflight, None
            if fut is not None:
                refused += await fut
        return refused

    def discard(self) -> None:
        """Forget what a failed batch left here: its records are not acknowledged, so they
        come again and produce it again."""
        if self._inflight is not None:
            self._inflight.cancel()
        self._inflight, self._items, self.finished_ms = None, [], None

    async def write(self, batch: list[T]) -> Refused:
        raise NotImplementedError


class InfluxSink(BatchingSink[str]):
    """Line protocol to one retention policy (urbanbrain/retention.py). The writer chunks,
    retries while InfluxDB is away and reports the lines it refused."""

    def __init__(self, writer: InfluxWriter, rp: str) -> None:
        super().__init__()
        self.writer, self.rp, self.name = writer, rp, f"influx:{rp}"

    async def write(self, batch: list[str]) -> Refused:
        return await self.writer.write(batch, rp=self.rp)


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record: ``partition`` None lets the producer pick from the key."""

    value: bytes
    key: bytes | None = None
    partition: int | None = None


class KafkaSink(BatchingSink[Record]):
    """Records to one topic through Faust's producer. ``send`` only buffers; durability
    comes from ``flush_durably`` after ``done()`` (streams/state.py). Kafka refuses
    nothing here: a failing broker raises, and the batch is not acknowledged."""

    def __init__(self, topic: Any, name: str) -> None:
        super().__init__()
        self.topic, self.name = topic, f"kafka:{name}"

    async def write(self, batch: list[Record]) -> Refused:
        send = self.topic.send
        for r in batch:
            await send(key=r.key, value=r.value, partition=r.partition)
        return []


def chunked(values: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """``values`` in runs of at most ``size`` (records stay far below Kafka's 1 MB)."""
    return (values[i:i + size] for i in range(0, len(values), size))
