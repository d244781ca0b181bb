"""urbanbrain commands run as real subprocesses: ``urbanbrain up``, tests and benchmarks.

Each component gets its own process group, so stopping it reaches everything it started,
and its own log file, which is how callers see it become ready.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Role-scoped keys of :meth:`urbanbrain.localstack.LocalStack.env`.
ROLE_PREFIX = "UB_ROLE__"
#: The compose service (and so the users) each command runs as.
COMMAND_ROLES = {"ingest": "ingest", "streams": "streams", "simulate": "simulator",
                 "dashboards": "reader", "console": "console", "alerts": "console", "silences": "console",
                 "rules": "streams"}


def role_of(args: Sequence[str]) -> str | None:
    """The role of an ``urbanbrain`` command line (``["streams", "worker"]`` → streams)."""
    return COMMAND_ROLES.get(args[0]) if args else None


def role_env(env: Mapping[str, str], role: str | None) -> dict[str, str]:
    """``env`` with the credentials of ``role`` only: its role-scoped keys become the plain
    ``URBANBRAIN_*`` ones, every other role's are dropped. Why: a process should hold no
    password it does not use (ingest never sees the alert publisher's)."""
    out = {k: v for k, v in env.items() if not k.startswith(ROLE_PREFIX)}
    if role is not None:
        mine = f"{ROLE_PREFIX}{role}__"
        out.update({k[len(mine):]: v for k, v in env.items() if k.startswith(mine)})
    return out


@dataclass
class Component:
    """``python -m urbanbrain.cli <args>`` with extra environment, logging to ``log_path``.

    The process gets the credentials of its command's role only (:func:`role_env`)."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self, *, fresh_log: bool = False) -> Component:
        """Start; ``fresh_log`` truncates the log so old lines can't pass for readiness."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb" if fresh_log else "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "urbanbrain.cli", *self.args],
                env=role_env({**os.environ, **self.env}, role_of(self.args)), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group, SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
