"""Publishing to MQTT with paho-mqtt 2 like a field gateway: a pool of connections,
pacing, backpressure, reconnection and store-and-forward.

Several connections (round-robin) because one paho client's network thread tops out long
before the broker does; messages keep their topic, so per-sensor order is preserved only
within a connection — the pipeline orders by event time anyway. Backpressure: each
connection has at most ``max_outstanding`` messages handed to paho and not yet confirmed
(PUBACK at QoS 1, written at QoS 0), so a slow broker slows us down instead of growing
paho's queue without bound. The default window is 200, not thousands: paho scans its whole
in-flight table on every PUBACK, so one connection managed ~6.4k messages/s with 2,000
outstanding and ~16k/s with 200 (bench/bench_limits.py).

**A broker restart is not the end** (issue #14: the simulator died with "The client is not
currently connected" and 19,500 readings were never sent). Each connection keeps every
message until its PUBACK in a store of its own (bounded: ``queue_limit`` messages, split
over the connections). When the connection drops, the messages in flight and whatever is
published meanwhile wait there; a network thread of ours reconnects with exponential
backoff (``backoff_s`` .. ``max_backoff_s``) and sends them again, oldest first, on the new
connection: duplicates are possible (a PUBACK lost with the connection), loss is not.
While the store is full, ``publish`` blocks. Only when the broker has been unreachable for
``give_up_s`` (or refuses our credentials) does ``publish``/``flush`` raise
:class:`PublishError` with one line saying so.

Why our own store and thread rather than paho's reconnect: paho keeps messages published
while disconnected in its own queue, but after a reconnect with more queued than its
in-flight limit it stopped sending them (seen with paho 2.2: 1,300 of 3,000 stuck), and its
in-flight bookkeeping cannot be bounded or inspected. A fresh paho client per connection
attempt, fed only from our store and only from our network thread, has none of that.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from urbanbrain.errors import (
    EX_CONFIG, EX_UNAVAILABLE, ActionableError, BadValue,
)
from urbanbrain.mqtt import apply_security
from urbanbrain.settings import Settings

#: CONNACK reasons no retry heals: the operator must fix the account or the ACL.
_FATAL_CONNACK = ("not authori", "bad user name", "banned", "bad authentication")


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
    """One broker connection: its store of unconfirmed messages and its network thread."""

    def __init__(self, pool: MqttPool, client_id: str, limit: int, queue_limit: int) -> None:
        self.pool, self.client_id = pool, client_id
        self.limit, self.queue_limit = limit, max(limit, queue_limit)
        self.cond = threading.Condition()
        self.pending: dict[int, tuple[str, bytes]] = {}  # seq -> message, oldest first
        self.unsent: deque[int] = deque()  # seqs to send on the current connection
        self.inflight: dict[int, int] = {}  # paho mid -> seq, current connection only
        self.seq = 0
        self.sent = 0  # messages accepted by publish()
        self.acked = 0  # messages confirmed by the broker
        self.resent = 0  # messages sent again after a reconnect
        self.connects = 0
        self.connected = False
        self.down_since: float | None = time.monotonic()
        self.error: str | None = None  # set once we gave up; publish/flush raise it
        self.error_code = EX_UNAVAILABLE  # its exit code: 78 for refused credentials
        self.closing = False
        self.client: mqtt.Client | None = None
        self.thread = threading.Thread(target=self._run, name=f"mqtt-{client_id}",
                                       daemon=True)

    # -- publisher side ----------------------------------------------------------------------
    def put(self, topic: str, payload: bytes) -> None:
        with self.cond:
            while len(self.pending) >= (self.limit if self.connected else self.queue_limit):
                if self.error:
                    raise PublishError(self.error, exit_code=self.error_code)
                self.cond.wait(0.5)
            if self.error:
                raise PublishError(self.error, exit_code=self.error_code)
            self.seq += 1
            self.pending[self.seq] = (topic, payload)
            self.unsent.append(self.seq)
            self.sent += 1

    # -- network thread ----------------------------------------------------------------------
    def _new_client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        clean_session=True)
        apply_security(c, self.pool.settings)
        c.max_inflight_messages_set(max(20, self.limit))
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_publish = self._on_publish
        return c

    def _on_connect(self, c, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            why = (f"MQTT broker at {self.pool.settings.mqtt_url} refused us: {reason_code}: "
                   "check URBANBRAIN_MQTT_USERNAME/URBANBRAIN_MQTT_PASSWORD and the broker's ACL")
            if any(f in str(reason_code).lower() for f in _FATAL_CONNACK):
                with self.cond:
                    self.error = why
                    self.error_code = EX_CONFIG
                    self.cond.notify_all()
            return
        with self.cond:
            if self.connects:
                # everything unconfirmed goes out again, oldest first, on this connection
                self.resent += len(self.pending) - len(self.unsent)
            self.unsent = deque(self.pending)
            self.inflight.clear()
            self.connected = True
            self.down_since = None
            self.connects += 1
            self.cond.notify_all()

    def _on_publish(self, c, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        with self.cond:
            seq = self.inflight.pop(mid, None)
            if seq is not None and self.pending.pop(seq, None) is not None:
                self.acked += 1
                self.cond.notify_all()

    def _pump(self, client: mqtt.Client) -> None:
        """Hand paho what fits in the window (called on this thread only: paho's callbacks
        run here too, so our lock and paho's never cross threads)."""
        with self.cond:
            freed = False
            while self.connected and self.unsent and len(self.inflight) < self.limit:
                seq = self.unsent.popleft()
                msg = self.pending.get(seq)
                if msg is None:
                    continue
                info = client.publish(msg[0], msg[1], qos=self.pool.qos)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    self.unsent.appendleft(seq)
                    break
                if self.pool.qos == 0:
                    self.pending.pop(seq, None)  # fire and forget
                    self.acked += 1
                    freed = True
                else:
                    self.inflight[info.mid] = seq
            if freed:  # a publisher blocked on a full store may go on (QoS 0 has no PUBACK)
                self.cond.notify_all()

    def _give_up_check(self) -> bool:
        s, pool = self.pool.settings, self.pool
        if self.down_since is not None and time.monotonic() - self.down_since > pool.give_up_s:
            with self.cond:
                self.error = (f"MQTT broker {s.mqtt_url} unreachable for "
                              f"{pool.give_up_s:.0f}s; gave up with {len(self.pending)} "
                              "messages unsent: start it (urbanbrain up starts one), or set "
                              "URBANBRAIN_MQTT_URL (--mqtt-url) to a running broker")
                self.error_code = EX_UNAVAILABLE
                self.cond.notify_all()
            return True
        return False

    def _run(self) -> None:
        s, pool = self.pool.settings, self.pool
        delay = pool.backoff_s
        while not self.closing and not self.error:
            client = self.client = self._new_client()
            try:
                client.connect(s.mqtt_host, s.mqtt_port, keepalive=30)
            except OSError:
                if self._give_up_check():
                    return
                time.sleep(delay)
                delay = min(delay * 2, pool.max_backoff_s)
                continue
            while not self.closing and not self.error:
                self._pump(client)
                if client.loop(timeout=0.01) != mqtt.MQTT_ERR_SUCCESS:
                    break
                if self.connected:
                    delay = pool.backoff_s
                elif self._give_up_check():
                    break
            with self.cond:
                was_up = self.connected
                self.connected = False
                self.inflight.clear()
                if self.down_since is None:
                    self.down_since = time.monotonic()
                self.cond.notify_all()
            if self.closing:
                try:
                    client.disconnect()
                    client.loop(timeout=0.1)
                except Exception:  # noqa: BLE001 - closing anyway
                    pass
                return
            try:
                client.socket() and client.socket().close()  # type: ignore[func-returns-value]
            except OSError:
                pass
            if not was_up:
                time.sleep(delay)
                delay = min(delay * 2, pool.max_backoff_s)


class MqttPool:
    """``connections`` publishing connections, round-robin, each with its own
    store-and-forward queue and reconnecting network thread (see the module docstring)."""

    def __init__(self, settings: Settings, *, connections: int = 1, qos: int = 1,
                 client_id_prefix: str = "urbanbrain-sim", max_outstanding: int = 200,
                 connect_timeout_s: float = 10.0, queue_limit: int | None = None,
                 give_up_s: float | None = None, backoff_s: float = 0.1,
                 max_backoff_s: float = 5.0) -> None:
        """``queue_limit`` / ``give_up_s``: default ``settings.mqtt_publish_queue`` /
        ``settings.mqtt_publish_give_up_s``."""
        if qos not in (0, 1, 2):
            raise BadValue("qos must be 0, 1 or 2")
        self.settings = settings
        self.qos = qos
        queue_limit = settings.mqtt_publish_queue if queue_limit is None else queue_limit
        self.give_up_s = settings.mqtt_publish_give_up_s if give_up_s is None else give_up_s
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.conns: list[_Conn] = []
        run = uuid.uuid4().hex[:6]
        n = max(1, connections)
        self.conns = [_Conn(self, f"{client_id_prefix}-{run}-{k}", max_outstanding,
                            queue_limit // n) for k in range(n)]
        for conn in self.conns:
            conn.thread.start()
        try:
            self._wait_connected(connect_timeout_s)
        except BaseException:
            self.close()
            raise

    def _wait_connected(self, timeout: float) -> None:
        """The first connection must come up within ``timeout``: a wrong URL or account
        should fail at once, not after ``give_up_s``."""
        deadline = time.monotonic() + timeout
        for conn in self.conns:
            with conn.cond:
                while not conn.connected and not conn.error:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise PublishError(f"cannot connect to MQTT broker "
                                           f"{self.settings.mqtt_url} within {timeout:.0f}s")
                    conn.cond.wait(min(left, 0.5))
                if conn.error:
                    raise PublishError(conn.error, exit_code=conn.error_code)

    def publish(self, topic: str, payload: bytes) -> None:
        """One topic always goes through one connection, as a device (or a gateway) has
        one: its messages reach the broker in the order they were sent. Round-robin over
        connections let a topic's older message overtake its newer one by many seconds
        when one connection's in-flight window was full."""
        self.conns[zlib.crc32(topic.encode()) % len(self.conns)].put(topic, payload)

    def publish_many(self, messages: Iterable[tuple[str, bytes]]) -> None:
        for topic, payload in messages:
            self.publish(topic, payload)

    @property
    def unconfirmed(self) -> int:
        return sum(len(c.pending) for c in self.conns)

    @property
    def reconnects(self) -> int:
        return sum(max(0, c.connects - 1) for c in self.conns)

    @property
    def resent(self) -> int:
        return sum(c.resent for c in self.conns)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every published message is confirmed. False when a connected broker
        confirmed nothing for ``timeout_s``; while the broker is unreachable it waits for the
        reconnect (the store is resent) or raises :class:`PublishError` once a connection
        gave up (``give_up_s``)."""
        for conn in self.conns:
            with conn.cond:
                last, since = conn.acked, time.monotonic()
                while conn.pending:
                    if conn.error:
                        raise PublishError(conn.error, exit_code=conn.error_code)
                    if conn.acked != last or not conn.connected:
                        last, since = conn.acked, time.monotonic()
                    elif time.monotonic() - since > timeout_s:
                        return False
                    conn.cond.wait(0.5)
        return True

    def close(self) -> None:
        for conn in self.conns:
            conn.closing = True
        for conn in self.conns:
            conn.thread.join(5)
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
