"""Session-wide real servers: mosquitto, tansu and influxd on free 127.0.0.1 ports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Component

from urbanbrain.localstack import LocalStack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The three real servers, shared by the whole session and stopped at its end."""
    s = LocalStack(tmp_path_factory.mktemp("stack")).start()
    yield s
    s.stop()


@pytest.fixture
def run_id() -> str:
    """A token that keeps one test's data apart from the others' on shared servers."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def components(tmp_path: Path) -> Iterator[list[Component]]:
    """Start urbanbrain subprocesses through this list; all are stopped after the test."""
    started: list[Component] = []
    yield started
    for c in reversed(started):
        c.stop()


def component_env(stack: LocalStack, run_id: str, **extra: str) -> dict[str, str]:
    env = stack.env()
    env.update({
        "URBANBRAIN_INFLUX_DB": f"test_{run_id}",
        "URBANBRAIN_STREAMS_APP_ID": f"urbanbrain-test-{run_id}",
        "URBANBRAIN_MQTT_CLIENT_ID": f"ingest-{run_id}",
        "URBANBRAIN_INGEST_LINGER_MS": "20",
    })
    env.update(extra)
    return env


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """Servers of this test alone, for tests whose event times must not meet others' data
    (event-time state such as alert rules and windows) or that stop/kill a server."""
    s = LocalStack(tmp_path / "stack").start()
    yield s
    s.stop()
