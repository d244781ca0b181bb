"""The ``urbanbrain`` command line: one subcommand per concern.

Each room that has commands of its own exposes a typer app in ``<room>/cli.py``; this file
only mounts them, so the core knows no room's options.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperGroup

from urbanbrain.errors import EX_USAGE, BadValue, debug_enabled, describe
from urbanbrain.settings import Settings, get_settings


def print_error(line: str) -> None:
    """``error: <line>`` on stderr, never wrapped (a terminal's width must not split it)."""
    typer.echo(typer.style("error:", fg="red", bold=True) + " " + line, err=True)


class CommandGroup(TyperGroup):
    """The root command: runs every subcommand inside the one error handler.

    Any exception a command lets through becomes one line and an exit code
    (:func:`urbanbrain.errors.describe`); typer's usage errors (a bad option value, an
    unknown command) become one line too. Why here: every room's commands are mounted below
    this group, so no command needs a try/except of its own. ``URBANBRAIN_DEBUG=1`` shows
    the traceback instead."""

    def invoke(self, ctx: typer.Context) -> object:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as exc:  # typer's (vendored click's) own errors
            if debug_enabled() or type(exc).__name__ == "NoArgsIsHelpError":
                raise  # help for a bare group, printed by typer
            sub = getattr(exc, "ctx", None)
            hint = f" (see: {sub.command_path} --help)" if sub is not None else ""
            print_error(f"{exc.format_message()}{hint}")
            ctx.exit(getattr(exc, "exit_code", EX_USAGE) or EX_USAGE)
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the one handler
            if debug_enabled():
                raise
            line, code = describe(exc)
            print_error(line)
            ctx.exit(code)
        return None  # pragma: no cover - ctx.exit raises


app = typer.Typer(
    name="urbanbrain",
    help="Real-time IoT stream processing for a city operations centre.",
    no_args_is_help=True,
    add_completion=False,
    cls=CommandGroup,
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

def _influx_preflight(settings: Settings) -> None:
    """Refuse to start, with one line (exit 78, EX_CONFIG), when InfluxDB refuses our user
    or database, or the database lacks its retention policies (urbanbrain/retention.py):
    :class:`~urbanbrain.influx.InfluxAuthError`/``InfluxSetupError`` are actionable errors."""
    from urbanbrain.retention import preflight

    preflight(settings)


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


Rules = Annotated[list[Path] | None, typer.Option(
    "--rules", help="rule file or folder (repeatable), added to the starter rules "
    "(URBANBRAIN_ALERT_RULES_PATH)")]
StarterRules = Annotated[bool, typer.Option(
    "--starter-rules/--no-starter-rules", help="load the starter rules (rules/city) beside "
    "--rules; --no-starter-rules: only yours")]
Webhooks = Annotated[list[str] | None, typer.Option(
    "--webhook", help="Alertmanager-compatible receiver URL (repeatable; "
    "URBANBRAIN_ALERT_WEBHOOK_URLS)")]


def _alert_env(rules: list[Path] | None, webhooks: list[str] | None, starter: bool
               ) -> dict[str, str]:
    """The URBANBRAIN_ALERT_* values the options mean, with the rule files checked."""
    from urbanbrain.rules.deploy import (
        RULES_ENV, WEBHOOKS_ENV, alert_environment, check_rules, configured_rule_paths,
    )

    env = alert_environment(rules or [], webhooks or [], starter=starter)
    paths = env[RULES_ENV].split(",") if RULES_ENV in env else configured_rule_paths()
    n = check_rules(paths)
    console.print(f"alert rules: {n} from {', '.join(map(str, paths))}", soft_wrap=True)
    hooks = env.get(WEBHOOKS_ENV) or os.environ.get(WEBHOOKS_ENV, "")
    if hooks:
        from urbanbrain.settings_report import mask_url

        console.print("alert webhooks: " + ", ".join(mask_url(u) for u in hooks.split(",")),
                      soft_wrap=True)
    return env


@streams_app.command("worker")
def streams_worker(log_level: LogLevel = "info", metrics_port: MetricsPort = None,
                   rules: Rules = None, starter_rules: StarterRules = True,
                   webhook: Webhooks = None) -> None:
    """Run one Faust worker; start more to split the partitions."""
    os.environ.update(_alert_env(rules, webhook, starter_rules))  # read by AlertSettings
    from urbanbrain.streams.app import run_worker

    settings = _with_metrics_port(get_settings(), metrics_port)
    _influx_preflight(settings)
    run_worker(settings, loglevel=log_level)


@streams_app.command("store-raw")
def streams_store_raw(log_level: LogLevel = "info", metrics_port: MetricsPort = None) -> None:
    """Store raw points in a consumer group of their own (pair with workers run with
    URBANBRAIN_STREAMS_RAW_POINTS=own-group); start more to split the partitions."""
    from urbanbrain.streams.raw_store import run_raw_store
    from urbanbrain.streams.settings import StreamsSettings

    _logging(log_level)
    settings = StreamsSettings.from_base(_with_metrics_port(get_settings(), metrics_port))
    _influx_preflight(settings)
    run_raw_store(settings)


@kafka_app.command("init")
def kafka_init(
    wait: Annotated[float, typer.Option(
        help="seconds to wait for the brokers before giving up (longer in a compose init)")
    ] = 10.0,
) -> None:
    """Create the Kafka topics (idempotent)."""
    from urbanbrain.kafka import ensure_topics

    settings = get_settings()
    # the spinner says we wait, the one line says why we stopped: no library retry chatter
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    logging.getLogger("urbanbrain.kafka").setLevel(logging.ERROR)
    with console.status(f"Kafka at {settings.kafka_bootstrap}: creating topics "
                        f"(waiting up to {wait:g} s for the brokers)"):
        created = asyncio.run(ensure_topics(settings, wait_s=wait))
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
    keep: Annotated[bool, typer.Option(
        "--keep", help="leave mosquitto, Kafka and InfluxDB running afterwards, for a look "
        "(dashboards snapshot); `urbanbrain down` stops them")] = False,
    rules: Rules = None,
    starter_rules: StarterRules = True,
    webhook: Webhooks = None,
) -> None:
    """Run the whole pipeline on an embedded local stack (no Docker) with live progress."""
    from urbanbrain.up import run_up

    from urbanbrain import kept

    if duration is not None and duration <= 0:
        raise BadValue(f"--duration {duration:g}: give a number of seconds above 0")
    kept.refuse_if_running(get_settings().data_dir.resolve())
    extra = _alert_env(rules, webhook, starter_rules)
    raise typer.Exit(run_up(get_settings(), duration=duration, rate=rate, size=size,
                            seed=seed, workers=workers, keep=keep, extra_env=extra))


@app.command()
def down() -> None:
    """Stop the servers `urbanbrain up --keep` left running (under URBANBRAIN_DATA_DIR)."""
    from urbanbrain import kept

    data = get_settings().data_dir.resolve()
    stopped = kept.stop(data)
    if not stopped:
        console.print(f"nothing kept running under {data}")
        return
    console.print("stopped " + ", ".join(f"{s.name} (pid {s.pid})" for s in stopped))


@app.command("settings")
def show_settings(
    all_: Annotated[bool, typer.Option("--defaults/--no-defaults",
                                       help="also list settings left at their default")] = True,
) -> None:
    """Print every setting of every settings object (secrets masked), as environment
    variables: what this process would run with."""
    from urbanbrain.settings_report import report

    for line in report(include_defaults=all_):
        typer.echo(line)



def main() -> None:
    app(prog_name="urbanbrain")  # also under `python -m urbanbrain.cli` (components)


if __name__ == "__main__":
    main()
