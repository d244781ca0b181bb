"""MQTT → Kafka bridge: at-least-once, batched, with backpressure.

The delivery contract: an MQTT QoS 1 message is acknowledged (PUBACK) only after Kafka has
acknowledged the record holding its readings or its dead letter. The broker keeps our
persistent session (fixed client id, clean_session=False), so a crash anywhere between
receive and produce means the broker redelivers: duplicates are possible, loss is not.

Threads: paho's network loop runs in its own thread and only appends to a queue; one
asyncio task drains the queue (``linger`` when idle, at most ``ingest_drain_bytes`` a step)
into per-(topic, partition) Kafka records, waits for Kafka's acks, then PUBACKs in arrival
order; the next step is normalised while the previous one waits for its acks. A semaphore bounds the messages
received but not yet acked; when it is exhausted the paho thread blocks, stops reading its
socket, and TCP pushes back on the broker.

A PUBACK names a packet id that is only meaningful on the connection that delivered the
message: after a reconnect the broker redelivers everything unacked (possibly under other
ids) and reuses ids for new messages. So every message carries the connection generation it
arrived on, and one from an older connection is never acked. It is still *forwarded*:
duplicates are harmless by design (InfluxDB upserts a point with the same series and time),
while counting on the redelivery is not safe: a broker that crashed without its session
store (or restored an older save) redelivers nothing, and dropping the message then loses it.

Reconnects: the subscription is sent on every connect, because a broker that lost our
session also lost the subscription. A connect that finds no session ("session present:
False") after a previous connection means the broker forgot our queue: whatever it held
for us is gone. That is logged as possible loss, counted
(``urbanbrain_mqtt_sessions_lost_total``) and raises the pipeline's IngestSessionLost alert
(rules/pipeline/pipeline.yaml).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import orjson
import paho.mqtt.client as mqtt

from urbanbrain.health import HealthServer, KafkaProbe
from urbanbrain.observability import Metrics, gc_metrics, writer_metrics
from urbanbrain.mqtt import apply_security
from urbanbrain.ingest.buffered_client import BufferedClient
from urbanbrain.ingest.normalise import DeadLetter, Normaliser
from urbanbrain.ingest.rejects import Reason
from urbanbrain.ingest.topics import TopicMapper
from urbanbrain.kafka import DEADLETTER_TOPIC, client_options, ensure_topics, readings_topic
from urbanbrain.reading import Partitioner, Reading, encode_batch
from urbanbrain.registry import Registry
from urbanbrain.retention import write_routed
from urbanbrain.settings import Settings

log = logging.getLogger(__name__)
_DUPLICATE = Reason.DUPLICATE.value


@dataclass
class BridgeStats:
    received: int = 0
    readings: int = 0
    dead_letters: int = 0
    records: int = 0
    acked: int = 0
    redelivered: int = 0  # broker redeliveries of messages already forwarded (not dead-lettered)
    stale: int = 0  # messages of a dead connection: forwarded, never acked (possible duplicates)
    connects: int = 0  # successful MQTT connects (CONNACK accepted)
    sessions_lost: int = 0  # reconnects on which the broker had no session for us
    session_present: bool = False  # the last CONNACK's flag
    reasons: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)


class _Message:
    __slots__ = ("topic", "payload", "mid", "qos", "received_ms", "gen", "dup")

    def __init__(self, topic: str, payload: bytes, mid: int, qos: int, received_ms: int,
                 gen: int = 0, dup: bool = False):
        self.topic = topic
        self.payload = payload
        self.mid = mid
        self.qos = qos
        self.received_ms = received_ms
        self.gen = gen  # connection generation: mids are only valid on that connection
        self.dup = dup  # the broker's redelivery of a message it sent us before


class _MemoTopicMapper(TopicMapper):
    """A TopicMapper that remembers each topic's tags.

    A city's topics repeat with every reading (one per sensor or gateway), and matching the
    patterns was ~20% of the asyncio thread's time in bench/bench_ingest.py. The tag dicts
    are shared, so callers must not mutate them (the normaliser only reads). Bounded: the
    memo is dropped whole when full (cheap, and a bad topic flood cannot grow it).
    """

    def __init__(self, inner: TopicMapper, max_topics: int = 500_000) -> None:
        self.patterns = inner.patterns
        self.ignore = inner.ignore
        self._inner = inner
        self._memo: dict[str, dict[str, str] | None] = {}
        self._max = max_topics

    def tags(self, topic: str) -> dict[str, str] | None:
        try:
            return self._memo[topic]
        except KeyError:
            pass
        tags = self._inner.tags(topic)
        if len(self._memo) >= self._max:
            self._memo.clear()
        self._memo[topic] = tags
        return tags

    def subscriptions(self) -> list[str]:
        return self._inner.subscriptions()


class IngestBridge:
    def __init__(
        self,
        settings: Settings,
        registry: Registry | None = None,
        mapper: TopicMapper | None = None,
    ) -> None:
        self.settings = settings
        self.mapper = _MemoTopicMapper(mapper or TopicMapper())
        self.normaliser = Normaliser(settings, registry or Registry(), self.mapper)
        self.profile_watcher = _profile_watcher(settings)  # device profiles, hot reloaded
        if self.profile_watcher is not None:
            self.normaliser.profiles = self.profile_watcher.profiles
        self.partitioner = Partitioner(settings.kafka_partitions)
        self.stats = BridgeStats()
        self._queue: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._inflight = threading.BoundedSemaphore(settings.ingest_max_inflight)
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._kafka_ready = False
        # Connection generation, bumped on every connect and disconnect; only messages of the
        # live generation are acked. The lock makes "check generation, send PUBACK" atomic
        # with respect to the paho thread's connect/disconnect callbacks.
        self._gen = 0
        self._ack_lock = threading.Lock()
        self._stop = asyncio.Event()
        self._client = self._make_client()
        self.kafka_probe: KafkaProbe | None = None
        self._writer = None  # the self-monitoring writer, once _report_loop made it
        self.metrics = self._make_metrics()

    def _make_metrics(self) -> Metrics:
        """What /metrics shows and the pipeline rules watch; read from ``self.stats``."""
        m, st = Metrics(stage="ingest"), self.stats
        m.counter("mqtt_messages_received", "MQTT messages forwarded to Kafka (readings or "
                  "dead letters) and acknowledged", lambda: st.received)
        m.counter("readings_in", "readings decoded from MQTT messages",
                  lambda: st.readings + st.dead_letters)
        m.counter("readings_out", "readings handed to Kafka (readings.<domain>)",
                  lambda: st.readings)
        m.counter("dead_letters", "messages or readings refused, by reason",
                  lambda: {(r,): n for r, n in st.reasons.items()}, labels=("reason",))
        m.counter("kafka_records_sent", "Kafka records (batches) acknowledged",
                  lambda: st.records)
        m.gauge("mqtt_connected", "1 while the MQTT connection is up",
                lambda: float(self._connected.is_set()))
        m.gauge("mqtt_subscribed", "1 once the subscription of this connection is granted",
                lambda: float(self._subscribed.is_set()))
        m.gauge("mqtt_session_present", "the last CONNACK's session-present flag",
                lambda: float(st.session_present))
        m.counter("mqtt_connects", "MQTT connections accepted", lambda: st.connects)
        m.counter("mqtt_sessions_lost", "reconnects on which the broker had lost our "
                  "session (its queue for us is gone: possible loss)", lambda: st.sessions_lost)
        m.counter("mqtt_stale_forwarded", "messages of a dead connection forwarded unacked "
                  "(the broker may redeliver: duplicates)", lambda: st.stale)
        m.counter("mqtt_redelivered", "broker redeliveries of readings already in Kafka",
                  lambda: st.redelivered)
        m.gauge("mqtt_puback_backlog", "QoS 1 messages received and not yet acknowledged "
                "(waiting for Kafka)",
                lambda: self.settings.ingest_max_inflight - self._inflight._value)
        m.gauge("kafka_reachable", "1 while a Kafka metadata request succeeds",
                lambda: None if self.kafka_probe is None else float(bool(self.kafka_probe.ok)))
        writer_metrics(m, lambda: self._writer.stats)  # type: ignore[union-attr]
        gc_metrics(m)
        return m

    # -- MQTT side (paho thread) -----------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = BufferedClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            clean_session=False,  # the broker queues QoS 1 messages while we are down
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        apply_security(client, s)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(0.1, 2)  # a restarted broker: back within ~2 s
        return client

    def subscriptions(self) -> list[str]:
        subs = self.mapper.subscriptions()
        subs += [t for t in self.normaliser.profiles.subscriptions() if t not in subs]
        group = self.settings.mqtt_shared_group
        return [f"$share/{group}/{s}" for s in subs] if group else subs

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            log.error("MQTT connect refused: %s", reason_code)
            return
        with self._ack_lock:
            self._gen += 1
            self._connected.set()
        st = self.stats
        st.connects += 1
        st.session_present = bool(flags.session_present)
        # Subscribe on every connect: a broker that lost our session lost this too.
        client.subscribe([(s, 1) for s in self.subscriptions()])
        if st.connects > 1 and not flags.session_present:
            st.sessions_lost += 1
            log.warning("MQTT connected (session present: False) on a reconnect: the broker "
                        "lost ingest's session and the messages it queued for it; readings "
                        "published while ingest was disconnected may be lost (lost sessions: "
                        "%d)", st.sessions_lost)
        else:
            log.info("MQTT connected (session present: %s)", flags.session_present)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # noqa: ANN001
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("MQTT subscription refused: %s", failed)
        else:
            self._subscribed.set()
            log.info("MQTT subscribed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        with self._ack_lock:
            self._gen += 1
            self._connected.clear()
            self._subscribed.clear()
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); paho reconnects", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # noqa: ANN001
        # Blocks the paho thread when too much is in flight: that is the backpressure.
        self._inflight.acquire()
        self._queue.put(
            _Message(msg.topic, msg.payload, msg.mid, msg.qos, int(time.time() * 1000),
                     self._gen, msg.dup)
        )

    # -- Kafka side (asyncio) ------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        from aiokafka import AIOKafkaProducer

        if stop is not None:
            self._stop = stop
        await ensure_topics(self.settings)
        producer = AIOKafkaProducer(
            **client_options(self.settings),
            acks="all",
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=8 * 1024 * 1024,
            request_timeout_ms=30_000,
        )
        await producer.start()
        self._kafka_ready = True
        s = self.settings
        health = await self._serve_health()
        watch = await self._watch_pipeline(producer)
        self._client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=30)
        self._client.loop_start()
        linger = s.ingest_linger_ms / 1000
        reporter = asyncio.create_task(self._report_loop())
        # Two batches in flight: while Kafka acknowledges batch k, batch k+1 is normalised
        # and sent. MQTT acks still go out in arrival order (batch k's before k+1's).
        previous: asyncio.Future | None = None
        try:
            while not self._stop.is_set():
                batch = self._drain(max_bytes=s.ingest_drain_bytes)
                if batch:
                    sent = await self._send(producer, batch)
                    if previous is not None:
                        await previous
                    previous = asyncio.ensure_future(self._complete(*sent))
                else:
                    if previous is not None:
                        await previous
                        previous = None
                        continue
                    try:
                        await asyncio.wait_for(self._stop.wait(), timeout=linger)
                    except asyncio.TimeoutError:
                        pass
            if previous is not None:
                await previous
        finally:
            reporter.cancel()
            if watch is not None:
                await watch[0].stop()
                await watch[1].stop()
            if health is not None:
                await health.stop()
            if self.kafka_probe is not None:
                await self.kafka_probe.stop()
            self._client.disconnect()
            self._client.loop_stop()
            await producer.stop()

    async def _serve_health(self) -> HealthServer | None:
        """/livez, /readyz (MQTT connected and subscribed, Kafka producer up and the cluster
        answering), /healthz, /metrics."""
        s = self.settings
        if s.metrics_port is None:
            return None
        self.kafka_probe = KafkaProbe(client_options(s)).start()
        health = HealthServer(s.metrics_host, s.metrics_port, {
            "mqtt_connected": lambda: (self._connected.is_set(), s.mqtt_url),
            "mqtt_subscribed": lambda: (self._subscribed.is_set(),
                                        ", ".join(self.subscriptions())),
            "kafka_producer": lambda: (self._kafka_ready, s.kafka_bootstrap),
            "kafka_reachable": self.kafka_probe.check,
        })
        health.register_metrics(self.metrics)
        return await health.start()

    async def _watch_pipeline(self, producer) -> tuple | None:  # noqa: ANN001
        """The pipeline rules over this process's metrics (IngestSessionLost, ...), their
        alerts delivered like the city's: Kafka ``alerts`` (through our producer), MQTT
        ``city/alerts/pipeline/...`` and the webhooks. None when there are no rules."""
        from urbanbrain.kafka import ALERTS_TOPIC
        from urbanbrain.rules.pipeline_watch import PipelineSettings, ProducerTopic, load_watch
        from urbanbrain.streams.alerting_outputs import AlertOutputs

        outputs = AlertOutputs(self.settings, None, ProducerTopic(producer, ALERTS_TOPIC),
                               webhook_urls=PipelineSettings().webhooks())
        watch = load_watch(self.metrics, "ingest", self.settings.mqtt_client_id, outputs.emit)
        if watch is None:
            return None
        await outputs.start()
        watch.register_metrics(self.metrics)
        return watch.start(), outputs

    def _registry_mtime(self) -> float | None:
        path = self.settings.registry_path
        try:
            return path.stat().st_mtime if path else None
        except OSError:
            return None

    async def _report_loop(self, every_s: float = 5.0) -> None:
        """Log progress and write self-monitoring points (best effort, never blocks ingest)."""
        from urbanbrain.influx import InfluxError, InfluxWriter
        from urbanbrain.lineprotocol import line

        writer = self._writer = InfluxWriter(self.settings, max_backoff_s=every_s)
        last_received, last_t = 0, time.monotonic()
        from urbanbrain.dashboards.registry_points import registry_points

        reg_mtime = self._registry_mtime()
        # The sensors' coordinates go to InfluxDB (`sensors`) for the city map, at start
        # and after every reload of the registry.
        registry_dirty = bool(self.normaliser.registry)
        try:
            while True:
                await asyncio.sleep(every_s)
                self._reload_profiles()
                mtime = self._registry_mtime()
                if mtime != reg_mtime:
                    reg_mtime = mtime
                    try:
                        self.normaliser.registry = load_registry(self.settings)
                        registry_dirty = bool(self.normaliser.registry)
                        log.info("registry reloaded: %d sensors", len(self.normaliser.registry))
                    except (OSError, ValueError) as exc:
                        log.error("registry reload failed, keeping the old one: %s", exc)
                st, now = self.stats, time.monotonic()
                rate = (st.received - last_received) / (now - last_t)
                last_received, last_t = st.received, now
                log.info(
                    "ingest: %d messages (%.0f/s), %d readings, %d dead letters %s, "
                    "%d stale, %d redelivered",
                    st.received, rate, st.readings, st.dead_letters, dict(st.reasons), st.stale,
                    st.redelivered,
                )
                ts = int(time.time() * 1000)
                fields = {
                    "messages_total": st.received, "messages_per_s": rate,
                    "readings_total": st.readings, "dead_letters_total": st.dead_letters,
                    "kafka_records_total": st.records,
                    "inflight": self.settings.ingest_max_inflight - self._inflight._value,
                }
                points = [line("pipeline", {"stage": "ingest", "client": self.settings.mqtt_client_id},
                               fields, ts)]
                points += [
                    line("deadletters", {"stage": "ingest", "reason": reason},
                         {"count_total": n}, ts)
                    for reason, n in st.reasons.items()
                ]
                sent_registry = registry_dirty
                if registry_dirty:
                    points += registry_points(self.normaliser.registry.values(), ts)
                try:
                    # pipeline, deadletters, sensors: each to its retention policy
                    await asyncio.wait_for(write_routed(writer, points), timeout=every_s)
                    if sent_registry:
                        registry_dirty = False
                except asyncio.TimeoutError:
                    log.warning("pipeline metrics not written: InfluxDB slow or down")
                except InfluxError as exc:  # 401/403: counted by the writer, said here
                    log.error("pipeline metrics not written: %s", exc)
        finally:
            await writer.close()

    def _reload_profiles(self) -> None:
        """Swap in changed device profiles (a broken set is logged and the old one kept)
        and subscribe to topics new profiles claim."""
        w = self.profile_watcher
        if w is None:
            return
        reloaded, error = w.poll()
        if error is not None:
            log.error("device profiles not reloaded, keeping the old ones:\n%s", error)
        if not reloaded:
            return
        before = set(self.subscriptions())
        self.normaliser.profiles = w.profiles
        log.info("device profiles reloaded: %d profiles", len(w.profiles))
        new = [s for s in self.subscriptions() if s not in before]
        if new and self._connected.is_set():
            self._client.subscribe([(s, 1) for s in new])

    def _drain(self, limit: int = 20_000, max_bytes: int = 1 << 20) -> list[_Message]:
        """What is queued, up to ``limit`` messages or ``max_bytes`` of payload. Bounded so
        a backlog flows through in steady steps: one huge gulp would keep Kafka (and the
        workers behind it) idle while it is normalised, then flood them."""
        out: list[_Message] = []
        get = self._queue.get_nowait
        size = 0
        try:
            while len(out) < limit and size < max_bytes:
                m = get()
                out.append(m)
                size += len(m.payload)
        except queue.Empty:
            pass
        return out

    async def _send(self, producer, batch: list[_Message]  # noqa: ANN001
                    ) -> tuple[list[_Message], list, int, int]:
        """Normalise ``batch`` and hand its records to the producer; returns what
        :meth:`_complete` needs to wait for Kafka and then acknowledge MQTT."""
        if not batch:
            return batch, [], 0, 0
        by_part: dict[tuple[str, int], list[Reading]] = defaultdict(list)
        dead: list[DeadLetter] = []
        process = self.normaliser.process
        part = self.partitioner
        for m in batch:
            readings, rejects = process(m.topic, m.payload, m.received_ms)
            for r in readings:
                by_part[(r["domain"], part(r["sensor_id"]))].append(r)
            if rejects:
                if m.dup and not readings and rejects[0]["reason"] == _DUPLICATE:
                    # The broker resending what we forwarded but could not ack (reconnect):
                    # its readings are in Kafka already; that is no device's fault.
                    self.stats.redelivered += 1
                    continue
                dead.extend(rejects)
        futures = []
        max_n = self.settings.ingest_batch_max
        n_readings = 0
        for (domain, partition), readings in by_part.items():
            n_readings += len(readings)
            for i in range(0, len(readings), max_n):
                chunk = readings[i : i + max_n]
                futures.append(
                    await producer.send(
                        readings_topic(domain), encode_batch(chunk), partition=partition
                    )
                )
        for d in dead:
            key = (d.get("sensor_id") or d["topic"]).encode("utf-8", "replace")
            futures.append(await producer.send(DEADLETTER_TOPIC, orjson.dumps(d), key=key))
            self.stats.reasons[d["reason"]] += 1
        return batch, futures, n_readings, len(dead)

    async def _complete(self, batch: list[_Message], futures: list, n_readings: int,
                        n_dead: int) -> None:
        if not batch:
            return
        # Kafka acknowledged everything (or this raises and nothing is acked: redelivery).
        await asyncio.gather(*futures)
        ack = self._client.ack
        stale = 0
        with self._ack_lock:
            gen = self._gen if self._connected.is_set() else -1
            pubacks: list[int] = []
            for m in batch:
                if m.qos > 0:
                    if m.gen != gen:
                        # Forwarded, not acked: its mid belongs to a dead connection. If the
                        # broker kept the session it redelivers (a duplicate downstream).
                        stale += 1
                    elif m.qos == 1:
                        pubacks.append(m.mid)
                    else:
                        ack(m.mid, m.qos)
            if pubacks:  # in arrival order, in one write (ingest/buffered_client.py)
                self._client.puback_many(pubacks)
        for _ in batch:
            self._inflight.release()
        if stale:
            self.stats.stale += stale
            log.info("forwarded %d messages of a previous MQTT connection (not acked: the "
                     "broker may redeliver them as duplicates)", stale)
        st = self.stats
        st.received += len(batch)
        st.readings += n_readings
        st.dead_letters += n_dead
        st.records += len(futures)
        st.acked += len(batch)


def _profile_watcher(settings: Settings):  # noqa: ANN202 - avoids importing at module load
    """The device profiles of ``URBANBRAIN_INGEST_PROFILES_PATH`` (None: none configured).
    Profiles that fail the check stop the bridge at start: better than dead-lettering a
    fleet's data; after start a broken edit keeps the previous profiles."""
    if settings.ingest_profiles_path is None:
        return None
    from urbanbrain.ingest.profiles import ProfileFileError, ProfileWatcher

    try:
        return ProfileWatcher(str(settings.ingest_profiles_path))
    except ProfileFileError as exc:
        raise SystemExit(f"device profiles {settings.ingest_profiles_path}:\n{exc}") from None


def load_registry(settings: Settings) -> Registry:
    """The configured registry, or an empty one (with a warning) while the file is missing."""
    path = settings.registry_path
    if path is None:
        return Registry()
    if not path.exists():
        log.warning("registry %s does not exist (yet): starting without one; "
                    "it is loaded as soon as it appears", path)
        return Registry()
    return Registry.load(path)


def run_bridge(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM (the ``urbanbrain ingest`` command)."""
    registry = load_registry(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        bridge = IngestBridge(settings, registry)
        log.info(
            "ingest: %s → %s, %d registered sensors, subscriptions %s",
            settings.mqtt_url, settings.kafka_bootstrap, len(registry), bridge.subscriptions(),
        )
        await bridge.run(stop)

    asyncio.run(main())
