"""Test harness: our own processes (ingest, streams workers) against the real local stack.

Servers come from :mod:`urbanbrain.localstack`; this module adds what only tests need:
starting urbanbrain components as real subprocesses, waiting for them to be ready,
querying InfluxDB, and reading Kafka topics from the beginning.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable

import orjson
import paho.mqtt.client as mqtt

from urbanbrain.components import Component as BaseComponent
from urbanbrain.localstack import LocalStack


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.2,
               what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Component(BaseComponent):
    """A component whose readiness a test waits for in its log."""

    def wait_for_log(self, text: str, timeout: float = 60.0, count: int = 1) -> None:
        def seen() -> bool:
            if self.exited:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}"
                )
            return self.log().count(text) >= count

        try:
            wait_until(seen, timeout, what=f"{self.name} to log {text!r}")
        except AssertionError:
            raise AssertionError(f"{self.name} never logged {text!r}:\n{self.log()[-4000:]}")


class Influx:
    """Minimal InfluxQL client for assertions (v1 /query), logged in as the dashboards'
    read-only user: what a test asserts is what Grafana can see."""

    def __init__(self, url: str, db: str, auth: tuple[str, str] | None = None) -> None:
        self.url, self.db, self.auth = url.rstrip("/"), db, auth

    @classmethod
    def reader(cls, stack: LocalStack, db: str) -> Influx:
        assert stack.influx is not None
        return cls(f"http://127.0.0.1:{stack.influx.port}", db, stack.influx_login("reader"))

    def query(self, q: str) -> list[dict]:
        params = {"q": q, "db": self.db, "epoch": "ms"}
        if self.auth:
            params.update(u=self.auth[0], p=self.auth[1])
        url = f"{self.url}/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        result = body["results"][0]
        if "error" in result:
            raise AssertionError(f"InfluxQL error for {q!r}: {result['error']}")
        return result.get("series", [])

    def rows(self, q: str) -> list[dict]:
        """Flatten series into dicts (tags merged in)."""
        out = []
        for s in self.query(q):
            for values in s["values"]:
                row = dict(zip(s["columns"], values))
                row.update(s.get("tags", {}))
                out.append(row)
        return out

    def count(self, measurement: str, field: str, where: str = "") -> int:
        rows = self.rows(f'SELECT count("{field}") FROM "{measurement}" {where}')
        return int(rows[0]["count"]) if rows else 0


def read_topic(bootstrap: str, topic: str, *, timeout: float = 5.0) -> list[tuple[bytes | None, bytes]]:
    """Every record of ``topic`` from the beginning, as (key, value)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def main() -> list[tuple[bytes | None, bytes]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            parts = cluster.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            out: list[tuple[bytes | None, bytes]] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= end[tp] for pos, tp in zip(positions, tps)):
                    break
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    out.extend((r.key, r.value) for r in records)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(main())


class Publisher:
    """A paho QoS 1 publisher that waits until the broker acknowledged everything.

    ``auth``: (user, password); tests publish as the simulator's account
    (``stack.mqtt_login("simulator")``) or, for what the ACL keeps out, the injector."""

    def __init__(self, port: int, client_id: str = "",
                 auth: tuple[str, str] | None = None) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes | str | dict, qos: int = 1) -> None:
        if isinstance(payload, dict):
            payload = orjson.dumps(payload)
        self.infos.append(self.client.publish(topic, payload, qos=qos))

    def flush(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for info in self.infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self.infos.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()
