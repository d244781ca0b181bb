"""Servers ``urbanbrain up --keep`` leaves running: where they are, how to reach and stop them.

Why a file: ``up`` ends, its servers do not, and the next command (``dashboards snapshot``,
``urbanbrain down``, the next ``up``) runs in another process. ``<data>/stack/kept.json``
records each server's pid, port and program; ``reader.env`` (mode 0600, beside
``credentials.json``) holds the settings of the dashboards' read-only user, so a look at
the data needs no copying of passwords by hand.

A pid alone is not trusted (the kernel reuses them): a kept server counts as running only
while ``/proc/<pid>/cmdline`` still names its program.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from urbanbrain.components import role_env
from urbanbrain.errors import ActionableError
from urbanbrain.localstack import LocalStack

KEPT_FILE = "kept.json"
READER_ENV = "reader.env"


@dataclass(frozen=True)
class KeptServer:
    name: str
    pid: int
    port: int
    program: str

    @property
    def running(self) -> bool:
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return os.path.basename(self.program).encode() in cmdline


def stack_dir(data_dir: Path) -> Path:
    return data_dir / "stack"


def save(stack: LocalStack) -> Path:
    """Record the running servers of ``stack`` and write the reader's settings file."""
    servers = [
        {"name": s.name, "pid": s.proc.pid, "port": s.port, "program": s.argv[0]}
        for s in (stack.mqtt, stack.kafka, stack.influx) if s is not None and s.proc is not None
    ]
    path = stack.workdir / KEPT_FILE
    path.write_text(json.dumps({"servers": servers, "env": _public_env(stack)}, indent=1))
    reader = stack.workdir / READER_ENV
    reader.touch(mode=0o600, exist_ok=True)
    reader.chmod(0o600)
    reader.write_text("".join(f"{k}={v}\n" for k, v in sorted(
        role_env(stack.env(), "reader").items())))
    return path


def _public_env(stack: LocalStack) -> dict[str, str]:
    """Addresses only, no passwords (those stay in the 0600 files)."""
    return {k: v for k, v in stack.env().items()
            if k.startswith("URBANBRAIN_") and "PASSWORD" not in k}


def load(data_dir: Path) -> list[KeptServer]:
    """Kept servers recorded under ``data_dir`` that are still running."""
    try:
        doc = json.loads((stack_dir(data_dir) / KEPT_FILE).read_text())
    except (OSError, ValueError):
        return []
    servers = [KeptServer(s["name"], int(s["pid"]), int(s["port"]), s["program"])
               for s in doc.get("servers", [])]
    return [s for s in servers if s.running]


#: What a previous run's servers left under the stack folder (credentials.json is rewritten).
SERVER_DIRS = ("mosquitto", "tansu", "influxdb")


def clear_server_state(workdir: Path) -> None:
    """Remove a previous run's server data: its InfluxDB already has users this run's
    random passwords cannot log in as, and tansu keeps nothing across restarts anyway."""
    import shutil

    for name in SERVER_DIRS:
        shutil.rmtree(workdir / name, ignore_errors=True)
    for name in (KEPT_FILE, READER_ENV):
        (workdir / name).unlink(missing_ok=True)


def refuse_if_running(data_dir: Path) -> None:
    """One line instead of a second stack fighting the first over its data folders."""
    running = load(data_dir)
    if running:
        names = ", ".join(f"{s.name} (pid {s.pid}, port {s.port})" for s in running)
        raise ActionableError(
            f"servers kept by `urbanbrain up --keep` still run on {data_dir}: {names}: stop "
            f"them with `urbanbrain down`, or set URBANBRAIN_DATA_DIR to another folder")


def stop(data_dir: Path, timeout: float = 15.0) -> list[KeptServer]:
    """SIGTERM each kept server (SIGKILL after ``timeout``); returns those stopped."""
    running = load(data_dir)
    for s in running:
        try:
            os.killpg(s.pid, signal.SIGTERM)  # each server leads its own process group
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(s.running for s in running):
        time.sleep(0.1)
    for s in running:
        if s.running:
            try:
                os.killpg(s.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    (stack_dir(data_dir) / KEPT_FILE).unlink(missing_ok=True)
    return running


def how_to_reach(stack: LocalStack, data_dir: Path) -> list[str]:
    """Lines for the person at the terminal: addresses, logins, a look, how to stop."""
    env = stack.env()
    creds = stack.workdir / "credentials.json"
    reader = stack.workdir / READER_ENV
    lines = ["[bold]servers kept running[/] (stop them with [bold]urbanbrain down[/]):"]
    if stack.mqtt:
        lines.append(f"  MQTT      {env['URBANBRAIN_MQTT_URL']}")
    if stack.kafka:
        lines.append(f"  Kafka     {env['URBANBRAIN_KAFKA_BOOTSTRAP']}")
    if stack.influx:
        lines.append(f"  InfluxDB  {env['URBANBRAIN_INFLUX_URL']}  database "
                     f"{env['URBANBRAIN_INFLUX_DB']}")
    lines.append(f"  logins    {creds} (every account, mode 0600)")
    lines.append(f"  a look    env $(cat {reader}) urbanbrain dashboards snapshot")
    if data_dir.resolve() != Path("var").resolve():
        lines.append(f"  stop      URBANBRAIN_DATA_DIR={data_dir} urbanbrain down")
    return lines
