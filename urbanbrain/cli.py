"""The ``urbanbrain`` command line: one subcommand per concern.

Each room that has commands of its own exposes a typer app in ``<room>/cli.py``; this file
only mounts them, so the core knows no room's options.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Annotated

import typer
from rich.console import Console

from urbanbrain.settings import Settings, get_settings

app = typer.Typer(
    name="urbanbrain",
    help="Real-time IoT stream processing for a city operations centre.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

kafka_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
streams_app = typer.Typer(help="Faust stream processors.", no_args_is_help=True)
influx_app = typer.Typer(help="InfluxDB database and retention policies.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(influx_app, name="influx")
app.add_typer(streams_app, name="streams")

# Rooms with their own commands: (module, command name, help).
_ROOM_APPS = (
    ("urbanbrain.simulators.cli", "simulate", "Simulate a city: publish readings, record, replay."),
    ("urbanbrain.rules.cli", "rules", "Alert rules: check, test, backtest."),
    ("urbanbrain.ingest.devices_cli", "devices", "Device profiles: check, test."),
    ("urbanbrain.dashboards.cli", "dashboards", "Grafana dashboards: push, snapshot."),
    ("urbanbrain.console.cli", "console", "The operations console (web) and its users."),
    ("urbanbrain.console.alerts_cli", "alerts", "Alerts: list, ack, assign, silence, audit."),
    ("urbanbrain.console.silences_cli", "silences", "Silences: list, expire."),
)
for _module, _name, _help in _ROOM_APPS:
    try:
        _room = importlib.import_module(_module)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise
        continue
    app.add_typer(_room.app, name=_name, help=_help)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


LogLevel = Annotated[str, typer.Option("--log-level", "-l", help="debug, info, warning, error")]

#: sysexits.h EX_CONFIG: a configuration error that no restart heals by itself.
EX_CONFIG = 78


def _influx_preflight(settings: Settings) -> None:
    """Refuse to start, with one line, when InfluxDB refuses our user or database, or the
    database lacks its retention policies."""
    from urbanbrain.influx import InfluxAuthError, InfluxSetupError
    from urbanbrain.retention import preflight

    try:
        preflight(settings)
    except (InfluxAuthError, InfluxSetupError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EX_CONFIG) from None


MetricsPort = Annotated[int | None, typer.Option(
    "--metrics-port", help="serve /livez, /readyz, /healthz, /metrics on this port "
    "(URBANBRAIN_METRICS_PORT; host URBANBRAIN_METRICS_HOST, default 127.0.0.1)")]


def _with_metrics_port(settings: Settings, port: int | None) -> Settings:
    return settings.model_copy(update={"metrics_port": port}) if port is not None else settings


@app.command()
def ingest(log_level: LogLevel = "info", metrics_port: MetricsPort = None) -> None:
    """Run the MQTT → Kafka ingest bridge until stopped."""
    from urbanbrain.ingest.bridge import run_bridge

    _logging(log_level)
    settings = _with_metrics_port(get_settings(), metrics_port)
    _influx_preflight(settings)
    run_bridge(settings)


@streams_app.command("worker")
def streams_worker(log_level: LogLevel = "info", metrics_port: MetricsPort = None) -> None:
    """Run one Faust worker; start more to split the partitions."""
    from urbanbrain.streams.app import run_worker

    settings = _with_metrics_port(get_settings(), metrics_port)
    _influx_preflight(settings)
    run_worker(settings, loglevel=log_level)


@kafka_app.command("init")
def kafka_init() -> None:
    """Create the Kafka topics (idempotent)."""
    from urbanbrain.kafka import ensure_topics

    created = asyncio.run(ensure_topics(get_settings()))
    console.print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")


@influx_app.command("init")
def influx_init() -> None:
    """Create the database and its retention policies, as admin (idempotent)."""
    from urbanbrain.retention import run_init

    raise typer.Exit(run_init(get_settings(), console))


@influx_app.command("check")
def influx_check() -> None:
    """Check, as the writer, that every retention policy exists (exit 78 if not)."""
    from urbanbrain.retention import run_check

    raise typer.Exit(run_check(get_settings(), console))


@app.command()
def up(
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    rate: Annotated[float, typer.Option(help="simulated readings per second")] = 2000.0,
    size: Annotated[str, typer.Option(help="city size: small, medium, large")] = "small",
    seed: Annotated[int, typer.Option(help="city seed")] = 7,
    workers: Annotated[int, typer.Option(help="Faust workers")] = 1,
) -> None:
    """Run the whole pipeline on an embedded local stack (no Docker) with live progress."""
    from urbanbrain.up import run_up

    raise typer.Exit(run_up(get_settings(), duration=duration, rate=rate, size=size,
                            seed=seed, workers=workers))


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings (secrets masked)."""
    s: Settings = get_settings()
    for name, value in s.model_dump().items():
        console.print(f"URBANBRAIN_{name.upper()}={value}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
