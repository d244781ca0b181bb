"""Publishing to MQTT with paho-mqtt 2: a pool of connections, pacing and rate limiting.

Several connections (round-robin) because one paho client's network thread tops out long
before the broker does; messages keep their topic, so per-sensor order is preserved only
within a connection — the pipeline orders by event time anyway. Backpressure: each
connection has at most ``max_outstanding`` messages handed to paho and not yet confirmed
(PUBACK at QoS 1, written at QoS 0), so a slow broker slows us down instead of growing
paho's queue without bound. The default window is 200, not thousands: paho scans its whole
in-flight table on every PUBACK, so one connection managed ~6.4k messages/s with 2,000
outstanding and ~16k/s with 200 (bench/bench_limits.py).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from urbanbrain.errors import (
    EX_CONFIG, EX_UNAVAILABLE, ActionableError, BadValue, unreachable_message,
)
from urbanbrain.mqtt import apply_security
from urbanbrain.settings import Settings


class PublishError(ActionableError, RuntimeError):
    """The broker could not be reached or refused us; the message says which, why and what
    to do (one line on the command line, exit 69: worth retrying once the broker runs)."""

    exit_code = EX_UNAVAILABLE


@dataclass
class Progress:
    """What the simulator has done so far (for rich progress, logs, `urbanbrain up`)."""

    readings: int = 0  # readings sent (duplicates and malformed copies not counted)
    messages: int = 0  # MQTT messages published
    bytes: int = 0
    rate: float = 0.0  # readings/s over the last reporting window
    incidents: int = 0  # incidents started so far (faults not counted)
    faults: int = 0  # fault windows and spikes so far
    sim_time_ms: int = 0
    elapsed_s: float = 0.0
    done: bool = False

    @property
    def mean_rate(self) -> float:
        return self.readings / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Conn:
    def __init__(self, client: mqtt.Client, limit: int) -> None:
        self.client = client
        self.limit = limit
        self.sent = 0
        self.acked = 0
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.error: str | None = None


class MqttPool:
    """``connections`` paho clients publishing round-robin."""

    def __init__(self, settings: Settings, *, connections: int = 1, qos: int = 1,
                 client_id_prefix: str = "urbanbrain-sim", max_outstanding: int = 200,
                 connect_timeout_s: float = 10.0) -> None:
        if qos not in (0, 1, 2):
            raise BadValue("qos must be 0, 1 or 2")
        self.settings = settings
        self.qos = qos
        self.conns: list[_Conn] = []
        self._rr = 0
        run = uuid.uuid4().hex[:6]
        try:
            for k in range(max(1, connections)):
                self.conns.append(self._connect(f"{client_id_prefix}-{run}-{k}", max_outstanding,
                                                connect_timeout_s))
        except BaseException:
            self.close()
            raise

    def _connect(self, client_id: str, limit: int, timeout: float) -> _Conn:
        s = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=True)
        conn = _Conn(client, limit)
        apply_security(client, s)
        client.max_inflight_messages_set(max(20, limit))
        client.max_queued_messages_set(0)

        def on_connect(c, userdata, flags, reason_code, properties):  # noqa: ANN001
            if reason_code.is_failure:
                conn.error = f"broker refused connection: {reason_code}"
            conn.connected.set()

        def on_publish(c, userdata, mid, reason_code, properties):  # noqa: ANN001
            with conn.cond:
                conn.acked += 1
                conn.cond.notify_all()

        client.on_connect = on_connect
        client.on_publish = on_publish
        try:
            client.connect(s.mqtt_host, s.mqtt_port, keepalive=30)
        except OSError as exc:
            raise PublishError(unreachable_message(
                "MQTT broker", s.mqtt_url, exc, "start it (urbanbrain up starts one), or set "
                "URBANBRAIN_MQTT_URL (--mqtt-url) to a running broker")) from exc
        client.loop_start()
        if not conn.connected.wait(timeout):
            client.loop_stop()
            raise PublishError(f"MQTT broker at {s.mqtt_url} did not answer our CONNECT within "
                               f"{timeout:.0f} s: is it an MQTT port (mqtts:// for TLS)?")
        if conn.error:
            client.loop_stop()
            raise PublishError(f"MQTT broker at {s.mqtt_url}: {conn.error}: check "
                               "URBANBRAIN_MQTT_USERNAME/URBANBRAIN_MQTT_PASSWORD and the "
                               "broker's ACL", exit_code=EX_CONFIG)
        return conn

    def publish(self, topic: str, payload: bytes) -> None:
        conn = self.conns[self._rr]
        self._rr = (self._rr + 1) % len(self.conns)
        if conn.sent - conn.acked >= conn.limit:
            with conn.cond:
                while conn.sent - conn.acked >= conn.limit:
                    if not conn.cond.wait(10.0):
                        raise PublishError("broker stopped acknowledging (10 s without PUBACK)")
        info = conn.client.publish(topic, payload, qos=self.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishError(f"publish failed: {mqtt.error_string(info.rc)}")
        conn.sent += 1

    def publish_many(self, messages: Iterable[tuple[str, bytes]]) -> None:
        for topic, payload in messages:
            self.publish(topic, payload)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every published message is confirmed; False on timeout."""
        deadline = time.monotonic() + timeout_s
        for conn in self.conns:
            with conn.cond:
                while conn.acked < conn.sent:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    conn.cond.wait(min(left, 1.0))
        return True

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.client.disconnect()
            finally:
                conn.client.loop_stop()
        self.conns = []

    def __enter__(self) -> MqttPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Pacer:
    """Sleeps so sim time advances at ``speed``× wall time and readings stay under ``rate``.

    ``speed`` 0 (or None) and ``rate`` 0 (or None) mean as fast as possible.
    """

    def __init__(self, start_sim_ms: int, speed: float | None, rate: float | None,
                 stop: threading.Event | None = None) -> None:
        self.start_sim_ms = start_sim_ms
        self.speed = speed or 0.0
        self.rate = rate or 0.0
        self.t0 = time.monotonic()
        self.stop = stop or threading.Event()
        self.sent = 0

    def _sleep_until(self, t: float) -> None:
        d = t - time.monotonic()
        if d > 0:
            self.stop.wait(d)

    def wait_for_tick(self, sim_ms: int) -> None:
        if self.speed > 0:
            self._sleep_until(self.t0 + (sim_ms - self.start_sim_ms) / 1000.0 / self.speed)

    def account(self, readings: int) -> None:
        self.sent += readings
        if self.rate > 0:
            self._sleep_until(self.t0 + self.sent / self.rate)


def send_messages(pool: MqttPool, messages: list[tuple[str, bytes, int]], pacer: Pacer,
                  on_sent: Callable[[int, int, int], None], chunk: int = 200) -> None:
    """Publish in chunks, accounting readings to the pacer (rate limit inside a tick)."""
    for k in range(0, len(messages), chunk):
        part = messages[k:k + chunk]
        n = nbytes = 0
        for topic, payload, readings in part:
            pool.publish(topic, payload)
            n += readings
            nbytes += len(payload)
        on_sent(len(part), n, nbytes)
        pacer.account(n)
        if pacer.stop.is_set():
            return
