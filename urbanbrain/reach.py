"""Is a server there? Short, bounded checks before a command starts work that needs it.

Why before, not on the first failure: a command that needs InfluxDB would otherwise render
PNGs of red error text, a publisher would print a traceback from deep inside paho, and
``kafka init`` would retry for 30 s. A TCP connect (or InfluxDB's ``/ping``) answers in
milliseconds when a server is up and fails at once when nothing listens, so one check at
the start gives one line (:class:`urbanbrain.errors.Unreachable`) naming the server, its
address and the setting to change.

Long-running components (ingest, workers) deliberately do *not* refuse to start on an
InfluxDB outage: their writers retry, and Kafka holds the backlog (see urbanbrain/influx.py).
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

from urbanbrain.errors import Unreachable
from urbanbrain.settings import Settings


def tcp_connect(host: str, port: int, timeout: float) -> None:
    """Open and close a TCP connection; raises ``OSError`` when nothing answers."""
    with socket.create_connection((host, port), timeout=timeout):
        pass


def _wait_tcp(addresses: list[tuple[str, int]], wait_s: float, timeout: float
              ) -> OSError | None:
    """None once any address accepts a connection, else the last error after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        err: OSError | None = None
        for host, port in addresses:
            try:
                tcp_connect(host, port, timeout)
                return None
            except OSError as exc:
                err = exc
        if time.monotonic() >= deadline:
            return err
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def require_mqtt(settings: Settings, *, wait_s: float = 0.0, timeout: float = 3.0) -> None:
    """The MQTT broker of ``settings`` accepts TCP connections (within ``wait_s``)."""
    err = _wait_tcp([(settings.mqtt_host, settings.mqtt_port)], wait_s, timeout)
    if err is not None:
        raise Unreachable("MQTT broker", settings.mqtt_url, err,
                          "start it (urbanbrain up starts one), or set URBANBRAIN_MQTT_URL "
                          "(or --mqtt-url) to a running broker")


def kafka_addresses(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        out.append((host.strip("[]") or "127.0.0.1", int(port) if port.isdigit() else 9092))
    return out


def require_kafka(settings: Settings, *, wait_s: float = 0.0, timeout: float = 3.0) -> None:
    """Some bootstrap server of ``settings`` accepts TCP connections (within ``wait_s``)."""
    err = _wait_tcp(kafka_addresses(settings.kafka_bootstrap), wait_s, timeout)
    if err is not None:
        raise Unreachable("Kafka", settings.kafka_bootstrap, err,
                          "start it (urbanbrain up starts one), or set "
                          "URBANBRAIN_KAFKA_BOOTSTRAP to a running broker")


def require_influx(url: str, *, timeout: float = 5.0) -> str:
    """InfluxDB at ``url`` answers ``/ping``; returns its version header (may be empty)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/ping", timeout=timeout) as resp:
            return resp.headers.get("X-Influxdb-Version", "")
    except urllib.error.HTTPError as exc:  # it answered: reachable, whatever it thinks
        return exc.headers.get("X-Influxdb-Version", "") if exc.headers else ""
    except (OSError, ValueError) as exc:
        raise Unreachable("InfluxDB", url, exc,
                          "start it (urbanbrain up --keep leaves one running), or set "
                          "URBANBRAIN_INFLUX_URL to a running server") from None
