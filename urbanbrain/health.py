"""Health endpoints served by every long-running urbanbrain process, on its own event loop.

Why here and not in InfluxDB: operators (and compose healthchecks) must see a sick
component while the database it writes to is down. Each process serves, on 127.0.0.1 by
default (``URBANBRAIN_METRICS_HOST``/``URBANBRAIN_METRICS_PORT`` or ``--metrics-port``):

* ``/livez``  — 200 while the event loop answers (a hung loop cannot answer at all);
* ``/readyz`` — 200 when every readiness check passes (connected, partitions assigned),
  503 with the failing checks otherwise;
* ``/healthz`` — both, as JSON (200 when ready, 503 when not);
* ``/metrics`` — Prometheus text format, when the process registered a renderer
  (:class:`urbanbrain.observability.Metrics`); readiness is in it too, as
  ``urbanbrain_ready`` and ``urbanbrain_check_ok{check=...}``.

:class:`KafkaProbe` turns "Kafka reachable" into a readiness check: a client that only
waits for acks cannot tell a quiet broker from a dead one, so the probe asks the cluster
for metadata every few seconds on a connection of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Self

import orjson
from aiohttp import web

log = logging.getLogger(__name__)

#: name -> () -> (ok, detail)
Check = Callable[[], tuple[bool, str]]


class HealthServer:
    """A tiny aiohttp app; ``await start()`` inside the process's running loop."""

    def __init__(self, host: str, port: int, checks: dict[str, Check] | None = None,
                 metrics: Callable[[], bytes] | None = None) -> None:
        self.host, self.port = host, port
        self.checks: dict[str, Check] = dict(checks or {})
        self.metrics = metrics
        self.started = time.time()
        self._runner: web.AppRunner | None = None

    def add_check(self, name: str, check: Check) -> None:
        self.checks[name] = check

    def readiness(self) -> dict[str, Any]:
        results = {}
        for name, check in self.checks.items():
            try:
                ok, detail = check()
            except Exception as exc:  # noqa: BLE001 - a broken check is a failed check
                ok, detail = False, f"check failed: {exc!r}"
            results[name] = {"ok": bool(ok), "detail": detail}
        return {"ready": all(r["ok"] for r in results.values()), "checks": results,
                "uptime_s": round(time.time() - self.started, 1)}

    async def _livez(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        r = self.readiness()
        failing = [f"{k}: {v['detail']}" for k, v in r["checks"].items() if not v["ok"]]
        return web.Response(status=200 if r["ready"] else 503,
                            text="ready\n" if r["ready"] else "not ready\n" + "\n".join(failing))

    async def _healthz(self, request: web.Request) -> web.Response:
        r = {"live": True, **self.readiness()}
        return web.Response(status=200 if r["ready"] else 503, body=orjson.dumps(r),
                            content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.metrics is None:
            return web.Response(status=404, text="no metrics in this process\n")
        return web.Response(body=self.metrics(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def start(self) -> HealthServer:
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        log.info("health endpoints on http://%s:%d/healthz", self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def register_metrics(self, metrics: Any) -> None:
        """Serve ``metrics`` (an :class:`urbanbrain.observability.Metrics`) at /metrics,
        with this server's readiness in it."""

        def checks() -> dict[tuple[str, ...], float]:
            return {(name,): float(r["ok"]) for name, r in self.readiness()["checks"].items()}

        metrics.gauge("ready", "1 when every readiness check passes (as /readyz)",
                      lambda: float(self.readiness()["ready"]))
        metrics.gauge("check_ok", "readiness checks, 1 = passing", checks, labels=("check",))
        self.metrics = metrics.render


class BackgroundLoop:
    """A coroutine ``_run`` a process keeps running beside its work: started once,
    cancelled and awaited at shutdown (whatever it raised by then is over)."""

    _task: asyncio.Task | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass


class KafkaProbe(BackgroundLoop):
    """Is the Kafka cluster answering? A metadata request every ``every_s`` seconds on a
    connection of its own (bounded by ``timeout_s``); :meth:`check` is a readiness check.

    Why its own client: aiokafka producers and Faust consumers retry quietly for a long
    time, so "connected" is not something they report; a fresh metadata round trip is."""

    def __init__(self, options: dict[str, Any], every_s: float = 2.0,
                 timeout_s: float = 3.0) -> None:
        self.options = options
        self.every_s, self.timeout_s = every_s, timeout_s
        self.ok: bool | None = None
        self.detail = "not probed yet"
        self.failures = 0

    def check(self) -> tuple[bool, str]:
        return bool(self.ok), self.detail

    async def _run(self) -> None:
        from aiokafka.client import AIOKafkaClient

        opts = {k: v for k, v in self.options.items()}
        opts.setdefault("request_timeout_ms", int(self.timeout_s * 1000))
        while True:
            client = AIOKafkaClient(**opts)
            try:
                await asyncio.wait_for(client.bootstrap(), self.timeout_s)
                while True:
                    t0 = time.perf_counter()
                    meta = await asyncio.wait_for(client.fetch_all_metadata(), self.timeout_s)
                    if not meta.brokers():
                        raise ConnectionError("no brokers in the metadata")
                    if not self.ok:
                        log.info("Kafka reachable again")
                    self.ok = True
                    self.detail = (f"{len(meta.brokers())} broker(s), metadata in "
                                   f"{(time.perf_counter() - t0) * 1000:.0f} ms")
                    await asyncio.sleep(self.every_s)
            except asyncio.CancelledError:
                await client.close()
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
                if self.ok is not False:
                    log.warning("Kafka unreachable (%s): not ready", exc.__class__.__name__)
                self.ok = False
                self.failures += 1
                self.detail = f"Kafka unreachable: {exc!r}"[:300]
            await client.close()
            await asyncio.sleep(self.every_s)
