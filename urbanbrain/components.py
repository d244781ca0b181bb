"""urbanbrain commands run as real subprocesses: ``urbanbrain up``, tests and benchmarks.

Each component gets its own process group, so stopping it reaches everything it started,
and its own log file, which is how callers see it become ready.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Component:
    """``python -m urbanbrain.cli <args>`` with extra environment, logging to ``log_path``."""

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
                env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
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
