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
    wanted.update({DEADLETTER_TOPIC: 1, AGGREGATES_TOPIC: settings.kafka_partitions, ALERTS_TOPIC: 1})
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
                            NewTopic(t, wanted[t], settings.kafka_replication)
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
