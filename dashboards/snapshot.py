"""Render dashboards to PNG without Grafana: each panel's queries, drawn with matplotlib.

For reports, CI artefacts and a quick look where no Grafana runs. Not pixel-equal to Grafana:
time series become lines, stats a big number, tables text, the geomap a lon/lat scatter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from urbanbrain.dashboards.queries import InfluxQL, QueryError, expand, resolve_variables

_CELL = (4.0, 2.6)  # inches per 6 grid columns x 8 grid rows


def _label(series: dict, column: str) -> str:
    tags = series.get("tags") or {}
    tag = " ".join(v for v in tags.values() if v)
    return f"{tag} {column}".strip() if tag else column


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _draw(ax, panel: dict, results: list[list[dict]], errors: list[str]) -> None:
    ax.set_title(panel["title"], fontsize=9, loc="left")
    ptype = panel["type"]
    series = [s for res in results for s in res]
    if errors:
        ax.text(0.5, 0.5, "\n".join(errors)[:300], ha="center", va="center", fontsize=6,
                color="red", wrap=True, transform=ax.transAxes)
        ax.set_axis_off()
        return
    if not series:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    if ptype == "timeseries":
        for s in series:
            cols = s["columns"]
            for i, col in enumerate(cols[1:], start=1):
                pts = [(r[0], r[i]) for r in s["values"] if isinstance(r[i], (int, float))]
                if pts:
                    xs = [datetime.fromtimestamp(t / 1000, timezone.utc) for t, _ in pts]
                    ax.plot(xs, [v for _, v in pts], lw=1, label=_label(s, col)[:40])
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, loc="upper left", ncol=2)
    elif ptype == "geomap":
        lats, lons, colours = [], [], []
        palette: dict[str, int] = {}
        for s in series:
            cols = s["columns"]
            if "lat" not in cols or "lon" not in cols:
                continue
            key = (s.get("tags") or {}).get("domain", "")
            for r in s["values"]:
                lats.append(r[cols.index("lat")])
                lons.append(r[cols.index("lon")])
                colours.append(palette.setdefault(key, len(palette)))
        ax.scatter(lons, lats, c=colours, s=6, cmap="tab10")
        ax.set_xlabel("lon", fontsize=6)
        ax.set_ylabel("lat", fontsize=6)
        ax.tick_params(labelsize=6)
    elif ptype == "stat":
        vals = [r[i] for s in series for r in s["values"]
                for i in range(1, len(r)) if isinstance(r[i], (int, float))]
        v = vals[-1] if vals else None
        text = "—" if v is None or not math.isfinite(v) else f"{v:.4g}"
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        ax.text(0.5, 0.45, text, ha="center", va="center", fontsize=22, transform=ax.transAxes)
        ax.text(0.5, 0.12, unit, ha="center", va="center", fontsize=7, transform=ax.transAxes)
        ax.set_axis_off()
    else:  # table, bargauge: rows of tags + values
        rows, header = [], None
        for s in series:
            tags = s.get("tags") or {}
            cols = [c for c in s["columns"] if c != "time"]
            header = header or [*tags.keys(), *cols]
            for r in s["values"][:30]:
                rows.append([*tags.values(), *(_fmt(r[s["columns"].index(c)]) for c in cols)])
        rows = rows[:25]
        ax.set_axis_off()
        if rows:
            tab = ax.table(cellText=[[_fmt(c)[:24] for c in r] for r in rows],
                           colLabels=header, loc="upper center", cellLoc="left")
            tab.auto_set_font_size(False)
            tab.set_fontsize(5)


def render_dashboard(dashboard: Mapping, client: InfluxQL, out_dir: Path, *,
                     time_range: str = "6h", interval: str = "auto",
                     chosen: Mapping[str, str] | None = None) -> Path:
    """One PNG with every panel at its grid position; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = resolve_variables(dashboard, client, chosen, time_range=time_range)
    panels = dashboard["panels"]
    bottom = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels), default=8)
    fig = plt.figure(figsize=(_CELL[0] * 4, _CELL[1] * bottom / 8))
    fig.suptitle(dashboard["title"], fontsize=12)
    for p in panels:
        g = p["gridPos"]
        ax = fig.add_axes((g["x"] / 24 + 0.005, 1 - (g["y"] + g["h"]) / bottom + 0.01,
                           g["w"] / 24 - 0.02, g["h"] / bottom - 0.03))
        results, errors = [], []
        for t in p.get("targets", []):
            try:
                q = expand(t["query"], values, time_range=time_range, interval=interval,
                           min_interval=p.get("interval", ""))
                results.append(client.query(q))
            except (QueryError, KeyError) as exc:
                errors.append(str(exc))
        _draw(ax, p, results, errors)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dashboard['uid']}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def render_all(models: Mapping[str, Mapping], client: InfluxQL, out_dir: Path,
               **kw: object) -> list[Path]:
    return [render_dashboard(m, client, out_dir, **kw)  # type: ignore[arg-type]
            for m in models.values()]
