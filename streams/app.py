"""The Faust app: stream topology of the urban brain, readable at a glance.

    readings.{traffic,environment,water,power} ──▶ store_readings ──▶ InfluxDB <domain>
        │  (refused lines, late readings ──▶ readings.deadletter)
        └─ windows per source partition (1-min panes, 5-min hopping, allowed lateness;
           state: table ``window-state``) ──▶ InfluxDB agg_sensor_1m/_5m, traffic_index, aqi,
           water_index, power_index ──▶ Kafka ``aggregates`` (rules engine)
                                      └──▶ <app id>-rollup-partials ──▶ rollup (table
                                           ``rollup-state``) ──▶ InfluxDB district_1m, city_1m
           hours folded from the closed minutes (streams/hourly.py) ──▶ InfluxDB longterm
           agg_sensor_1h, indices window=1h; their partials ──▶ district_1h, city_1h
    readings.* ──▶ alert_sensors (rules, sensor scope; table ``alert-state``)
               └──▶ <app id>-alerts-district-readings ──▶ alert_districts (district scope)
                    ──▶ alerts: Kafka ``alerts``, InfluxDB ``alerts``, MQTT city/alerts/..., webhooks
    every 5 s (configurable) ──▶ report_pipeline ──▶ InfluxDB pipeline

Each Kafka record is a batch of readings of one partition (see DESIGN.md); agents take
several records at a time and write them to InfluxDB before Faust acknowledges them, so an
InfluxDB outage turns into consumer lag and never into lost points.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import defaultdict
from typing import Any

import faust
import orjson

from urbanbrain import gctune
from urbanbrain.health import HealthServer
from urbanbrain.influx import InfluxError, InfluxWriter
from urbanbrain.latency import LatencyHistogram
from urbanbrain.kafka import AGGREGATES_TOPIC, DEADLETTER_TOPIC, READINGS_TOPICS
from urbanbrain.lineprotocol import ReadingLineEncoder, line
from urbanbrain.reading import encode_batch
from urbanbrain.retention import LONGTERM, PIPELINE, RAW, WINDOWS, write_routed
from urbanbrain.registry import Registry
from urbanbrain.settings import Settings

from . import faust_patches
from .alerting import register_alerting
from .decoded import DecodedBatches
from .derive import IndexCalculator
from .processor import WindowStage
from .rollup_stage import RollupStage, points_to_lines
from .settings import StreamsSettings
from .state import TableStore, flush_durably

log = logging.getLogger(__name__)

AGGREGATES_PER_RECORD = 200


def faust_config(settings: Settings) -> dict:
    """Faust settings derived from ours: broker, security, timeouts, web server."""
    faust_dir = settings.data_dir.resolve() / "faust"
    faust_dir.mkdir(parents=True, exist_ok=True)
    conf: dict = {
        "broker": [f"kafka://{b}" for b in settings.kafka_bootstrap.split(",")],
        "store": "memory://",
        # Faust keeps per-app local data; never litter the working directory with it.
        "datadir": str(faust_dir / "{conf.name}-data"),
        "topic_partitions": settings.kafka_partitions,
        "topic_replication_factor": settings.kafka_replication,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": settings.kafka_session_timeout_s,
        "broker_heartbeat_interval": settings.kafka_heartbeat_interval_s,
        "broker_max_poll_records": 500,
        "stream_buffer_maxsize": 1000,
        "web_enabled": settings.streams_web_port is not None,
        "web_bind": "127.0.0.1",
        "web_host": "127.0.0.1",
        "web_port": settings.streams_web_port or 6066,
        "table_cleanup_interval": 30.0,
        # Table deltas, aggregates and partials go out in bursts per agent batch; aiokafka
        # keeps one produce request in flight per broker, so bigger per-partition batches
        # (default 16 KB) mean fewer round trips for the flush the agent waits on.
        "producer_max_batch_size": 256 * 1024,
        "producer_max_request_size": 4 * 1024 * 1024,
    }
    if settings.kafka_security_protocol != "PLAINTEXT":
        conf["broker_credentials"] = _credentials(settings)
    return conf


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT:
    import ssl

    ctx = None
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(
            cafile=str(settings.kafka_ca_file) if settings.kafka_ca_file else None
        )
    if settings.kafka_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=(
                settings.kafka_sasl_password.get_secret_value()
                if settings.kafka_sasl_password else None
            ),
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=ctx,
        )
    return faust.SSLCredentials(ctx)


class StreamsStats:
    def __init__(self) -> None:
        self.records = 0
        self.readings = 0
        self.refused = 0
        self.bad_records = 0
        self.last_report = time.monotonic()
        self.last_readings = 0
        self.last_points = 0
        self.batch_ms = 0.0
        #: seconds spent per phase of store_readings (cumulative): where a batch's time goes
        self.phase_s: dict[str, float] = defaultdict(float)
        #: event time → InfluxDB acknowledged the raw point
        self.stored_latency = LatencyHistogram()


def _load_registry(settings: Settings) -> Registry | None:
    if settings.registry_path is None:
        return None
    try:
        return Registry.load(settings.registry_path)
    except OSError as exc:
        log.warning("registry %s unreadable (%s): road class defaults apply",
                    settings.registry_path, exc)
        return None


def create_app(settings: Settings) -> faust.App:
    faust_patches.apply()
    ss = StreamsSettings.from_base(settings)
    app = faust.App(ss.streams_app_id, **faust_config(ss))
    readings_topic = app.topic(*READINGS_TOPICS, key_type=bytes, value_type=bytes,
                               value_serializer="raw", key_serializer="raw")
    deadletters = app.topic(DEADLETTER_TOPIC, value_serializer="raw", key_serializer="raw")
    aggregates = app.topic(AGGREGATES_TOPIC, value_serializer="raw", key_serializer="raw")
    partials_topic = app.topic(
        f"{ss.streams_app_id}-rollup-partials", internal=True,
        partitions=ss.kafka_partitions, key_type=str, key_serializer="raw",
        value_type=bytes, value_serializer="raw",
    )
    # key str → json, value bytes → raw (Faust picks the serializers from the types)
    window_table = app.Table("window-state", key_type=str, value_type=bytes,
                             partitions=ss.kafka_partitions)
    rollup_table = app.Table("rollup-state", key_type=str, value_type=bytes,
                             partitions=ss.kafka_partitions)
    writer = InfluxWriter(ss, on_config_error=stop_on_config_error)
    encoder = ReadingLineEncoder()
    stats = StreamsStats()
    calc = IndexCalculator(_load_registry(ss), default_road_class=ss.streams_default_road_class,
                           nominal_kv=ss.streams_nominal_kv, nominal_hz=ss.streams_nominal_hz)
    stage = WindowStage(ss, TableStore(window_table), calc)
    decoded = DecodedBatches(consumers=2)  # store_readings + alert_sensors
    windows_on = ss.streams_windows
    rollups = RollupStage(TableStore(rollup_table), expected_sources=ss.kafka_partitions,
                          grace_s=ss.streams_rollup_grace_s,
                          retention_ms=int(ss.streams_rollup_retention_s * 1000))
    worker_id = f"{socket.gethostname()}-{os.getpid()}"
    app.urbanbrain_stats = stats  # type: ignore[attr-defined]
    app.urbanbrain_stage = stage  # type: ignore[attr-defined]

    @app.on_partitions_assigned.connect
    async def log_assignment(sender: Any, assigned: set, **kwargs: Any) -> None:
        mine: dict[str, list[int]] = defaultdict(list)
        for tp in assigned:
            if tp.topic in READINGS_TOPICS:
                mine[tp.topic].append(tp.partition)
        log.info("ASSIGNMENT %s", orjson.dumps(
            {"worker": worker_id, "partitions": {t: sorted(p) for t, p in sorted(mine.items())}}
        ).decode())

    @app.agent(readings_topic)
    async def store_readings(stream: faust.StreamT) -> None:
        async for events in stream.take_events(ss.streams_take_records,
                                                within=ss.streams_take_within_s):
            t0 = time.perf_counter()
            if stage.generation != app.consumer_generation_id:
                stage.reset(app.consumer_generation_id)
            readings = []
            by_tp: dict[tuple[str, int], list[tuple[int, list]]] = defaultdict(list)
            for event in events:
                msg = event.message
                try:
                    batch = decoded.get(msg.topic, msg.partition, msg.offset, event.value)
                except ValueError as exc:
                    stats.bad_records += 1
                    await deadletters.send(value=orjson.dumps({
                        "topic": msg.topic, "reason": "malformed", "message": str(exc),
                        "payload": None, "payload_b64": None, "received_ms": _now_ms(),
                    }))
                    continue
                readings.extend(batch)
                if windows_on:
                    by_tp[(msg.topic, msg.partition)].append((msg.offset, batch))
            # 1. raw readings: the write runs while the windows are computed (influxd works
            #    on it meanwhile); it is awaited before anything is acknowledged
            lines, bad = encoder.encode(readings)
            t1 = time.perf_counter()
            raw_write = asyncio.ensure_future(writer.write(lines, rp=RAW))
            await asyncio.sleep(0)  # let the request start before the CPU-bound part
            for r, why in bad:
                await deadletters.send(value=_sink_dead_letter(r, why))
            # 2. windows: deltas go to the table first, outputs next, marks/tombstones last
            results = []
            out_lines: list[str] = []
            hour_lines: list[str] = []  # closed hours (streams/hourly.py)
            for (topic, partition), recs in by_tp.items():
                recs.sort(key=lambda x: x[0])
                res = stage.process(topic, partition, recs)
                for r in res.late:
                    await deadletters.send(value=_late_letter(topic, r, ss.streams_lateness_s))
                rendered = stage.render(topic, partition, res)
                out_lines += rendered.lines
                hour_lines += rendered.hourly_lines
                for sensor, why in rendered.refused:
                    await deadletters.send(value=_refused_letter(sensor, why))
                results.append((topic, partition, res, rendered))
            t2 = time.perf_counter()
            window_write = (asyncio.ensure_future(writer.write(out_lines, rp=WINDOWS))
                            if out_lines else None)
            hour_write = (asyncio.ensure_future(writer.write(hour_lines, rp=LONGTERM))
                          if hour_lines else None)
            closed_any = False
            for topic, partition, res, rendered in results:
                recs = rendered.records
                for i in range(0, len(recs), AGGREGATES_PER_RECORD):  # stay far below 1 MB
                    await aggregates.send(value=encode_batch(recs[i:i + AGGREGATES_PER_RECORD]),
                                          partition=partition)
                for p in rendered.partials:
                    await partials_topic.send(key=p["domain"].encode(), value=orjson.dumps(p))
                closed_any = closed_any or bool(res.after_puts or res.deletes)
            # 3. everything durable (Kafka: table deltas, aggregates, partials; InfluxDB: raw
            #    and window points, all in flight together) before the marks say a window
            #    is done, and the marks before Faust acks these events (after this body).
            t3 = time.perf_counter()
            await flush_durably(app)
            t4 = time.perf_counter()
            refused = await raw_write
            stats.stored_latency.observe([r["ts"] for r in readings], _now_ms())
            for text, why in refused:
                await deadletters.send(value=_refused_letter(text, why))
            win_refused = await window_write if window_write is not None else []
            win_refused += await hour_write if hour_write is not None else []
            for text, why in win_refused:
                await deadletters.send(value=_refused_letter(text, why))
            if refused or win_refused:
                await flush_durably(app)  # dead letters of refused lines
            t5 = time.perf_counter()
            for topic, partition, res, _ in results:
                stage.finish(partition, res)
            if closed_any:
                await flush_durably(app)
            stats.records += len(events)
            stats.readings += len(readings)
            stats.refused += len(bad) + len(refused)
            t6 = time.perf_counter()
            stats.batch_ms = (t6 - t0) * 1000
            ph = stats.phase_s
            ph["decode_encode"] += t1 - t0
            ph["windows"] += t2 - t1
            ph["send"] += t3 - t2
            ph["kafka_flush"] += t4 - t3
            ph["influx_wait"] += t5 - t4
            ph["marks"] += t6 - t5

    @app.agent(partials_topic)
    async def rollup(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                part = orjson.loads(event.value)
            except orjson.JSONDecodeError:
                continue
            rollups.add(event.message.partition, part)

    state = {"generation": None}

    @app.timer(0.5)
    async def write_rollups() -> None:
        if app.rebalancing or app.in_recovery:
            return
        if state["generation"] != app.consumer_generation_id:
            rollups.forget()
            state["generation"] = app.consumer_generation_id
        try:
            active = {tp.partition for tp in app.assignor.assigned_actives()
                      if tp.topic == partials_topic.get_topic_name()}
        except Exception:  # noqa: BLE001 - before the first assignment
            return
        due = rollups.due(active)
        if due:
            for text, why in await write_routed(writer, points_to_lines(due)):
                log.warning("roll-up point refused: %s (%s)", text[:200], why)

    @app.timer(ss.streams_report_interval_s)
    async def report_pipeline() -> None:
        now = time.monotonic()
        dt = max(now - stats.last_report, 1e-6)
        rate = (stats.readings - stats.last_readings) / dt
        w = writer.stats
        points_rate = (w.points - stats.last_points) / dt
        stats.last_report, stats.last_readings, stats.last_points = now, stats.readings, w.points
        lat = stats.stored_latency
        points = [line(
            "pipeline",
            {"stage": "streams", "worker": worker_id},
            {
                **lat.fields(), **lat.interval_quantiles(),
                "readings_total": stats.readings, "readings_per_s": rate,
                "records_total": stats.records, "refused_total": stats.refused,
                "points_total": w.points, "points_per_s": points_rate,
                "write_retries_total": w.retries, "write_batch_ms": w.last_batch_ms,
                "agent_batch_ms": stats.batch_ms,
                **{f"agent_{k}_s_total": v for k, v in stats.phase_s.items()},
                "late_total": stage.stats.late, "windows_emitted_total": stage.stats.windows,
                "hours_emitted_total": stage.hourly.stats.hours,
                "partials_total": stage.stats.partials, "open_panes": stage.open_panes,
                "rollups_emitted_total": rollups.stats.emitted,
                "rollup_partials_dropped_total": rollups.stats.dropped_late,
                "lag_records": _lag(app),
            },
            _now_ms(),
        )]
        alerting = getattr(app, "urbanbrain_alerting", None)
        if alerting is not None:
            alat = alerting["outputs"].latency
            points.append(line("pipeline", {"stage": "alerts", "worker": worker_id},
                               {**alat.fields(), **alat.interval_quantiles(),
                                **{f"sent_{k}_total": v
                                   for k, v in alerting["outputs"].sent.items()}},
                               _now_ms()))
        await writer.write(points, rp=PIPELINE)

    register_alerting(app, ss, writer, decoded=decoded)
    if ss.metrics_port is not None:
        serve_health(app, ss)
    return app


def serve_health(app: faust.App, settings: Settings) -> HealthServer:
    """/livez, /readyz (consumer started, not rebalancing or recovering), /healthz."""

    def consumer() -> tuple[bool, str]:
        try:
            parts = len(app.consumer.assignment())
        except Exception:  # noqa: BLE001 - before the consumer exists
            return False, "consumer not started"
        if app.rebalancing:
            return False, "rebalancing"
        if app.in_recovery:
            return False, "recovering tables"
        return True, f"{parts} partitions assigned"

    health = HealthServer(settings.metrics_host, settings.metrics_port or 0,
                          {"kafka_consumer": consumer})

    @app.task
    async def start_health() -> None:
        await health.start()

    return health


#: sysexits.h EX_CONFIG, as ``urbanbrain streams worker`` exits when its start check fails
EX_CONFIG = 78


def stop_on_config_error(exc: InfluxError) -> None:
    """InfluxDB refused us while running (a password rotated, a grant revoked): stop with
    one line and EX_CONFIG instead of retrying forever. Nothing unstored was acknowledged,
    so a worker restarted with the right settings re-reads it from Kafka."""
    log.critical("%s; stopping this worker", exc)
    logging.shutdown()
    os._exit(EX_CONFIG)


def _lag(app: faust.App) -> float | None:
    """Records of the readings topics not yet read by this worker (queue depth)."""
    try:
        consumer = app.consumer
        total = 0
        for tp in consumer.assignment():
            if tp.topic not in READINGS_TOPICS:
                continue
            hw = consumer.highwater(tp)
            read = consumer._read_offset.get(tp)  # noqa: SLF001 - no public accessor
            if hw is not None:
                total += max(0, hw - (read + 1 if read is not None else 0))
        return float(total)
    except Exception:  # noqa: BLE001 - metrics must never break the worker
        return None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _sink_dead_letter(reading: object, why: str) -> bytes:
    return orjson.dumps({
        "topic": "streams", "reason": "sink_refused", "message": why,
        "payload": orjson.dumps(reading, default=str).decode(), "payload_b64": None,
        "received_ms": _now_ms(),
    })


def _refused_letter(text: str, why: str) -> bytes:
    return orjson.dumps({
        "topic": "influxdb", "reason": "sink_refused", "message": why,
        "payload": text, "payload_b64": None, "received_ms": _now_ms(),
    })


def _late_letter(topic: str, reading: object, lateness_s: float) -> bytes:
    return orjson.dumps({
        "topic": topic, "reason": "late",
        "message": f"event time older than its closed window (allowed lateness {lateness_s:g} s)",
        "payload": orjson.dumps(reading, default=str).decode(), "payload_b64": None,
        "received_ms": _now_ms(),
    })


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Start one Faust worker (the ``urbanbrain streams worker`` command)."""
    import asyncio

    from urbanbrain.kafka import ensure_topics

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ensure_topics(settings))
    finally:
        loop.close()
    app = create_app(settings)
    gctune.tune()
    worker = faust.Worker(app, loglevel=loglevel, redirect_stdouts=False)
    worker.execute_from_commandline()
