"""``urbanbrain simulate ...``: run, record, replay and write scenarios from the shell.

The typer app is ``app`` (the lead mounts it); the work is done by plain functions
(:func:`run_simulation`, :func:`replay`, :func:`write_scenario`) that ``urbanbrain up``
calls directly.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import TextColumn
from rich.table import Table

from urbanbrain.errors import BadValue
from urbanbrain.reach import require_mqtt
from urbanbrain.settings import Settings, get_settings
from urbanbrain.simulators.publisher import Progress
from urbanbrain.simulators.runner import RunResult, run_simulation

__all__ = ["app", "run_simulation", "RunResult"]

app = typer.Typer(help="City simulator: synthetic sensors, incidents, faults, replay.",
                  no_args_is_help=True)
console = Console(stderr=True)


def _duration(text: str | None, option: str = "") -> float | None:
    """"90", "90s", "15m", "2h", "7d" → seconds; anything else is one line (BadValue)."""
    from urbanbrain.durations import parse_seconds

    return parse_seconds(text, option) if text else None


def _start_ms(text: str | None) -> int | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        dt = None
    if dt is None or dt.tzinfo is None:
        raise BadValue(f"--start {text!r} is not a time with a zone: write ISO 8601, e.g. "
                       "2026-01-05T08:00:00+01:00")
    return int(dt.astimezone(timezone.utc).timestamp() * 1000)


def _check_options(size: str, fmt: str, faults: str = "off", qos: int = 1) -> None:
    """Refuse a bad option value before the live display starts: one line, exit 2."""
    from urbanbrain.simulators.city import SIZES
    from urbanbrain.simulators.faults import FaultConfig
    from urbanbrain.simulators.formats import FORMATS

    if not size.isdigit() and size not in SIZES:
        raise BadValue(f"--size {size!r}: use {', '.join(SIZES)} or a number of sensors")
    if fmt not in FORMATS:
        raise BadValue(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if qos not in (0, 1, 2):
        raise BadValue(f"--qos {qos}: use 0, 1 or 2")
    FaultConfig.parse(faults)


@contextmanager
def _bar(what: str, total: float) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr; yields the function that advances it by one step."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
             console=console, transient=True) as bar:
        task = bar.add_task(what, total=max(int(total), 1))
        yield lambda: bar.advance(task)


def _render(p: Progress, title: str) -> Table:
    t = Table(title=title, show_header=False, box=None)
    t.add_row("readings sent", f"{p.readings:,}")
    t.add_row("messages", f"{p.messages:,}")
    t.add_row("rate", f"{p.rate:,.0f} readings/s (mean {p.mean_rate:,.0f})")
    t.add_row("incidents so far", f"{p.incidents}")
    t.add_row("faults so far", f"{p.faults}")
    if p.sim_time_ms:
        sim = datetime.fromtimestamp(p.sim_time_ms / 1000, tz=timezone.utc)
        t.add_row("simulated time", sim.strftime("%Y-%m-%d %H:%M UTC"))
    t.add_row("elapsed", f"{p.elapsed_s:,.1f} s")
    return t


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum, frame):  # noqa: ANN001
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, handler)
        except ValueError:  # not in the main thread
            pass


def _settings(mqtt_url: str | None) -> Settings:
    s = get_settings()
    return s.model_copy(update={"mqtt_url": mqtt_url}) if mqtt_url else s


def _run_checked(*args, **kwargs) -> RunResult:  # noqa: ANN002, ANN003
    """:func:`run_simulation`, with SUMO's missing parts as a ValueError (one-line error)."""
    try:
        return run_simulation(*args, **kwargs)
    except RuntimeError as exc:
        if type(exc).__name__ == "SumoUnavailable":
            raise ValueError(f"SUMO mode unavailable: {exc}") from exc
        raise


@app.command()
def run(
    seed: int = typer.Option(42, help="Seed: same seed, same city, signals and incidents."),
    size: str = typer.Option("small", help="tiny|small|medium|large|xl or a sensor count."),
    rate: float = typer.Option(0.0, help="Cap on readings/s (0 = no cap)."),
    speed: float = typer.Option(1.0, help="Simulated seconds per second (60 = an hour a "
                                          "minute, 0 = as fast as possible)."),
    duration: Optional[str] = typer.Option(None, help="Stop after this wall time (90s, 15m, 2h)."),
    sim_duration: Optional[str] = typer.Option(None, help="Stop after this simulated time."),
    fmt: str = typer.Option("senml", "--format", help="json | senml | fiware"),
    interval: float = typer.Option(60.0, help="Seconds of simulated time between readings."),
    start: Optional[str] = typer.Option(None, help="Event time of the first tick (ISO 8601 "
                                                   "with zone); default now."),
    registry: Optional[Path] = typer.Option(None, help="Write the device registry CSV here."),
    ground_truth: Optional[Path] = typer.Option(None, help="Write incidents and faults here "
                                                           "(.jsonl or .csv)."),
    faults: str = typer.Option("off", help="off | light | heavy | stuck=0.1,malformed=0.01,..."),
    incidents: bool = typer.Option(True, help="Random incidents from the seed."),
    connections: int = typer.Option(2, help="MQTT connections (round-robin)."),
    qos: int = typer.Option(1, help="MQTT QoS."),
    pack_size: int = typer.Option(50, help="Sensors per SenML pack."),
    mqtt_url: Optional[str] = typer.Option(None, help="Override URBANBRAIN_MQTT_URL."),
    sumo: bool = typer.Option(False, help="Drive traffic loops from SUMO's E1 induction "
                                          "loops (built-in grid, or --sumo-net ...)."),
    sumo_net: Optional[Path] = typer.Option(None, help="SUMO mode: your network (.net.xml)."),
    sumo_routes: list[Path] = typer.Option([], "--sumo-routes", "--sumo-trips",
                                           help="SUMO mode: route or trip files (repeat)."),
    sumo_additional: list[Path] = typer.Option([], help="SUMO mode: additional files with "
                                                        "your E1 loops (repeat)."),
    sumo_workdir: Optional[Path] = typer.Option(None, help="SUMO mode: where the built-in "
                                                           "grid and SUMO's E1 XML go."),
) -> None:
    """Simulate the city live and publish to MQTT."""
    scenario = None
    sim_city = None
    if sumo or sumo_net or sumo_routes or sumo_additional:
        from urbanbrain.simulators.city import City as _City
        from urbanbrain.simulators.sumo import (NetGeometry, Scenario, SumoScenarioError,
                                                SumoUnavailable, load_sumo, sumo_home)

        sumo = True
        try:
            sumo_home()
            load_sumo()
            if sumo_net or sumo_routes or sumo_additional:
                if sumo_net is None:
                    raise SumoScenarioError("--sumo-routes/--sumo-additional need --sumo-net")
                scenario = Scenario.user(sumo_net, sumo_routes, sumo_additional)
                centre = NetGeometry.of(scenario.net).centre_latlon()
                if centre is not None:  # a geo-referenced network: the city lies around it
                    sim_city = _City.generate(seed, size, centre=centre)
        except SumoUnavailable as exc:
            raise BadValue(f"SUMO mode unavailable: {exc}") from exc
        except SumoScenarioError as exc:
            raise BadValue(f"SUMO scenario: {exc}") from exc
    stop = threading.Event()
    _stop_on_signals(stop)
    settings = _settings(mqtt_url)
    wall_s, sim_s = _duration(duration, "--duration"), _duration(sim_duration, "--sim-duration")
    start_ms = _start_ms(start)
    _check_options(size, fmt, faults, qos)
    require_mqtt(settings)
    try:
        with Live(_render(Progress(), "urbanbrain simulate"), console=console,
                  refresh_per_second=4) as live:
            result = _run_checked(
                settings, seed=seed, size=size, rate=rate or None, speed=speed,
                duration_s=wall_s, sim_duration_s=sim_s, fmt=fmt,
                interval_s=interval, start_ms=start_ms, registry_path=registry,
                ground_truth_path=ground_truth, faults=faults, incidents=incidents,
                connections=connections, qos=qos, pack_size=pack_size, stop_event=stop, sumo=sumo,
                sumo_workdir=sumo_workdir, sumo_scenario=scenario, city=sim_city,
                on_progress=lambda p: live.update(_render(p, "urbanbrain simulate")))
    except ValueError as exc:  # SumoScenarioError and bad options: one line (urbanbrain/errors)
        if isinstance(exc, BadValue):
            raise
        raise BadValue(str(exc)) from exc
    console.print(f"done: {result.progress.readings:,} readings, "
                  f"{result.progress.messages:,} messages, {result.progress.incidents} incidents; "
                  f"faults {result.faults.as_dict()}")


@app.command()
def record(
    out: Path = typer.Argument(..., help="Output file: .jsonl, .parquet or .csv."),
    from_mqtt: bool = typer.Option(False, help="Record a live MQTT feed instead of simulating."),
    topic: Optional[str] = typer.Option(None, help="Topic filter (default <prefix>/#)."),
    duration: str = typer.Option("1h", help="Simulated time to record, or wall time with "
                                            "--from-mqtt."),
    seed: int = typer.Option(42),
    size: str = typer.Option("small"),
    interval: float = typer.Option(60.0),
    start: Optional[str] = typer.Option(None),
    faults: str = typer.Option("off"),
    ground_truth: Optional[Path] = typer.Option(None),
    mqtt_url: Optional[str] = typer.Option(None),
) -> None:
    """Record a simulated run (offline, no MQTT) or a live MQTT feed to a file."""
    from urbanbrain.simulators.city import City
    from urbanbrain.simulators.engine import Simulation
    from urbanbrain.simulators.faults import FaultConfig
    from urbanbrain.simulators.incidents import GroundTruthWriter
    from urbanbrain.simulators.record import FrameTable, MqttRecorder, write_table

    secs = _duration(duration, "--duration") or 3600.0
    if from_mqtt:
        stop = threading.Event()
        _stop_on_signals(stop)
        rec = MqttRecorder(_settings(mqtt_url), topic=topic)
        t0 = time.monotonic()
        try:
            while not stop.wait(0.5) and time.monotonic() - t0 < secs:
                console.print(f"\r{len(rec.readings):,} readings, {rec.undecodable} undecodable",
                              end="")
        finally:
            rec.stop()
        rec.save(out)
        console.print(f"\nwrote {len(rec.readings):,} readings to {out}")
        return
    city = City.generate(seed, size)
    gt = GroundTruthWriter(ground_truth) if ground_truth else None
    sim = Simulation(city, seed, start_ms=_start_ms(start), interval_s=interval,
                     faults=FaultConfig.parse(faults), on_event=gt.write if gt else None)
    table = FrameTable(city)
    with _bar(f"simulating {secs / 3600:g} h", secs / interval) as advance:
        for frame in sim.frames(until_ms=sim.start_ms + int(secs * 1000)):
            table.add(frame)
            advance()
    if gt:
        gt.close()
    with console.status(f"writing {out}"):
        write_table(table.to_frame(), out)
    console.print(f"wrote {table.readings:,} readings ({sim.ticks} ticks) to {out}")


@app.command()
def replay(
    path: Path = typer.Argument(..., help="Recording: .jsonl, .parquet or .csv."),
    speed: float = typer.Option(1.0, help="Speed factor (0 = as fast as possible)."),
    fmt: str = typer.Option("json", "--format", help="json | senml | fiware"),
    rate: float = typer.Option(0.0, help="Cap on readings/s (0 = no cap)."),
    connections: int = typer.Option(2),
    qos: int = typer.Option(1),
    mqtt_url: Optional[str] = typer.Option(None),
) -> None:
    """Replay a recording to MQTT, keeping its event timestamps."""
    from urbanbrain.simulators.replay import replay as do_replay

    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    _check_options("small", fmt, qos=qos)
    stop = threading.Event()
    _stop_on_signals(stop)
    require_mqtt(_settings(mqtt_url))
    with Live(_render(Progress(), f"replay {path.name}"), console=console,
              refresh_per_second=4) as live:
        p = do_replay(_settings(mqtt_url), path, speed=speed, fmt=fmt, rate=rate or None,
                      connections=connections, qos=qos, stop_event=stop,
                      on_progress=lambda p: live.update(_render(p, f"replay {path.name}")))
    console.print(f"replayed {p.readings:,} readings in {p.elapsed_s:.1f} s")


@app.command()
def scenario(
    out: Path = typer.Argument(Path("standard-week.parquet"),
                               help="Readings file (.parquet, .csv or .jsonl); ground truth, "
                                    "registry and manifest are written beside it."),
    name: str = typer.Option("standard-week", help="Scenario name."),
    days: Optional[float] = typer.Option(None, help="Only the first N days."),
) -> None:
    """Write a named scenario (default standard-week) to files, offline and fast."""
    from urbanbrain.simulators.scenario import write_scenario

    t0 = time.monotonic()
    with console.status(f"writing {name} (the whole week takes a minute or two)"):
        paths = write_scenario(out, name, days=days)
    console.print(f"wrote {name} in {time.monotonic() - t0:.1f} s:")
    for k, p in paths.items():
        console.print(f"  {k}: {p}")


@app.command()
def city(
    out_dir: Path = typer.Argument(Path("city"), help="Directory for registry and GeoJSON."),
    seed: int = typer.Option(42),
    size: str = typer.Option("small"),
) -> None:
    """Write the city's device registry CSV and GeoJSON (districts, sensors, roads)."""
    from urbanbrain.simulators.city import City

    c = City.generate(seed, size)
    reg = c.write_registry(out_dir / "registry.csv")
    geo = c.write_geojson(out_dir)
    console.print(f"{len(c.sensors)} sensors in {len(c.districts)} districts: {c.summary()}")
    for p in [reg, *geo]:
        console.print(f"  {p}")
