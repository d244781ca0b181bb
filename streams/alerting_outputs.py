"""Where alert transitions go: Kafka ``alerts``, InfluxDB ``alerts``, MQTT, webhooks.

Why one object: the agent that evaluates rules should only say "these events happened";
how each consumer wants them (JSON record, line protocol, MQTT topic per district and
severity, Alertmanager webhook v4) lives in :mod:`urbanbrain.rules.formatters`, and the
delivery policies live here:

* MQTT (paho, QoS 1, its own network thread) and webhooks are notifications: they are
  handed off first and never wait for, block or crash anything. Webhook bodies go through a
  bounded queue drained by a background task that retries each POST a few times with
  backoff and then logs and drops.
* Kafka ``alerts`` is the durable record: awaited inside the agent, which persists the rule
  state only after it (a crash re-sends, never loses; consumers deduplicate by
  ``fingerprint`` + ``status`` + ``startsAt``).
* InfluxDB's ``alerts`` measurement is written by :class:`AlertStore` from the Kafka topic,
  in an agent of its own: a slow or refusing InfluxDB delays the history, never a
  notification or the next evaluation (it once held back MQTT and webhooks, and under
  production auth stalled them for good).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as mqtt
from mode import Service
from urbanbrain.rules import AlertEvent, influx_line, mqtt_message, webhook_payloads

from urbanbrain.latency import LatencyHistogram
from urbanbrain.mqtt import apply_security
from urbanbrain.retention import ALERTS
from urbanbrain.settings import Settings

log = logging.getLogger(__name__)


def mqtt_client_id() -> str:
    return f"urbanbrain-alerts-{socket.gethostname()}-{os.getpid()}"


class AlertOutputs(Service):
    """Fan-out of :class:`AlertEvent` lists. Register with ``app.service(outputs)``."""

    def __init__(
        self,
        settings: Settings,
        writer: Any,
        alerts_topic: Any,
        *,
        webhook_urls: Sequence[str] = (),
        webhook_retries: int = 4,
        webhook_timeout_s: float = 5.0,
        webhook_queue: int = 10_000,
        external_url: str = "http://localhost:9093",
        close_writer: bool = False,
        **kwargs: Any,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.alerts_topic = alerts_topic
        self.webhook_urls = [u for u in webhook_urls if u]
        self.webhook_retries = webhook_retries
        self.webhook_timeout_s = webhook_timeout_s
        self.external_url = external_url
        self.close_writer = close_writer
        self._queue_max = webhook_queue
        self._queue: asyncio.Queue | None = None
        self._mqtt: mqtt.Client | None = None
        self._session: aiohttp.ClientSession | None = None
        self._inflight: list[mqtt.MQTTMessageInfo] = []
        #: evaluation event time (``at``) → handed to Kafka; ``emitted_ms`` header per record
        self.latency = LatencyHistogram()
        #: wall clock when the stage evaluated the rules → Kafka acknowledged the alert:
        #: what the pipeline itself adds, without the device, MQTT and ingest before it
        #: (observed by the worker once the batch's producer flush is acknowledged)
        self.acked_latency = LatencyHistogram(prefix="acked")
        self.sent = {"kafka": 0, "influx": 0, "mqtt": 0, "mqtt_failed": 0, "webhook": 0,
                     "webhook_failed": 0}
        super().__init__(**kwargs)

    # -- lifecycle ------------------------------------------------------------------------
    def _queue_(self) -> asyncio.Queue:
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self._queue_max)
        return self._queue

    def _mqtt_client(self) -> mqtt.Client:
        if self._mqtt is None:
            s = self.settings
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=mqtt_client_id(),
                            protocol=mqtt.MQTTv311)
            apply_security(c, s)
            c.max_queued_messages_set(0)  # queue while disconnected; paho reconnects
            c.reconnect_delay_set(0.2, 10)
            c.on_connect = lambda *a: log.info("alerts MQTT connected")
            c.connect_async(s.mqtt_host, s.mqtt_port)
            c.loop_start()
            self._mqtt = c
        return self._mqtt

    async def on_start(self) -> None:
        self._mqtt_client()
        self._queue_()

    async def on_stop(self) -> None:
        # Best effort: give queued webhook bodies a moment before the worker goes away.
        q = self._queue
        deadline = asyncio.get_running_loop().time() + 2.0
        while q is not None and not q.empty() and asyncio.get_running_loop().time() < deadline:
            body = q.get_nowait()
            for url in self.webhook_urls:
                await self._post(url, orjson.dumps(body), body.get("groupKey", ""), retries=1)
        if self.close_writer:
            await self.writer.close()
        while self._inflight and asyncio.get_running_loop().time() < deadline:
            self._inflight = [i for i in self._inflight if not self._done(i)]
            await asyncio.sleep(0.05)
        if self._mqtt is not None:
            try:
                self._mqtt.disconnect()
            finally:
                self._mqtt.loop_stop()
        if self._session is not None:
            await self._session.close()

    # -- fan-out --------------------------------------------------------------------------
    async def emit(self, events: Sequence[AlertEvent]) -> None:
        """Deliver ``events``: MQTT and webhooks handed off, then Kafka awaited."""
        if not events:
            return
        self._notify(events)
        now = int(time.time() * 1000)
        emitted = [("emitted_ms", str(now).encode())]
        for ev in events:
            await self.alerts_topic.send(key=ev.fingerprint.encode(),
                                         value=orjson.dumps(ev.to_dict()), headers=emitted)
            self.sent["kafka"] += 1
        self.latency.observe([ev.at for ev in events], now)

    def _notify(self, events: Sequence[AlertEvent]) -> None:
        """Hand notifications off; never raises (a broker that is down or refuses us must
        not stop the agent that evaluates rules and stores readings)."""
        client = self._mqtt_client()
        for ev in events:
            if ev.silenced:
                continue
            topic, payload = mqtt_message(ev, self.settings.mqtt_topic_prefix)
            try:
                info = client.publish(topic, payload, qos=1)
            except (ValueError, OSError) as exc:
                self.sent["mqtt_failed"] += 1
                log.error("alert not published on MQTT (%s): %s", exc, topic)
                continue
            self._inflight.append(info)
            self.sent["mqtt"] += 1
        self._inflight = [i for i in self._inflight if not self._done(i)]
        if self.webhook_urls:
            q = self._queue_()
            for body in webhook_payloads(events, external_url=self.external_url):
                try:
                    q.put_nowait(body)
                except asyncio.QueueFull:
                    self.sent["webhook_failed"] += 1
                    log.error("webhook queue full: dropped %s", body.get("groupKey"))

    def _done(self, info: mqtt.MQTTMessageInfo) -> bool:
        """Published, or failed for good (paho raises for a message it could not queue,
        e.g. while never connected): counted, logged once, forgotten."""
        try:
            return info.is_published()
        except (RuntimeError, ValueError) as exc:
            self.sent["mqtt_failed"] += 1
            log.warning("alert not published on MQTT: %s", exc)
            return True

    # -- webhooks -------------------------------------------------------------------------
    @Service.task
    async def _deliver_webhooks(self) -> None:
        q = self._queue_()
        while not self.should_stop:
            body = await q.get()
            data = orjson.dumps(body)
            for url in self.webhook_urls:
                await self._post(url, data, body.get("groupKey", ""))

    async def _post(self, url: str, data: bytes, key: str, retries: int | None = None) -> bool:
        retries = retries or self.webhook_retries
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout_s)
            )
        delay = 0.5
        why = ""
        for attempt in range(1, retries + 1):
            try:
                async with self._session.post(
                    url, data=data, headers={"Content-Type": "application/json"}
                ) as resp:
                    if resp.status < 300:
                        self.sent["webhook"] += 1
                        return True
                    why = f"HTTP {resp.status}"
                    if 400 <= resp.status < 500 and resp.status != 429:
                        attempt = retries  # a client error won't heal
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                why = repr(exc)
            if attempt >= retries:
                break
            log.warning("webhook %s failed (%s); retry %d/%d", url, why, attempt, retries - 1)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        self.sent["webhook_failed"] += 1
        log.error("webhook %s gave up on %s: %s", url, key, why)
        return False


class AlertStore:
    """Kafka ``alerts`` → InfluxDB ``alerts``: the alert history for dashboards.

    Fed by an agent on the alerts topic (:func:`urbanbrain.streams.alerting.register_alerting`)
    and awaited before Faust acknowledges the records, so an InfluxDB outage is lag on this
    agent only; refused lines are logged (an alert's fields are ours, not a device's)."""

    def __init__(self, writer: Any, sent: dict[str, int]) -> None:
        self.writer = writer
        self.sent = sent  # AlertOutputs.sent: "influx" counts stored alert points

    async def store(self, records: Sequence[bytes]) -> int:
        lines = []
        for raw in records:
            try:
                lines.append(influx_line(AlertEvent.from_dict(orjson.loads(raw))))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.error("alerts record not stored (%s): %r", exc, raw[:200])
        refused = await self.writer.write(lines, rp=ALERTS)
        for text, why in refused or ():
            log.warning("alert point refused by InfluxDB: %s (%s)", text[:200], why)
        self.sent["influx"] += len(lines) - len(refused or ())
        return len(lines) - len(refused or ())
