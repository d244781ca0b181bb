"""Helpers of the issue #14 fault tests: the product's publisher at a paced rate, metrics
scraped like Prometheus does, and a webhook receiver.

The publisher is :class:`urbanbrain.simulators.publisher.MqttPool` itself (the simulator's
and replay's), not a test copy: "a publisher that survives a broker restart" is a property
of the product.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
import urllib.error
import urllib.request

from urbanbrain.settings import Settings
from urbanbrain.simulators.publisher import MqttPool


class GatewayReplay(threading.Thread):
    """Publishes ``messages`` through an :class:`MqttPool` at ``rate`` messages/s, then
    waits for every PUBACK."""

    def __init__(self, settings: Settings, messages: list[tuple[str, bytes]], rate: float,
                 client_id: str, connections: int = 2) -> None:
        super().__init__(name="gateway", daemon=True)
        self.settings, self.messages, self.rate = settings, messages, rate
        self.client_id, self.connections = client_id, connections
        self.progress = 0
        self.error: BaseException | None = None
        self.reconnects = self.resent = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            pool = MqttPool(self.settings, connections=self.connections,
                            client_id_prefix=self.client_id)
            try:
                start = time.monotonic()
                for i, (topic, payload) in enumerate(self.messages):
                    if self.stopping.is_set():
                        return
                    delay = start + i / self.rate - time.monotonic()
                    if delay > 0.005:
                        time.sleep(delay)
                    pool.publish(topic, payload)
                    self.progress = i + 1
                if not pool.flush(60):
                    raise AssertionError("the broker confirmed nothing for 60 s")
                self.reconnects, self.resent = pool.reconnects, pool.resent
            finally:
                pool.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            self.error = exc

    def wait_progress(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.progress < count:
            if self.error is not None:
                raise AssertionError(f"publisher failed: {self.error!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.progress} of {count} published")
            time.sleep(0.05)


def http_get(port: int, path: str, timeout: float = 3.0) -> tuple[int, str]:
    """(status, body) of http://127.0.0.1:port/path, as curl would see it."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, repr(exc)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of ``name`` with (at least) ``labels`` in a Prometheus text page; the sum
    when several series match, None when none does."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
            seen = True
    return total if seen else None


class WebhookReceiver:
    """An Alertmanager-compatible receiver on 127.0.0.1 that keeps the bodies it got."""

    def __init__(self) -> None:
        bodies: list[dict] = []
        self.bodies = bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length", 0))
                bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alertnames(self) -> set[tuple[str, str]]:
        return {(a["labels"]["alertname"], a["status"]) for b in self.bodies
                for a in b.get("alerts", [])}

    def close(self) -> None:
        self.server.shutdown()
