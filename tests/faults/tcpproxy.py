"""A TCP proxy whose connections a test can cut: the "broker dropped its clients" fault.

Why a proxy and not a broker restart: the local Kafka broker (tansu) keeps its log in
memory, so restarting it would lose every record and test nothing but the data loss we
caused. Between the clients and tansu, this proxy can reset *every* client connection at
once (and refuse new ones for a while), which is what clients see when a broker restarts
or a network path flaps: producers with requests in flight, consumers mid-fetch, the group
coordinator connection, Faust's changelog producer. tansu must advertise the proxy's port
(``LocalStack(kafka_advertised_port=...)``), otherwise clients would learn the real port from
the metadata and bypass the proxy after the bootstrap.

An asyncio loop in a daemon thread relays bytes both ways; ``drop_all`` resets both sides
of each pair (SO_LINGER 0 → RST, like a crashed peer; a FIN would be a polite close).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Self


@dataclass
class ProxyStats:
    accepted: int = 0  # client connections relayed to the upstream
    refused: int = 0  # client connections reset during a blackout or when upstream is down
    dropped: int = 0  # live pairs cut by drop_all
    bytes_up: int = 0  # client → upstream
    bytes_down: int = 0  # upstream → client


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST: SO_LINGER on, timeout 0, then abort."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class TcpProxy:
    """127.0.0.1:<port> → 127.0.0.1:<upstream_port>.

    ``upstream_port`` may be set after :meth:`start` (before the first client connects):
    the broker is started *after* the proxy, because it must be told the proxy's port.
    """

    def __init__(self, upstream_port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.port: int = 0
        self.stats = ProxyStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._refuse_until = 0.0  # time.monotonic(); new connections are reset before it

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, self.host, 0, backlog=256)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                error.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="tcpproxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if error:
            raise error[0]
        if not self.port:
            raise RuntimeError("proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            self._cut()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the fault -------------------------------------------------------------------------
    def drop_all(self, refuse_for_s: float = 0.0) -> int:
        """Reset every live connection (both sides); reset new ones for ``refuse_for_s``.

        Returns how many client connections were cut."""
        assert self._loop is not None, "start() first"

        async def cut() -> int:
            self._refuse_until = time.monotonic() + refuse_for_s
            return self._cut()

        return asyncio.run_coroutine_threadsafe(cut(), self._loop).result(10)

    @property
    def live(self) -> int:
        """Client connections currently relayed."""
        return len(self._pairs)

    def _cut(self) -> int:
        pairs = list(self._pairs)
        self._pairs.clear()
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)
        self.stats.dropped += len(pairs)
        return len(pairs)

    # -- relaying --------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refuse_until or self.upstream_port is None:
            self.stats.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            self.stats.refused += 1
            _reset(writer)
            return
        for w in (writer, up_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = (writer, up_writer)
        self._pairs.add(pair)
        self.stats.accepted += 1
        try:
            await asyncio.gather(self._pipe(reader, up_writer, "bytes_up"),
                                 self._pipe(up_reader, writer, "bytes_down"))
        finally:
            if pair in self._pairs:  # ended by a peer, not by drop_all
                self._pairs.discard(pair)
                for w in pair:
                    w.transport.abort()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    counter: str) -> None:
        try:
            while True:
                data = await src.read(256 * 1024)
                if not data:
                    break
                # counted before the write, so a peer that got the bytes sees them counted
                setattr(self.stats, counter, getattr(self.stats, counter) + len(data))
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # Half-close is not worth modelling: Kafka clients treat EOF as a dead connection.
            dst.transport.abort()
