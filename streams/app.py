"""The Faust app: stream topology of the urban brain, readable at a glance.

    readings.{traffic,environment,water,power} ──▶ store_readings ──▶ InfluxDB <domain>
                                                   (refused lines ──▶ readings.deadletter)
    every 5 s ──▶ report_pipeline ──▶ InfluxDB pipeline

Each Kafka record is a batch of readings of one partition (see DESIGN.md); agents take
several records at a time and write them to InfluxDB before Faust acknowledges them, so an
InfluxDB outage turns into consumer lag and never into lost points.
"""

from __future__ import annotations

import logging
import time

import faust
import orjson

from urbanbrain.influx import InfluxWriter
from urbanbrain.kafka import DEADLETTER_TOPIC, READINGS_TOPICS
from urbanbrain.lineprotocol import ReadingLineEncoder, line
from urbanbrain.reading import decode_batch
from urbanbrain.settings import Settings

log = logging.getLogger(__name__)


def faust_config(settings: Settings) -> dict:
    """Faust settings derived from ours: broker, security, timeouts, web server."""
    conf: dict = {
        "broker": [f"kafka://{b}" for b in settings.kafka_bootstrap.split(",")],
        "store": "memory://",
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


def create_app(settings: Settings) -> faust.App:
    app = faust.App(settings.streams_app_id, **faust_config(settings))
    readings_topic = app.topic(*READINGS_TOPICS, key_type=bytes, value_type=bytes,
                               value_serializer="raw", key_serializer="raw")
    deadletters = app.topic(DEADLETTER_TOPIC, value_serializer="raw", key_serializer="raw")
    writer = InfluxWriter(settings)
    encoder = ReadingLineEncoder()
    stats = StreamsStats()
    app.urbanbrain_stats = stats  # type: ignore[attr-defined]

    @app.agent(readings_topic)
    async def store_readings(stream: faust.StreamT) -> None:
        async for values in stream.take(50, within=0.2):
            readings = []
            for value in values:
                try:
                    readings.extend(decode_batch(value))
                except ValueError as exc:
                    stats.bad_records += 1
                    await deadletters.send(value=orjson.dumps({
                        "topic": "readings.*", "reason": "malformed", "message": str(exc),
                        "payload": None, "payload_b64": None, "received_ms": _now_ms(),
                    }))
            lines, bad = encoder.encode(readings)
            refused = await writer.write(lines)
            for r, why in bad:
                await deadletters.send(value=_sink_dead_letter(r, why))
            for text, why in refused:
                await deadletters.send(value=orjson.dumps({
                    "topic": "influxdb", "reason": "sink_refused", "message": why,
                    "payload": text, "payload_b64": None, "received_ms": _now_ms(),
                }))
            stats.records += len(values)
            stats.readings += len(readings)
            stats.refused += len(bad) + len(refused)

    @app.timer(5.0)
    async def report_pipeline() -> None:
        now = time.monotonic()
        rate = (stats.readings - stats.last_readings) / max(now - stats.last_report, 1e-6)
        stats.last_report, stats.last_readings = now, stats.readings
        w = writer.stats
        point = line(
            "pipeline",
            {"stage": "streams", "worker": app.conf.id},
            {
                "readings_total": stats.readings, "readings_per_s": rate,
                "records_total": stats.records, "refused_total": stats.refused,
                "points_total": w.points, "write_retries_total": w.retries,
                "write_batch_ms": w.last_batch_ms,
            },
            _now_ms(),
        )
        await writer.write([point])

    return app


def _now_ms() -> int:
    return int(time.time() * 1000)


def _sink_dead_letter(reading: object, why: str) -> bytes:
    return orjson.dumps({
        "topic": "streams", "reason": "sink_refused", "message": why,
        "payload": orjson.dumps(reading, default=str).decode(), "payload_b64": None,
        "received_ms": _now_ms(),
    })


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Start one Faust worker (the ``urbanbrain streams worker`` command)."""
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, redirect_stdouts=False)
    worker.execute_from_commandline()
