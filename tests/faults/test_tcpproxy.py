"""The fault proxy itself, against a local echo server (no urbanbrain servers): it relays
both ways, ``drop_all`` really cuts live connections, and a blackout refuses new ones."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from faults.tcpproxy import TcpProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_port():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_relays_cuts_and_refuses(echo_port):
    with TcpProxy(echo_port) as proxy:
        big = bytes(range(256)) * 4096  # 1 MiB: several reads and drains each way
        assert _roundtrip(proxy.port, big) == big

        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        live.sendall(b"ping")
        assert live.recv(16) == b"ping"
        assert proxy.drop_all(refuse_for_s=1.0) == 1
        # the cut connection is dead: EOF or a reset, never an answer
        try:
            live.sendall(b"again")
            assert live.recv(16) == b""
        except ConnectionError:
            pass
        live.close()

        # during the blackout a new connection is reset before any byte is relayed
        with pytest.raises((ConnectionError, AssertionError)):
            assert _roundtrip(proxy.port, b"x") == b"x"
        time.sleep(1.1)
        assert _roundtrip(proxy.port, b"back") == b"back"
        assert proxy.stats.dropped == 1 and proxy.stats.refused >= 1
        assert proxy.stats.bytes_up == proxy.stats.bytes_down
