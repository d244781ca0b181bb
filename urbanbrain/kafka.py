"""Kafka topic names, client options from settings, and idempotent topic creation."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from urbanbrain.settings import DOMAINS, Settings

log = logging.getLogger(__name__)

DEADLETTER_TOPIC = "readings.deadletter"
AGGREGATES_TOPIC = "aggregates"
ALERTS_TOPIC = "alerts"
#: Silences (key = silence id, value = ``Silence.to_dict()`` JSON, a tombstone deletes):
#: compacted, so the latest version of every silence is kept for as long as it exists.
#: Written by the operations console and ``urbanbrain alerts silence``; every streams
#: worker reads it from the beginning into the SilenceStore its evaluators share.
SILENCES_TOPIC = "alerts.silences"
#: The operators' audit trail: one JSON record per action (ack, assign, comment, silence,
#: expire, resolve), append-only and kept forever.
AUDIT_TOPIC = "alerts.audit"
#: what every worker's evaluators hold (pending, firing, warming-up keys per rule),
#: key ``<worker>|<source>|<partition>``; ``urbanbrain rules list`` and the console read it
RULES_STATUS_TOPIC = "alerts.rules"
#: Topic settings beyond partitions and replication.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    SILENCES_TOPIC: {"cleanup.policy": "compact"},
    RULES_STATUS_TOPIC: {"cleanup.policy": "compact"},
    AUDIT_TOPIC: {"retention.ms": "-1"},
}


def readings_topic(domain: str) -> str:
    return f"readings.{domain}"


READINGS_TOPICS: tuple[str, ...] = tuple(readings_topic(d) for d in DOMAINS)


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka connection options (bootstrap, TLS, SASL) from settings."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(
            cafile=str(settings.kafka_ca_file) if settings.kafka_ca_file else None
        )
        opts["ssl_context"] = ctx
    if settings.kafka_security_protocol.startswith("SASL"):
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        opts["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        )
    return opts


async def ensure_topics(settings: Settings, *, wait_s: float = 30.0) -> list[str]:
    """Create our topics if missing; returns the ones created. Safe to run concurrently.

    Waits at most ``wait_s`` for the brokers (a compose service may start before Kafka),
    then raises :class:`urbanbrain.errors.Unreachable`: one line, not a traceback."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

    from urbanbrain.errors import Unreachable

    wanted = {t: settings.kafka_partitions for t in READINGS_TOPICS}
    wanted.update({DEADLETTER_TOPIC: 1, AGGREGATES_TOPIC: settings.kafka_partitions, ALERTS_TOPIC: 1,
                   SILENCES_TOPIC: 1, AUDIT_TOPIC: 1, RULES_STATUS_TOPIC: 1})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    attempt = 0
    last: BaseException | None = None
    while True:
        attempt += 1
        admin = AIOKafkaAdminClient(**client_options(settings))
        try:
            # admin.start() may hang on an address that drops packets: bound it too
            await asyncio.wait_for(admin.start(), max(deadline - loop.time(), 2.0))
            existing = set(await admin.list_topics())
            missing = [t for t in wanted if t not in existing]
            if missing:
                try:
                    await admin.create_topics(
                        [
                            NewTopic(t, wanted[t], settings.kafka_replication,
                                     topic_configs=TOPIC_CONFIGS.get(t))
                            for t in missing
                        ]
                    )
                except TopicAlreadyExistsError:
                    pass
            return missing
        except (KafkaConnectionError, asyncio.TimeoutError) as exc:
            last = exc
            if loop.time() >= deadline:
                break
            log.warning("Kafka not reachable (%s); attempt %d, waiting up to %.0f s more",
                        exc or type(exc).__name__, attempt, deadline - loop.time())
            await asyncio.sleep(min(1.0, max(deadline - loop.time(), 0.0)))
        finally:
            await admin.close()
    raise Unreachable("Kafka", settings.kafka_bootstrap,
                      f"no answer within {wait_s:g} s; last: {type(last).__name__}",
                      "start it, or set URBANBRAIN_KAFKA_BOOTSTRAP to a running broker")


class TopicReader:
    """Whole topics read from the beginning, without a consumer group: every partition,
    every record, in offset order per partition.

    Why no group: the readers of ``alerts.silences`` (every streams worker), ``alerts`` and
    ``alerts.audit`` (the console, the CLI) each need *all* records to rebuild their state,
    not a share of them, and nothing to commit. :meth:`catch_up` reads up to the end
    offsets seen at the call (what existed "now"), :meth:`poll` waits for more.
    A topic that does not exist yet is looked up again on every poll, so a reader started
    before ``kafka init`` catches up as soon as it does.
    """

    def __init__(self, settings: Settings, topics: list[str] | tuple[str, ...]) -> None:
        self.settings = settings
        self.topics = tuple(topics)
        self._consumer: Any = None
        self._assigned: set[Any] = set()

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        self._consumer = AIOKafkaConsumer(
            **client_options(self.settings), enable_auto_commit=False,
            auto_offset_reset="earliest", group_id=None)
        try:
            await self._consumer.start()
            await self._assign()
        except BaseException:  # unreachable: close it, or aiokafka complains at exit
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def __aenter__(self) -> TopicReader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _assign(self) -> None:
        from aiokafka import TopicPartition

        cluster = await self._consumer._client.fetch_all_metadata()  # no public API for this
        tps = {TopicPartition(t, p) for t in self.topics
               for p in (cluster.partitions_for_topic(t) or ())}
        new = tps - self._assigned
        if new:
            self._assigned |= new
            self._consumer.assign(sorted(self._assigned))
            await self._consumer.seek_to_beginning(*new)

    async def poll(self, timeout_ms: int = 1000) -> list[Any]:
        """The next records (``ConsumerRecord``: topic, key, value, timestamp, headers),
        waiting up to ``timeout_ms``; [] when none arrived."""
        if len(self._assigned) < len(self.topics):
            await self._assign()
            if not self._assigned:
                await asyncio.sleep(timeout_ms / 1000)
                return []
        batch = await self._consumer.getmany(timeout_ms=timeout_ms)
        out = [r for tp in sorted(batch) for r in batch[tp]]
        return out

    async def catch_up(self, timeout_s: float = 30.0) -> list[Any]:
        """Every record up to the end offsets at the time of the call."""
        if not self._assigned:
            return []
        tps = sorted(self._assigned)
        end = await self._consumer.end_offsets(tps)
        out: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            positions = {tp: await self._consumer.position(tp) for tp in tps}
            if all(positions[tp] >= end[tp] for tp in tps):
                return out
            if loop.time() > deadline:
                raise TimeoutError(f"Kafka topics {', '.join(self.topics)} not read to the "
                                   f"end within {timeout_s:.0f}s")
            out += await self.poll(200)
