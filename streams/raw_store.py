"""Raw points in a consumer group of their own: ``urbanbrain streams store-raw``.

Why a second group: storing a reading as it arrived needs none of the worker's state, yet
inside the worker it waits for the batch before it (windows, rules, changelogs) to finish.
In a group of its own it runs in its own process, on another core or machine, and scales
with its own partitions: analytics and storage share the load instead of queueing behind
each other (issue #13; docs/SCALING.md). The worker then skips raw points
(``URBANBRAIN_STREAMS_RAW_POINTS=own-group``); both read the same ``readings.*`` records.

Delivery: offsets are committed only after InfluxDB acknowledged the batch's points and
its dead letters are in Kafka, so a crash or a rebalance reads the records again. That is
at-least-once, and a replayed raw point is the same series, timestamp and fields, which
InfluxDB overwrites: nothing doubles. While InfluxDB is away the writer retries and this
loop waits; the lag grows, nothing is skipped.

One batch is in flight while the next is fetched and encoded (the same overlap the worker
gets from its sinks); commits follow the writes in order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from urbanbrain.health import HealthServer, KafkaProbe
from urbanbrain.influx import InfluxWriter
from urbanbrain.kafka import DEADLETTER_TOPIC, READINGS_TOPICS, client_options, ensure_topics
from urbanbrain.latency import LatencyHistogram
from urbanbrain.lineprotocol import ReadingLineEncoder, line
from urbanbrain.observability import Metrics, gc_metrics, writer_metrics
from urbanbrain.reading import decode_batch
from urbanbrain.retention import PIPELINE, RAW

from .settings import StreamsSettings
from .sinks import letters as dead_letters

log = logging.getLogger(__name__)


@dataclass
class RawStoreStats:
    records: int = 0
    readings: int = 0
    points: int = 0
    refused: int = 0  # readings or lines dead-lettered (sink_refused)
    malformed: int = 0  # records that are not a reading batch (the worker dead-letters them)
    commits_lost: int = 0  # commits a rebalance refused (the records come again)
    lag: int = 0  # records in the assigned partitions not yet stored
    stored_latency: LatencyHistogram = field(default_factory=LatencyHistogram)


@dataclass(slots=True)
class _Fetched:
    """One fetch, encoded: what to write, what to dead-letter, what to commit after."""

    lines: list[str]
    letters: list[bytes]
    offsets: dict[Any, int]  # TopicPartition -> next offset to read
    event_ms: list[int]
    records: int
    readings: int


class _Stopped(Exception):
    """A stop arrived while a write was pending."""


def group_id(settings: StreamsSettings) -> str:
    """The consumer group: beside the worker's (``<app id>``), never the same one."""
    return f"{settings.streams_app_id}-raw"


class RawStore:
    """Reads ``readings.*`` and writes each reading as a raw point; nothing else."""

    def __init__(self, settings: StreamsSettings, writer: InfluxWriter | None = None) -> None:
        self.settings = settings
        self.writer = writer or InfluxWriter(settings)
        self.encoder = ReadingLineEncoder()
        self.stats = RawStoreStats()
        self.metrics = self._make_metrics()
        self.kafka_probe: KafkaProbe | None = None
        self._assigned = False
        self._consumer: Any = None
        self._positions: dict[Any, int] = {}
        #: the ``worker`` tag of its ``pipeline`` points, as the streams worker's
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}"

    # -- one fetch -------------------------------------------------------------------------
    def encode(self, fetched: Mapping[Any, Sequence[Any]]) -> _Fetched:
        """Lines and dead letters of one ``getmany`` result, and the offsets to commit
        once they are stored. No I/O (``tests/test_raw_store.py`` calls it directly)."""
        readings: list[Mapping[str, Any]] = []
        letters: list[bytes] = []
        offsets: dict[Any, int] = {}
        records = 0
        for tp, msgs in fetched.items():
            if not msgs:
                continue
            for m in msgs:
                records += 1
                try:
                    readings.extend(decode_batch(m.value))
                except ValueError:
                    # counted, not dead-lettered: the worker reads the same record and
                    # dead-letters it (one letter per bad record, not one per group)
                    self.stats.malformed += 1
            offsets[tp] = msgs[-1].offset + 1
        lines, bad = self.encoder.encode(readings)
        for reading, why in bad:
            letters.append(dead_letters.unencodable(reading, why, source="raw-store"))
        self.stats.refused += len(bad)
        return _Fetched(lines, letters, offsets, [r["ts"] for r in readings], records,
                        len(readings))

    async def store(self, batch: _Fetched, producer: Any) -> None:
        """Write the points, dead-letter what InfluxDB refused, then commit."""
        refused = await self.writer.write(batch.lines, rp=RAW) if batch.lines else []
        stored_ms = _now_ms()
        letters = batch.letters + [dead_letters.refused_line(text, why)
                                   for text, why in refused]
        if letters:
            sent = [await producer.send(DEADLETTER_TOPIC, v) for v in letters]
            await asyncio.gather(*sent)
        st = self.stats
        st.refused += len(refused)
        st.records += batch.records
        st.readings += batch.readings
        st.points += len(batch.lines) - len(refused)
        if batch.event_ms:
            st.stored_latency.observe(batch.event_ms, stored_ms)
        await self._commit(batch.offsets)

    async def _commit(self, offsets: dict[Any, int]) -> None:
        from aiokafka.errors import CommitFailedError, IllegalStateError

        mine = {tp: off for tp, off in offsets.items() if tp in self._consumer.assignment()}
        if not mine:
            return
        try:
            await self._consumer.commit(mine)
        except (CommitFailedError, IllegalStateError) as exc:
            # a rebalance took the partitions: their new owner reads these records again
            # (stored twice = overwritten once), nothing is lost
            self.stats.commits_lost += 1
            log.info("commit refused after a rebalance (%s): the records come again", exc)

    # -- the loop --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        s = self.settings
        await ensure_topics(s)
        consumer = self._consumer = AIOKafkaConsumer(
            *READINGS_TOPICS, **client_options(s), group_id=group_id(s),
            enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=s.kafka_fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024)
        producer = AIOKafkaProducer(**client_options(s), acks="all", linger_ms=5)
        await producer.start()
        await consumer.start()
        await self.writer.start()
        health = await self._serve_health()
        reporter = asyncio.create_task(self._report_loop())
        inflight: asyncio.Task[None] | None = None
        take = s.streams_take_records
        mine: set[Any] = set()
        try:
            while not stop.is_set():
                fetched = await consumer.getmany(timeout_ms=int(s.streams_take_within_s * 1000),
                                                 max_records=take)
                assigned = consumer.assignment()
                if assigned != mine:
                    mine = set(assigned)
                    log.info("raw store assignment: %s", ", ".join(
                        f"{tp.topic}[{tp.partition}]" for tp in sorted(mine)) or "none")
                self._assigned = bool(mine)
                self._note_positions(consumer, fetched)
                if not any(fetched.values()):
                    await self._settle(inflight, stop)
                    inflight = None
                    continue
                batch = self.encode(fetched)  # while the previous batch is being written
                await self._settle(inflight, stop)
                inflight = asyncio.create_task(self.store(batch, producer))
            if inflight is not None:  # stopping: a write that can finish, finishes
                await asyncio.wait({inflight}, timeout=s.influx_timeout_s)
                if not inflight.done():
                    inflight.cancel()
                    log.warning("stopped with a write pending: its records are read again")
                else:
                    inflight.result()
        except _Stopped:
            pass
        finally:
            reporter.cancel()
            if health is not None:
                await health.stop()
            if self.kafka_probe is not None:
                await self.kafka_probe.stop()
            await consumer.stop()
            await producer.stop()
            await self.writer.close()

    @staticmethod
    async def _settle(inflight: asyncio.Task[None] | None, stop: asyncio.Event) -> None:
        """Wait for the previous batch's write and commit (its failure stops the store).
        A stop meanwhile (SIGTERM while InfluxDB is away) cancels it uncommitted: its
        records are read again by whoever owns the partitions next."""
        if inflight is None:
            return
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({inflight, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not inflight.done():
            inflight.cancel()
            log.warning("stopped with a write pending: its records are read again")
            raise _Stopped
        inflight.result()

    # -- what operators see ----------------------------------------------------------------
    def _note_positions(self, consumer: Any, fetched: Mapping[Any, Sequence[Any]]) -> None:
        """Lag = the partitions' high watermarks minus what this store has read of them."""
        pos = self._positions
        for tp, msgs in fetched.items():
            if msgs:
                pos[tp] = msgs[-1].offset + 1
        lag = 0
        for tp in consumer.assignment():
            hw, at = consumer.highwater(tp), pos.get(tp)
            if hw is not None and at is not None:
                lag += max(0, hw - at)
        self.stats.lag = lag

    def _make_metrics(self) -> Metrics:
        m, st = Metrics(stage="raw"), self.stats
        m.counter("raw_records", "readings records stored (Kafka records)", lambda: st.records)
        m.counter("raw_readings", "readings read from readings.*", lambda: st.readings)
        m.counter("raw_points", "raw points InfluxDB acknowledged", lambda: st.points)
        m.counter("raw_refused", "readings or lines dead-lettered sink_refused",
                  lambda: st.refused)
        m.counter("raw_malformed", "records that are not a reading batch (skipped; the worker "
                  "dead-letters them)",
                  lambda: st.malformed)
        m.counter("raw_commits_lost", "commits a rebalance refused (records read again)",
                  lambda: st.commits_lost)
        m.gauge("raw_lag_records", "records of the assigned partitions not yet stored",
                lambda: st.lag)
        writer_metrics(m, lambda: self.writer.stats)
        gc_metrics(m)
        return m

    async def _serve_health(self) -> HealthServer | None:
        s = self.settings
        if s.metrics_port is None:
            return None
        self.kafka_probe = KafkaProbe(client_options(s)).start()
        health = HealthServer(s.metrics_host, s.metrics_port, {
            "partitions_assigned": lambda: (self._assigned, group_id(s)),
            "kafka_reachable": self.kafka_probe.check,
        })
        health.register_metrics(self.metrics)
        return await health.start()

    async def _report_loop(self) -> None:
        """The ``pipeline`` point (stage ``raw``) the dashboards and the bench read: counts
        and the event → stored latency histogram, as the worker writes for stage streams."""
        every = self.settings.streams_report_interval_s
        last, last_t = 0, time.monotonic()
        while True:
            await asyncio.sleep(every)
            st, now = self.stats, time.monotonic()
            rate, last, last_t = (st.readings - last) / (now - last_t), st.readings, now
            lat = st.stored_latency
            fields = {**lat.fields(), **lat.interval_quantiles(),
                      "readings_total": st.readings, "readings_per_s": rate,
                      "records_total": st.records, "refused_total": st.refused,
                      "points_total": st.points, "lag_records": st.lag}
            try:
                await asyncio.wait_for(self.writer.write(
                    [line("pipeline", {"stage": "raw", "worker": self.worker_id}, fields,
                          _now_ms())], rp=PIPELINE), every)
            except Exception as exc:  # noqa: BLE001 - self-monitoring never stops storing
                log.debug("pipeline point not written: %r", exc)


def _now_ms() -> int:
    return int(time.time() * 1000)


def run_raw_store(settings: StreamsSettings) -> None:
    """Run until SIGINT/SIGTERM (the ``urbanbrain streams store-raw`` command)."""
    import signal

    from urbanbrain import gctune

    gctune.tune()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("raw store: %s → %s, group %s", settings.kafka_bootstrap,
                 settings.influx_url, group_id(settings))
        await RawStore(settings).run(stop)

    asyncio.run(main())
