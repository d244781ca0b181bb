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


@app.command()
def snapshot(
    out: Annotated[Path, typer.Option(help="output directory")] = Path("snapshots"),
    time_range: Annotated[str, typer.Option("--range", help="e.g. 30m, 6h, 1d")] = "6h",
    interval: Annotated[str, typer.Option(
        help="$__interval; auto: range / 1000 points, as Grafana")] = "auto",
    dashboard: Annotated[list[str] | None, typer.Option(help="uid (repeatable)")] = None,
    var: Annotated[list[str] | None, typer.Option(help="name=value (repeatable)")] = None,
) -> None:
    """Render each dashboard's panels from InfluxDB to PNG (matplotlib, no Grafana)."""
    from urbanbrain.dashboards.queries import InfluxQL
    from urbanbrain.dashboards.snapshot import render_all
    from urbanbrain.settings import get_settings

    s = get_settings()
    pw = s.influx_password.get_secret_value() if s.influx_password else None
    client = InfluxQL(s.influx_url, s.influx_db, s.influx_username, pw)
    models = {k: m for k, m in _models().items() if not dashboard or m["uid"] in dashboard}
    chosen = dict(v.split("=", 1) for v in var or [])
    for p in render_all(models, client, out, time_range=time_range, interval=interval,
                        chosen=chosen):
        console.print(str(p))


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
    from urbanbrain.settings import get_settings

    s = get_settings()
    path = path or s.registry_path
    if path is None:
        console.print("[red]error:[/red] no registry: pass a path or set URBANBRAIN_REGISTRY_PATH")
        raise typer.Exit(2)
    pw = s.influx_password.get_secret_value() if s.influx_password else None
    n = write_registry_points(path, s.influx_url, s.influx_db, username=s.influx_username,
                              password=pw)
    console.print(f"wrote {n} sensor points")
