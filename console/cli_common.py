"""What the console's commands share: one-line errors, the acting user, reading the view."""

from __future__ import annotations

import asyncio
import getpass
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from rich.console import Console

from urbanbrain.errors import EX_UNAVAILABLE, ActionableError
from urbanbrain.settings import Settings, get_settings

T = TypeVar("T")
err = Console(stderr=True)
out = Console()
#: The role recorded for actions taken from the command line: whoever can reach Kafka with
#: the console's credentials (in compose: `docker compose exec console urbanbrain ...`).
CLI_ROLE = "cli"


def fail(message: str, code: int = 1) -> ActionableError:
    """The error to raise: the command line's one handler (urbanbrain/errors.py) prints
    ``error: <message>`` as one line and exits with ``code``."""
    return ActionableError(message, exit_code=code)


def cli_user() -> str:
    """The operating-system user and host, which is who acts from a shell."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return f"{name}@{socket.gethostname()}"


def run_kafka(settings: Settings, what: Callable[[], Awaitable[T]]) -> T:
    """Run ``what`` and turn an unreachable or refusing Kafka into one line."""
    import logging

    from aiokafka.errors import KafkaConnectionError, KafkaError

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # its errors become our one line
    try:
        return asyncio.run(what())
    except (KafkaConnectionError, OSError) as exc:
        raise fail(f"Kafka at {settings.kafka_bootstrap} unreachable ({exc}): start the stack "
                   "or set URBANBRAIN_KAFKA_BOOTSTRAP", EX_UNAVAILABLE) from None
    except TimeoutError as exc:
        raise fail(f"{exc}: is Kafka at {settings.kafka_bootstrap} overloaded?") from None
    except KafkaError as exc:
        raise fail(f"Kafka at {settings.kafka_bootstrap} refused: {exc}") from None


def settings() -> Settings:
    return get_settings()


def when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def ago(ms: int, now: int) -> str:
    s = max(0, (now - ms) / 1000)
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.0f}d"
