"""The Faust app: the stream topology of the urban brain, readable at a glance.

    readings.{traffic,environment,water,power} ──▶ process_readings (StreamsWorker)
        ├─ raw readings ──▶ InfluxDB <domain>           (refused lines, late ──▶ readings.deadletter)
        ├─ windows per source partition (1-min panes, 5-min hops, allowed lateness;
        │  table ``window-state``) ──▶ InfluxDB agg_sensor_1m/_5m, traffic_index, aqi,
        │  water_index, power_index; Kafka ``aggregates``;
        │  <app id>-rollup-partials ──▶ rollup (table ``rollup-state``) ──▶ district_1m, city_1m
        │  hours folded from the closed minutes (streams/hourly.py) ──▶ agg_sensor_1h, indices
        │  window=1h, district_1h, city_1h (policy longterm; urbanbrain/retention.py)
        ├─ sensor rules (raw readings + index samples of the closed windows; table
        │  ``alert-state``) ──▶ alerts
        └─ <app id>-alerts-district-readings ──▶ alert_districts (district rules; table
                                                 ``alert-district-state``) ──▶ alerts
    alerts: MQTT city/alerts/..., webhooks, Kafka ``alerts`` ──▶ store_alerts ──▶ InfluxDB alerts
    timers: roll-ups (0.5 s), pipeline report, rule reload, idle partitions

Each Kafka record is a batch of readings of one partition (see DESIGN.md); agents take
several records at a time and store them before Faust acknowledges them, so an InfluxDB
outage turns into consumer lag and never into lost points. What a batch does, and in
which order, is in streams/worker.py; the stages it runs are Faust-free (the backtest
runs them too).
"""

from __future__ import annotations

import logging
import os
import socket
from collections import defaultdict
from typing import Any

import faust
import orjson

from urbanbrain import gctune
from urbanbrain.health import HealthServer
from urbanbrain.influx import InfluxError, InfluxWriter
from urbanbrain.kafka import (
    AGGREGATES_TOPIC,
    ALERTS_TOPIC,
    DEADLETTER_TOPIC,
    READINGS_TOPICS,
    RULES_STATUS_TOPIC,
)
from urbanbrain.registry import Registry
from urbanbrain.settings import Settings

from . import faust_patches
from .alerting import DISTRICT_TOPIC_SUFFIX, Alerting
from .derive import IndexCalculator
from .processor import WindowStage
from .rollup_stage import RollupStage
from .settings import StreamsSettings
from .silence_feed import SilenceFeed
from .state import GenerationFence, TableStore
from .worker import StreamsWorker
from .worker_health import observe_worker

log = logging.getLogger(__name__)


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
        # The check guards a RocksDB file against a changelog that was deleted under it.
        # Our stores are in memory, filled from the changelog by this very process; tansu
        # may answer a standby's highwater query with a value a few records behind what
        # the standby already read (seen in live scoring with a worker SIGKILLed), and the
        # check then crashes a healthy worker.
        "recovery_consistency_check": False,
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


def _load_registry(settings: Settings) -> Registry | None:
    if settings.registry_path is None:
        return None
    try:
        return Registry.load(settings.registry_path)
    except OSError as exc:
        log.warning("registry %s unreadable (%s): road class defaults apply",
                    settings.registry_path, exc)
        return None


def create_app(settings: Settings, *, alerting_only: bool = False) -> faust.App:
    """The worker's app. ``alerting_only``: rules only, in a consumer group of its own
    (no raw storage, no windows): an alerting replica beside the storing workers."""
    faust_patches.apply()
    faust_patches.set_fetch_max_wait(settings.kafka_fetch_max_wait_ms)
    ss = StreamsSettings.from_base(settings)
    app_id = f"{ss.streams_app_id}-alerting" if alerting_only else ss.streams_app_id
    app = faust.App(app_id, **faust_config(ss))
    n = ss.kafka_partitions
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    readings_topic = app.topic(*READINGS_TOPICS, key_type=bytes, value_type=bytes, **raw)
    partials_topic = app.topic(f"{app_id}-rollup-partials", internal=True, partitions=n,
                               key_type=str, value_type=bytes, **raw)
    district_topic = app.topic(f"{app_id}-{DISTRICT_TOPIC_SUFFIX}", internal=True,
                               partitions=n, key_type=bytes, value_type=bytes, **raw)
    alerts_topic = app.topic(ALERTS_TOPIC, **raw)
    topics = {
        "deadletters": app.topic(DEADLETTER_TOPIC, **raw),
        "aggregates": app.topic(AGGREGATES_TOPIC, **raw),
        "partials": partials_topic, "district": district_topic, "alerts": alerts_topic,
        "rules_status": app.topic(RULES_STATUS_TOPIC, **raw),
    }

    def table(name: str) -> TableStore:
        # key str → json, value bytes → raw (Faust picks the serializers from the types)
        return TableStore(app.Table(name, key_type=str, value_type=bytes, partitions=n))

    writer = InfluxWriter(ss, on_config_error=stop_on_config_error)
    windows = None
    if ss.streams_windows and not alerting_only:
        calc = IndexCalculator(_load_registry(ss),
                               default_road_class=ss.streams_default_road_class,
                               nominal_kv=ss.streams_nominal_kv, nominal_hz=ss.streams_nominal_hz,
                               aqi_cn_edition=ss.streams_aqi_cn_edition)
        windows = WindowStage(ss, table("window-state"), calc)
    alerting = Alerting(ss, writer, alerts_topic, sensor_store=table("alert-state"),
                        district_store=table("alert-district-state"))
    app.service(alerting.outputs)  # type: ignore[arg-type]  # an instance is accepted too
    # silences from the console and the CLI (topic alerts.silences), shared by every evaluator
    app.service(SilenceFeed(ss, alerting.silences))  # type: ignore[arg-type]
    rollups = RollupStage(table("rollup-state"), expected_sources=n,
                          grace_s=ss.streams_rollup_grace_s,
                          retention_ms=int(ss.streams_rollup_retention_s * 1000))
    worker_id = f"{socket.gethostname()}-{os.getpid()}"
    worker = StreamsWorker(app, ss, writer=writer, windows=windows, alerting=alerting,
                           rollups=rollups, topics=topics, worker_id=worker_id,
                           store_raw=not alerting_only and ss.streams_raw_points == "worker")
    if ss.streams_raw_points == "own-group" and not alerting_only:
        # not an error: the readings wait in Kafka, and a raw store started later stores
        # them from its group's start; but without one nothing stores them at all
        log.warning("raw points are left to `urbanbrain streams store-raw` (consumer group "
                    "%s-raw, URBANBRAIN_STREAMS_RAW_POINTS=own-group): run one", app_id)
    take = (ss.streams_take_records, ss.streams_take_within_s)
    fence = GenerationFence(app)  # no false `late` from a batch fetched before a rebalance

    @app.agent(readings_topic, name="process_readings")
    async def process_readings(stream: faust.StreamT) -> None:
        async for events in stream.take_events(*take):
            await worker.readings_batch(fence(events))

    @app.agent(district_topic, name="alert_districts")
    async def alert_districts(stream: faust.StreamT) -> None:
        async for events in stream.take_events(*take):
            await worker.district_batch(events)

    @app.agent(alerts_topic, name="store_alerts")
    async def store_alerts(stream: faust.StreamT) -> None:
        async for events in stream.take_events(*take):
            await alerting.store.store([e.value for e in events])

    @app.agent(partials_topic)
    async def rollup(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                part = orjson.loads(event.value)
            except orjson.JSONDecodeError:
                continue
            rollups.add(event.message.partition, part)

    @app.timer(0.5)
    async def write_rollups() -> None:
        await worker.write_rollups(partials_topic.get_topic_name())

    @app.timer(ss.streams_report_interval_s)
    async def report_pipeline() -> None:
        await worker.report()

    @app.timer(alerting.cfg.reload_interval_s)
    async def reload_rules() -> None:
        async with worker.lock:
            await alerting.reload(app)

    @app.timer(max(1.0, alerting.cfg.idle_s / 3))
    async def advance_idle_partitions() -> None:
        await worker.advance_idle()

    @app.timer(ss.streams_fetch_stall_s / 6)
    async def check_fetching() -> None:
        await worker.check_fetching(stall_s=ss.streams_fetch_stall_s)
        await worker.check_commits(stall_s=ss.streams_fetch_stall_s)

    @app.timer(alerting.cfg.status_interval_s)
    async def publish_rule_status() -> None:
        await worker.publish_rule_status()

    @app.on_partitions_assigned.connect
    async def log_assignment(sender: Any, assigned: set, **kwargs: Any) -> None:
        worker.fence.assigned()  # batches of this generation are fenced from here on
        mine: dict[str, list[int]] = defaultdict(list)
        for tp in assigned:
            if tp.topic in READINGS_TOPICS:
                mine[tp.topic].append(tp.partition)
        log.info("ASSIGNMENT %s", orjson.dumps(
            {"worker": worker_id, "partitions": {t: sorted(p) for t, p in sorted(mine.items())}}
        ).decode())

    health = serve_health(app, ss) if ss.metrics_port is not None else None
    observe_worker(app, ss, writer=writer, stats=worker.stats, stage=windows,
                   alerting=alerting, worker_id=worker_id, health=health, fence=fence,
                   worker=worker)
    return app


#: sysexits.h EX_CONFIG, as ``urbanbrain streams worker`` exits when its start check fails
EX_CONFIG = 78


def stop_on_config_error(exc: InfluxError) -> None:
    """InfluxDB refused us while running (a password rotated, a grant revoked): stop with
    one line and EX_CONFIG instead of retrying forever. Nothing unstored was acknowledged,
    so a worker restarted with the right settings re-reads it from Kafka."""
    log.critical("%s; stopping this worker", exc)
    logging.shutdown()
    os._exit(EX_CONFIG)


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


def run_worker(settings: Settings, loglevel: str = "info", *, alerting_only: bool = False) -> None:
    """Start one Faust worker (the ``urbanbrain streams worker`` command)."""
    import asyncio

    from urbanbrain.kafka import ensure_topics

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ensure_topics(settings))
    finally:
        loop.close()
    app = create_app(settings, alerting_only=alerting_only)
    gctune.tune()
    worker = faust.Worker(app, loglevel=loglevel, redirect_stdouts=False)
    worker.execute_from_commandline()
