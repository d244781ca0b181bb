"""``urbanbrain dashboards``: push the dashboards to Grafana, render snapshots, regenerate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Grafana dashboards: push, snapshot, build.", no_args_is_help=True)
console = Console(stderr=True)


def _models() -> dict[str, dict]:
    from urbanbrain.dashboards.build import build

    return build()


@app.command()
def push(
    url: Annotated[str, typer.Option(envvar="URBANBRAIN_GRAFANA_URL",
                                     help="Grafana base URL")] = "http://127.0.0.1:3000",
    token: Annotated[str | None, typer.Option(envvar="URBANBRAIN_GRAFANA_TOKEN",
                                              help="service-account token")] = None,
    folder: Annotated[str, typer.Option(help="folder title")] = "urbanbrain",
    folder_uid: Annotated[str, typer.Option(help="folder uid")] = "urbanbrain",
    timeout: float = 10.0,
) -> None:
    """Create/update the folder and post every dashboard (overwrite, fixed uids)."""
    from urbanbrain.dashboards.push import PushError
    from urbanbrain.dashboards.push import push as do_push

    try:
        res = do_push(url, token, _models(), folder_uid=folder_uid, folder_title=folder,
                      timeout=timeout)
    except PushError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    verb = "created" if res.folder_created else "updated"
    console.print(f"folder {res.folder_uid} {verb}; pushed {len(res.dashboards)} dashboards: "
                  + ", ".join(res.dashboards))


def _pick_dashboards(models: dict[str, dict], wanted: list[str] | None) -> dict[str, dict]:
    """The dashboards named by uid (``urbanbrain-traffic``) or short name (``traffic``)."""
    from urbanbrain.errors import BadValue

    if not wanted:
        return models
    by_name = {m["uid"]: k for k, m in models.items()}
    by_name.update({m["uid"].removeprefix("urbanbrain-"): k for k, m in models.items()})
    picked: dict[str, dict] = {}
    for w in wanted:
        if w not in by_name:
            import difflib

            close = difflib.get_close_matches(w, list(by_name), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            known = ", ".join(sorted(m["uid"] for m in models.values()))
            raise BadValue(f"--dashboard {w!r}: no such dashboard: {hint}known: {known}")
        picked[by_name[w]] = models[by_name[w]]
    return picked


def _variables(models: dict[str, dict], var: list[str] | None) -> dict[str, str]:
    """``--var name=value`` pairs, each naming a variable of a chosen dashboard."""
    from urbanbrain.errors import BadValue

    # hidden variables (the resolution of urbanbrain/resolution.py) follow the time range
    known = {v["name"] for m in models.values() for v in m.get("templating", {}).get("list", [])
             if v.get("hide") != 2}
    chosen: dict[str, str] = {}
    for item in var or []:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise BadValue(f"--var {item!r}: write name=value, e.g. --var district=centrum")
        if name not in known:
            raise BadValue(f"--var {item!r}: the chosen dashboards have no variable {name!r}: "
                           f"known: {', '.join(sorted(known)) or 'none'}")
        chosen[name] = value
    return chosen


@app.command()
def snapshot(
    out: Annotated[Path, typer.Option(help="output directory")] = Path("snapshots"),
    time_range: Annotated[str | None, typer.Option(
        "--range", help="e.g. 30m, 6h, 1d (default: each dashboard's own)")] = None,
    interval: Annotated[str | None, typer.Option(
        help="$__interval (default: fits the range, 6h → 1m, 24h → 5m)")] = None,
    dashboard: Annotated[list[str] | None, typer.Option(
        help="uid or short name, e.g. urbanbrain-traffic or traffic (repeatable)")] = None,
    var: Annotated[list[str] | None, typer.Option(help="name=value (repeatable)")] = None,
    dpi: Annotated[int, typer.Option(help="resolution of the PNGs")] = 100,
) -> None:
    """Render each dashboard's panels from InfluxDB to PNG (matplotlib, no Grafana)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from urbanbrain.influxql import InfluxQL
    from urbanbrain.dashboards.snapshot import panel_count, render_dashboard
    from urbanbrain.durations import influx_duration
    from urbanbrain.settings import get_settings

    time_range = influx_duration(time_range, "--range") if time_range else None
    interval = influx_duration(interval, "--interval") if interval else None
    models = _pick_dashboards(_models(), dashboard)
    chosen = _variables(models, var)
    s = get_settings()
    pw = s.influx_password.get_secret_value() if s.influx_password else None
    client = InfluxQL(s.influx_url, s.influx_db, s.influx_username, pw)
    client.check()  # one line if InfluxDB is down or refuses us, before any PNG is written
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("rendering", total=panel_count(models))
        for m in models.values():
            bar.update(task, description=f"{m['title']}")
            path = render_dashboard(m, client, out, time_range=time_range, interval=interval,
                                    chosen=chosen, dpi=dpi,
                                    progress=lambda _title: bar.advance(task))
            bar.console.print(str(path), soft_wrap=True)


@app.command()
def build(out: Annotated[Path | None, typer.Argument(help="default: dashboards/json")] = None
          ) -> None:
    """Regenerate the dashboard JSON from spec.py."""
    from urbanbrain.dashboards.build import JSON_DIR, write

    for p in write(out or JSON_DIR):
        console.print(str(p))


@app.command("registry-points")
def registry_points(
    path: Annotated[Path | None, typer.Argument(help="registry CSV (default: settings)")] = None,
) -> None:
    """Write the device registry as `sensors` points (lat/lon for the Geomap)."""
    from urbanbrain.dashboards.registry_points import write_registry_points
    from urbanbrain.errors import BadValue
    from urbanbrain.reach import require_influx
    from urbanbrain.settings import get_settings

    s = get_settings()
    path = path or s.registry_path
    if path is None:
        raise BadValue("no registry: pass a path or set URBANBRAIN_REGISTRY_PATH")
    if not Path(path).is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    require_influx(s.influx_url)
    pw = s.influx_password.get_secret_value() if s.influx_password else None
    n = write_registry_points(path, s.influx_url, s.influx_db, username=s.influx_username,
                              password=pw)
    console.print(f"wrote {n} sensor points")
