"""Writing line protocol to InfluxDB and asking it InfluxQL, over either API family.

Two transports, one interface:

* ``v1``: ``POST /write?db=...&precision=ms`` — InfluxDB 1.x (the Debian 1.6 our tests run
  on), also accepted by 1.8+, 2.x (DBRP mapping) and 3.x.
* ``v2``: influxdb-client's async write API (``/api/v2/write``) — InfluxDB 1.8+, 2.x, 3.x
  with a token.

``auto`` asks ``/ping`` for ``X-Influxdb-Version``: 1.x before 1.8 → v1, else v2 when a
token is configured, else v1.

The writer never drops points silently: server and network errors are retried with
backoff until they succeed (the caller holds its Kafka offsets meanwhile, so an outage
becomes consumer lag, not loss); a 400 is bisected down to the exact lines InfluxDB
refuses, which are returned to the caller to dead-letter. A 401/403 is not an outage but a
misconfiguration that no retry heals: it raises :class:`InfluxAuthError` with what to fix.

The writer needs no admin rights (compose gives it a user with ALL on its database only):
it looks for its database with ``SHOW DATABASES`` and creates it only when missing, which
only an admin may; a missing database for a non-admin user is one clear error at start
(:meth:`InfluxWriter.check`), never an endless retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from urbanbrain.errors import ConfigError
from urbanbrain.settings import Settings

log = logging.getLogger(__name__)


class InfluxError(RuntimeError):
    pass


class InfluxAuthError(InfluxError, ConfigError):
    """InfluxDB refused our credentials (401) or a privilege (403): fix configuration."""


class InfluxSetupError(InfluxError, ConfigError):
    """The database is missing and this user may not create it."""


def auth_advice(settings: Settings, status: int, text: str) -> str:
    """One line that says what was refused and what to change."""
    who = settings.influx_username or ("a token" if settings.influx_token else "no credentials")
    if status == 401:
        return (f"InfluxDB at {settings.influx_url} refused the login of {who} ({text.strip()[:120]}): "
                "check URBANBRAIN_INFLUX_USERNAME/URBANBRAIN_INFLUX_PASSWORD (or _TOKEN)")
    return (f"InfluxDB at {settings.influx_url} refused {who} on database "
            f"'{settings.influx_db}' ({text.strip()[:160]}): grant it, as admin, "
            f"GRANT ALL ON \"{settings.influx_db}\" TO \"{settings.influx_username}\"")


@dataclass
class WriterStats:
    points: int = 0
    batches: int = 0
    retries: int = 0
    rejected: int = 0
    auth_failures: int = 0
    last_batch_ms: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


def _version_tuple(version: str) -> tuple[int, int]:
    parts = version.lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return (0, 0)


class InfluxWriter:
    """Batched, retrying line-protocol writer. Use ``async with InfluxWriter(settings)``."""

    def __init__(self, settings: Settings, *, max_backoff_s: float = 5.0,
                 on_config_error: Callable[[InfluxError], None] | None = None) -> None:
        """``on_config_error``: called with an :class:`InfluxAuthError` or
        :class:`InfluxSetupError` before it is raised (a worker stops there: the error is
        the operator's to fix, and nothing unstored has been acknowledged)."""
        self.settings = settings
        self.on_config_error = on_config_error
        self.url = settings.influx_url.rstrip("/")
        self.stats = WriterStats()
        self.max_backoff_s = max_backoff_s
        self.api: str | None = None if settings.influx_api == "auto" else settings.influx_api
        self._session: aiohttp.ClientSession | None = None
        self._v2: Any = None
        self._db_ready = False
        self._closing = False

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> InfluxWriter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.influx_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout, headers=self._auth_headers())

    async def close(self) -> None:
        self._closing = True
        if self._v2 is not None:
            await self._v2.close()
        if self._session is not None:
            await self._session.close()

    def _auth_headers(self) -> dict[str, str]:
        s = self.settings
        if s.influx_token is not None:
            return {"Authorization": f"Token {s.influx_token.get_secret_value()}"}
        if s.influx_username and s.influx_password is not None:
            import base64

            raw = f"{s.influx_username}:{s.influx_password.get_secret_value()}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise InfluxError("InfluxWriter used before start()")
        return self._session

    # -- discovery -----------------------------------------------------------------------
    async def ping(self) -> str:
        """The server's version string; raises on no answer."""
        if self._session is None:
            await self.start()
        async with self.session.get(f"{self.url}/ping") as resp:
            if resp.status not in (200, 204):
                raise InfluxError(f"/ping answered {resp.status}")
            return resp.headers.get("X-Influxdb-Version", "unknown")

    async def _choose_api(self) -> str:
        if self.api is not None:
            return self.api
        version = await self.ping()
        major, minor = _version_tuple(version)
        if (major, minor) >= (1, 8) and self.settings.influx_token is not None:
            self.api = "v2"
        else:
            self.api = "v1"
        log.info("InfluxDB %s at %s: using the %s write API", version, self.url, self.api)
        return self.api

    async def ensure_database(self) -> None:
        """v1: find the database with ``SHOW DATABASES`` (any user with a privilege on it
        sees it) and create it only when missing (admins only). v2: the bucket (or a DBRP
        mapping) must exist already; a write to a missing one answers 404."""
        if await self._choose_api() == "v1":
            db = self.settings.influx_db
            if db not in await self.databases():
                try:
                    await self.query(f'CREATE DATABASE "{db}"', method="POST")
                except InfluxAuthError as exc:
                    raise InfluxSetupError(
                        f"InfluxDB database '{db}' does not exist and user "
                        f"'{self.settings.influx_username}' may not create it (admin only): "
                        f"create it as admin (CREATE DATABASE \"{db}\" and GRANT ALL ON "
                        f"\"{db}\" TO \"{self.settings.influx_username}\"), or run "
                        "`urbanbrain influx init` with admin credentials") from exc
                log.info("InfluxDB database %s created", db)
        self._db_ready = True

    async def databases(self) -> list[str]:
        """Databases this user can see (v1 ``SHOW DATABASES``)."""
        res = await self.query("SHOW DATABASES")
        return [row[0] for s in res[0].get("series", []) for row in s.get("values", [])] if res else []

    async def check(self) -> str:
        """Everything a writer needs, checked once at start: server reachable, credentials
        accepted, database present (or created). Returns the server version; raises
        :class:`InfluxAuthError` / :class:`InfluxSetupError` / :class:`InfluxError` with a
        message that says what to fix."""
        version = await self.ping()
        await self.ensure_database()
        return version

    # -- queries -------------------------------------------------------------------------
    async def query(self, q: str, *, method: str = "GET", epoch: str = "ms") -> list[dict]:
        """InfluxQL over ``/query``; returns the ``results`` list."""
        if self._session is None:
            await self.start()
        params = {"q": q, "db": self.settings.influx_db, "epoch": epoch}
        async with self.session.request(method, f"{self.url}/query", params=params) as resp:
            body = await resp.json(content_type=None)
            if resp.status in (401, 403):
                self.stats.auth_failures += 1
                raise InfluxAuthError(auth_advice(self.settings, resp.status,
                                                  str((body or {}).get("error", body))))
            if resp.status != 200:
                raise InfluxError(f"query failed ({resp.status}): {body}")
        for result in body.get("results", []):
            if "error" in result:
                raise InfluxError(f"query error: {result['error']}")
        return body.get("results", [])

    async def query_rows(self, q: str, *, chunk_size: int = 20_000
                         ) -> AsyncIterator[tuple[str, dict[str, str], list[str], list[list]]]:
        """Stream a large InfluxQL result (``chunked=true``): (measurement, tags, columns,
        values) per chunk of a series, without holding the whole answer in memory."""
        if self._session is None:
            await self.start()
        params = {"q": q, "db": self.settings.influx_db, "epoch": "ms", "chunked": "true",
                  "chunk_size": str(chunk_size)}
        async with self.session.get(f"{self.url}/query", params=params,
                                    timeout=aiohttp.ClientTimeout(total=None)) as resp:
            if resp.status in (401, 403):
                self.stats.auth_failures += 1
                raise InfluxAuthError(auth_advice(self.settings, resp.status, await resp.text()))
            if resp.status != 200:
                raise InfluxError(f"query failed ({resp.status}): {(await resp.text())[:300]}")
            buf = b""
            async for block in resp.content.iter_any():
                buf += block
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    for item in _chunk_series(raw):
                        yield item
            for item in _chunk_series(buf):
                yield item

    # -- writes --------------------------------------------------------------------------
    async def write(self, lines: Sequence[str], rp: str | None = None) -> list[tuple[str, str]]:
        """Store every line; returns the lines InfluxDB refused, each with its reason.

        ``rp``: the retention policy (urbanbrain/retention.py; v2: bucket ``<db>/<rp>``);
        None writes to the database's DEFAULT policy. A point older than the policy's
        duration is refused (InfluxDB: "points beyond retention policy").
        Blocks (retrying with backoff) while InfluxDB is unreachable or failing.
        """
        if self._session is None:
            await self.start()
        n = self.settings.influx_batch_points
        chunks = [lines[i : i + n] for i in range(0, len(lines), n)]
        if len(chunks) <= 1:
            return await self._write_chunk(chunks[0], rp) if chunks else []
        # Several requests at once: influxd parses and indexes each on its own core, and
        # our side waits for one round trip instead of one per chunk.
        sem = asyncio.Semaphore(self.settings.influx_write_concurrency)

        async def one(chunk: Sequence[str]) -> list[tuple[str, str]]:
            async with sem:
                return await self._write_chunk(chunk, rp)

        refused: list[tuple[str, str]] = []
        for r in await asyncio.gather(*(one(c) for c in chunks)):
            refused += r
        return refused

    async def _write_chunk(self, lines: Sequence[str], rp: str | None = None
                           ) -> list[tuple[str, str]]:
        if not lines:
            return []
        body = ("\n".join(lines)).encode("utf-8")
        delay = 0.1
        while True:
            try:
                if not self._db_ready:
                    await self.ensure_database()
                t0 = time.perf_counter()
                status, text = await self._post(body, rp)
                if status in (200, 204):
                    self.stats.points += len(lines)
                    self.stats.batches += 1
                    self.stats.last_batch_ms = (time.perf_counter() - t0) * 1000
                    return []
                if status == 400:
                    return await self._bisect(lines, text, rp)
                if status in (401, 403):
                    self.stats.auth_failures += 1
                    raise InfluxAuthError(auth_advice(self.settings, status, text))
                if status == 404 and "database not found" in text:
                    self._db_ready = False
                    raise InfluxError(text)
                if "retention policy not found" in text:  # 1.x answers 500: not an outage
                    raise InfluxSetupError(
                        f"InfluxDB database '{self.settings.influx_db}': {text.strip()[:120]}; "
                        "run `urbanbrain influx init` with admin credentials")
                raise InfluxError(f"HTTP {status}: {text[:300]}")
            except (InfluxAuthError, InfluxSetupError) as exc:
                # configuration, not an outage: no retry heals it
                if self.on_config_error is not None:
                    self.on_config_error(exc)
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, InfluxError) as exc:
                if self._closing:
                    raise
                key = type(exc).__name__
                self.stats.errors[key] = self.stats.errors.get(key, 0) + 1
                self.stats.retries += 1
                if self.stats.retries % 20 == 1:
                    log.warning("InfluxDB write failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)

    async def _bisect(self, lines: Sequence[str], error: str, rp: str | None = None
                      ) -> list[tuple[str, str]]:
        """A 400 means some line is bad (1.x writes the rest): find exactly which."""
        if len(lines) == 1:
            self.stats.rejected += 1
            return [(lines[0], error.strip()[:500])]
        mid = len(lines) // 2
        return (await self._write_chunk(lines[:mid], rp)
                + await self._write_chunk(lines[mid:], rp))

    async def _post(self, body: bytes, rp: str | None = None) -> tuple[int, str]:
        if await self._choose_api() == "v2":
            return await self._post_v2(body, rp)
        params = {"db": self.settings.influx_db, "precision": "ms"}
        if rp:
            params["rp"] = rp
        async with self.session.post(f"{self.url}/write", params=params, data=body) as resp:
            return resp.status, (await resp.text()) if resp.status >= 300 else ""

    async def _post_v2(self, body: bytes, rp: str | None = None) -> tuple[int, str]:
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
        from influxdb_client.domain.write_precision import WritePrecision

        s = self.settings
        if self._v2 is None:
            token = s.influx_token.get_secret_value() if s.influx_token else ""
            self._v2 = InfluxDBClientAsync(
                url=self.url, token=token, org=s.influx_org,
                timeout=int(s.influx_timeout_s * 1000),
            )
        try:
            await self._v2.write_api().write(
                bucket=f"{s.influx_db}/{rp}" if rp else s.influx_db, org=s.influx_org,
                record=body, write_precision=WritePrecision.MS,
            )
            return 204, ""
        except InfluxDBError as exc:
            status = getattr(exc.response, "status", 500) if exc.response is not None else 500
            return int(status or 500), str(exc)


def _chunk_series(raw: bytes) -> list[tuple[str, dict[str, str], list[str], list[list]]]:
    raw = raw.strip()
    if not raw:
        return []
    import orjson

    body = orjson.loads(raw)
    out = []
    for result in body.get("results", []):
        if "error" in result:
            raise InfluxError(f"query error: {result['error']}")
        for s in result.get("series", []):
            out.append((s.get("name", ""), s.get("tags") or {}, s["columns"], s["values"]))
    return out


def preflight(settings: Settings, *, timeout_s: float = 10.0) -> str | None:
    """Check the writer's InfluxDB configuration once, before a component starts.

    Raises :class:`InfluxAuthError` / :class:`InfluxSetupError` on a configuration error (the
    command prints the one line and exits). An unreachable server is *not* an error here:
    the component starts and its writer retries, because an InfluxDB outage must become
    consumer lag, never a component that refuses to run. Returns the version, or None when
    the server did not answer."""

    async def run() -> str | None:
        writer = InfluxWriter(settings)
        try:
            return await asyncio.wait_for(writer.check(), timeout_s)
        except (InfluxAuthError, InfluxSetupError):
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, InfluxError) as exc:
            log.warning("InfluxDB at %s not checked (%s): starting anyway, writes will retry",
                        settings.influx_url, exc or type(exc).__name__)
            return None
        finally:
            await writer.close()

    return asyncio.run(run())
