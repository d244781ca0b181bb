"""Session-wide real servers: mosquitto, tansu and influxd on free 127.0.0.1 ports.

They run the production security model (urbanbrain/localstack.py): InfluxDB with auth and
the compose users, mosquitto with passwords and the production ACL. Every component logs
in as its compose user; assertions read InfluxDB as the dashboards' reader.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Component

from urbanbrain.components import role_env
from urbanbrain.localstack import PRODUCTION_ACL, LocalStack
from urbanbrain.settings import Settings

#: A test-only MQTT account that may publish anything under ``city/``: it stands for what
#: the production ACL keeps away from ingest (a device on a misconfigured broker, a bridge
#: from another broker), so that ingest's own refusals (unknown domain, bad topic) are
#: tested. Production's accounts and ACL lines are unchanged; this one is appended.
INJECTOR = "test-injector"
INJECTOR_PASSWORD = secrets.token_urlsafe(12)
#: the vendor topic trees of the sample device profiles
SAMPLE_VENDOR_TOPICS = ("vendor", "metro", "loopx", "loopx-strict")


def make_stack(workdir: Path, **kwargs: object) -> LocalStack:
    """A :class:`LocalStack` with the production accounts plus :data:`INJECTOR`."""
    workdir.mkdir(parents=True, exist_ok=True)
    acl = workdir / "acl-with-injector"
    # tests only: the injector, and the vendor topic trees of the sample device profiles
    # (ingest/profiles/samples), granted to ingest as the production ACL's comment says
    acl.write_text(PRODUCTION_ACL.read_text().replace(
        "user urbanbrain-ingest\ntopic read city/#\n",
        "user urbanbrain-ingest\ntopic read city/#\n" + "".join(
            f"topic read {t}/#\n" for t in SAMPLE_VENDOR_TOPICS))
        + f"\n# tests only\nuser {INJECTOR}\ntopic write city/#\n"
        + "".join(f"topic write {t}/#\n" for t in SAMPLE_VENDOR_TOPICS))
    return LocalStack(workdir, extra_mqtt_accounts={INJECTOR: INJECTOR_PASSWORD},
                      mqtt_acl=acl, **kwargs)  # type: ignore[arg-type]


def role_settings(stack: LocalStack, role: str, **overrides: object) -> Settings:
    """Settings of a process running as ``role`` (ingest, streams, simulator, console,
    reader) against ``stack``, as :class:`urbanbrain.components.Component` would get them."""
    env = role_env(stack.env(), role)
    values = {k[len("URBANBRAIN_"):].lower(): v for k, v in env.items()
              if k.startswith("URBANBRAIN_")}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The three real servers, shared by the whole session and stopped at its end."""
    s = make_stack(tmp_path_factory.mktemp("stack")).start()
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
    """Environment of this test's components: its own database (created by the admin with
    the writer's and reader's grants, as compose's first start does), app id and client."""
    env = stack.env()
    env.update({
        "URBANBRAIN_INFLUX_DB": stack.provision_database(f"test_{run_id}"),
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
    s = make_stack(tmp_path / "stack").start()
    yield s
    s.stop()
