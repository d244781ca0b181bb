"""Render dashboards to PNG without Grafana: each panel's queries, drawn with matplotlib.

For reports, CI artefacts and a look where no Grafana runs (our machines: Grafana runs only
in compose). The aim is a picture a manager can read, drawn the way Grafana would:

* values in the panel's unit as Grafana formats it (:mod:`.units`): ``0.798%``,
  ``55.2 km/h``, ``38.9 K``, never a unit id or ``3.894e+04``;
* y axes whose tick labels fit (each plot's left margin is measured from its own labels);
* at most :data:`TOP_N` coloured lines with a compact legend: the series that stray most
  from the others (an accident's loop among 268), the rest drawn thin and grey;
* tables after the panel's transformations (:mod:`.frames`), sized to their panel, times as
  dates, colour columns as coloured cells, the rows that do not fit counted;
* the geomap with district outlines from the sensors' registry coordinates (:mod:`.geo`),
  offline, no map tiles.

Not pixel-equal to Grafana; times are UTC and the header says so.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from urbanbrain.dashboards import frames, geo, units
from urbanbrain.dashboards.queries import InfluxQL, QueryError, expand, resolve_variables, seconds

#: Figure width and the height of one Grafana grid row, in inches.
FIG_W = 16.0
ROW_H = 0.36
HEADER_H = 0.62
GAP = 0.07
TITLE_H = 0.27
DPI = 100
#: Coloured lines per time-series panel; the others are drawn grey.
TOP_N = 8
#: Font sizes (points) and their character widths (inches, DejaVu Sans average).
FONT = 7.0
CHAR_W = FONT / 72 * 0.60
ROW_PITCH = 0.18

#: Grafana's classic palette, in order.
PALETTE = ("#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9",
           "#705DA0", "#508642", "#CCA300", "#447EBC", "#C15C17", "#890F02", "#0A437C")
NAMED = {"green": "#73BF69", "red": "#F2495C", "orange": "#FF9830", "yellow": "#FADE2A",
         "blue": "#5794F2", "purple": "#B877D9", "dark-red": "#C4162A",
         "dark-green": "#37872D", "text": "#333333", "transparent": "#00000000"}
DOMAIN_COLOURS = {"traffic": "#FF9830", "environment": "#73BF69", "water": "#5794F2",
                  "power": "#B877D9"}
GREY = "#9A9A9A"
PANEL_BG, PANEL_EDGE, INK, MUTED = "#FBFBFC", "#D8D9DA", "#1F2328", "#6E7781"
_HEX = re.compile(r"^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$")


def colour(name: str | None) -> str:
    if not name:
        return INK
    return NAMED.get(name, name)


# --------------------------------------------------------------------------- panel data

@dataclass
class PanelData:
    panel: Mapping[str, Any]
    results: list[list[dict]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def series(self) -> list[dict]:
        return [s for res in self.results for s in res]

    @property
    def defaults(self) -> Mapping[str, Any]:
        return self.panel.get("fieldConfig", {}).get("defaults", {})

    @property
    def unit(self) -> str:
        return self.defaults.get("unit", "")

    def override_unit(self, column: str) -> str | None:
        for o in self.panel.get("fieldConfig", {}).get("overrides", []):
            if o.get("matcher", {}).get("options") == column:
                for p in o.get("properties", []):
                    if p.get("id") == "unit":
                        return p.get("value")
        return None

    def colour_cells(self, column: str) -> bool:
        for o in self.panel.get("fieldConfig", {}).get("overrides", []):
            if o.get("matcher", {}).get("options") == column:
                for p in o.get("properties", []):
                    if p.get("id") == "custom.cellOptions" and "color" in str(p.get("value")):
                        return True
        return False


def threshold_colour(defaults: Mapping[str, Any], value: object) -> str | None:
    """The colour of the highest threshold step ``value`` reaches (Grafana's rule)."""
    steps = (defaults.get("thresholds") or {}).get("steps") or []
    if not steps or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    chosen = steps[0].get("color")
    for s in steps[1:]:
        if s.get("value") is not None and value >= s["value"]:
            chosen = s.get("color")
    return colour(chosen)


def mapped(defaults: Mapping[str, Any], value: object) -> str | None:
    """Text of a value mapping (``{"type": "value", "options": {"6": {"text": "F"}}}``)."""
    for m in defaults.get("mappings") or []:
        if m.get("type") == "value" and isinstance(value, (int, float)):
            key = str(int(value)) if float(value).is_integer() else str(value)
            hit = (m.get("options") or {}).get(key)
            if hit and hit.get("text"):
                return str(hit["text"])
    return None


def fetch(panel: Mapping[str, Any], client: InfluxQL, values: Mapping[str, Any], *,
          time_range: str, interval: str) -> PanelData:
    data = PanelData(panel)
    for t in panel.get("targets", []):
        try:
            q = expand(t["query"], values, time_range=time_range, interval=interval,
                       min_interval=panel.get("interval", ""))
            data.results.append(client.query(q))
        except QueryError as exc:
            if exc.exit_code != 1:  # unreachable, refused: not one panel's problem
                raise
            data.errors.append(str(exc))
        except KeyError as exc:
            data.errors.append(str(exc).strip("'\""))
    return data


# --------------------------------------------------------------------------- layout

@dataclass
class Box:
    """A rectangle in inches from the figure's top-left corner."""

    x: float
    y: float
    w: float
    h: float

    def inset(self, left: float = 0, top: float = 0, right: float = 0, bottom: float = 0
              ) -> Box:
        return Box(self.x + left, self.y + top, max(self.w - left - right, 0.05),
                   max(self.h - top - bottom, 0.05))


class Canvas:
    def __init__(self, fig: Any, width: float, height: float) -> None:
        self.fig, self.W, self.H = fig, width, height

    def rect(self, b: Box) -> tuple[float, float, float, float]:
        """matplotlib figure fraction (left, bottom, width, height) of ``b``."""
        return (b.x / self.W, 1 - (b.y + b.h) / self.H, b.w / self.W, b.h / self.H)

    def axes(self, b: Box, **kw: Any) -> Any:
        return self.fig.add_axes(self.rect(b), **kw)

    def box_axes(self, b: Box) -> Any:
        """Axes in inch units, y downwards, no decoration: for drawing text and cells."""
        ax = self.axes(b)
        ax.set_xlim(0, b.w)
        ax.set_ylim(b.h, 0)
        ax.set_axis_off()
        return ax

    def text(self, x: float, y: float, s: str, **kw: Any) -> None:
        self.fig.text(x / self.W, 1 - y / self.H, s, **kw)


def _fits(text: str, width_in: float, size: float = FONT) -> str:
    """``text`` cut with an ellipsis to fit ``width_in`` at ``size`` points."""
    n = max(int(width_in / (size / 72 * 0.60)), 1)
    return text if len(text) <= n else (text[: max(n - 1, 1)] + "…")


def ink_on(bg: str) -> str:
    """Black or white text, whichever reads better on ``bg`` (WCAG relative luminance)."""
    try:
        r, g, b = (int(bg.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4))
    except ValueError:
        return INK

    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    lum = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
    return INK if lum > 0.35 else "white"


# --------------------------------------------------------------------------- time series

@dataclass
class Line:
    label: str
    ts: list[float]  # epoch ms
    vs: list[float]


def _alias(alias: str, series: Mapping[str, Any], column: str) -> str:
    tags = series.get("tags") or {}

    def sub(m: re.Match) -> str:
        name = m[1] or m[2]
        if name.startswith("tag_"):
            return str(tags.get(name[4:], ""))
        if name == "col":
            return column
        return m[0]

    return re.sub(r"\$(\w+)|\[\[(\w+)\]\]", sub, alias).strip()


def lines_of(data: PanelData) -> list[Line]:
    out: list[Line] = []
    targets = data.panel.get("targets", [])
    for i, res in enumerate(data.results):
        alias = targets[i].get("alias", "") if i < len(targets) else ""
        for s in res:
            cols = s.get("columns", [])
            value_cols = [c for c in cols if c != "time"]
            for c in value_cols:
                j = cols.index(c)
                pts = [(r[0], r[j]) for r in s.get("values", [])
                       if isinstance(r[j], (int, float)) and not isinstance(r[j], bool)]
                if not pts:
                    continue
                tags = " ".join(str(v) for v in (s.get("tags") or {}).values() if v)
                label = _alias(alias, s, c) if alias else ""
                if not label:
                    label = f"{tags} {c}".strip() if tags else c
                if alias and len(value_cols) > 1:
                    label = f"{label} {c}".strip()
                out.append(Line(label, [p[0] for p in pts], [float(p[1]) for p in pts]))
    return out


def rank_lines(lines: list[Line], top: int = TOP_N) -> tuple[list[Line], list[Line]]:
    """(the ``top`` lines that stray most from the others, the rest). Why this score: in a
    panel of 268 loops the one worth a colour is the loop of the accident, whose speed fell
    far from the city's median, not the one with the highest speed limit."""
    if len(lines) <= top:
        return lines, []
    import numpy as np

    stamps = sorted({t for ln in lines for t in ln.ts})
    pos = {t: i for i, t in enumerate(stamps)}
    grid = np.full((len(lines), len(stamps)), np.nan)
    for k, ln in enumerate(lines):
        grid[k, [pos[t] for t in ln.ts]] = ln.vs
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(grid, axis=0)
            spread = np.nanmedian(np.abs(grid - med), axis=0)
            scale = np.nanmedian(spread[spread > 0]) if np.any(spread > 0) else 1.0
            score = np.nanmax(np.abs(grid - med), axis=1) / (scale or 1.0)
    score = np.where(np.isfinite(score), score, -1)
    order = np.argsort(-score, kind="stable")
    chosen = set(order[:top].tolist())
    return ([lines[i] for i in sorted(chosen, key=lambda i: -score[i])],
            [ln for i, ln in enumerate(lines) if i not in chosen])


def _legend_layout(n: int, width: float, label_len: int) -> tuple[int, int]:
    """(columns, rows) of a legend of ``n`` entries under a plot ``width`` inches wide."""
    entry_w = 0.28 + min(label_len, 26) * CHAR_W
    cols = max(1, min(n, int(width // entry_w)))
    return cols, math.ceil(n / cols)


def draw_timeseries(cv: Canvas, box: Box, data: PanelData, t0_ms: float, t1_ms: float) -> None:
    import matplotlib.dates as mdates
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    lines = lines_of(data)
    if not lines:
        _no_data(cv, box)
        return
    shown, rest = rank_lines(lines)
    legend = [(PALETTE[i % len(PALETTE)], ln.label) for i, ln in enumerate(shown)]
    if rest:
        legend.append((GREY, f"+{len(rest)} more (grey)"))
    longest = max(len(lab) for _, lab in legend)
    cols, rows = _legend_layout(len(legend), box.w - 0.8, longest)
    legend_h = rows * 0.15 + 0.04 if len(legend) > 1 or rest else 0.0
    unit = data.unit
    fmt = units.formatter(unit)
    custom = data.defaults.get("custom", {})
    ax = cv.axes(box.inset(0.6, 0.02, 0.12, 0.22 + legend_h))
    to_dt = lambda ms: datetime.fromtimestamp(ms / 1000, timezone.utc)  # noqa: E731
    if rest:
        segs = [list(zip(mdates.date2num([to_dt(t) for t in ln.ts]), ln.vs)) for ln in rest]
        ax.add_collection(LineCollection(segs, colors=GREY, linewidths=0.5, alpha=0.35))
    bars = custom.get("drawStyle") == "bars"
    for (c, _), ln in zip(legend, shown):
        xs = [to_dt(t) for t in ln.ts]
        if bars:  # as wide as the buckets, side by side per series
            gaps = [b - a for a, b in zip(ln.ts, ln.ts[1:]) if b > a]
            width = (min(gaps) if gaps else 60_000) / 86_400_000 / max(len(shown), 1)
            ax.bar(xs, ln.vs, width=width * 0.9, color=c, alpha=0.85, align="edge")
        else:
            ax.plot(xs, ln.vs, lw=1.1, color=c)
    ax.set_xlim(to_dt(t0_ms), to_dt(t1_ms))
    ax.autoscale(axis="y")
    ymin, ymax = ax.get_ylim()
    if bars or unit in ("percentunit", "percent", "ops", "short") and ymin > 0:
        ax.set_ylim(bottom=min(0.0, ymin))
    mode = (custom.get("thresholdsStyle") or {}).get("mode", "")
    if "area" in mode:
        _threshold_bands(ax, data.defaults)
    values = [v for ln in lines for v in ln.vs]
    if values and max(values) == min(values):  # flat: Grafana-like range above it, not ±3 %
        v = values[0]
        ax.set_ylim((0.0, 1.0) if v == 0 else (v - abs(v) * 0.1, v + abs(v) * 0.1))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    step = (ticks[1] - ticks[0]) if len(ticks) > 1 else 0.0

    def tick(v: float, _pos: object = None) -> str:  # decimals in the scale of each tick
        return fmt(v, units.tick_decimals(step, unit, abs(v)))

    ax.yaxis.set_major_formatter(FuncFormatter(tick))
    labels = [tick(t) for t in ticks] or [""]
    left = 0.12 + max(len(s) for s in labels) * CHAR_W
    ax.set_position(cv.rect(box.inset(left, 0.04, 0.12, 0.22 + legend_h)))
    span_h = (t1_ms - t0_ms) / 3_600_000
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=7))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M" if span_h <= 24 else "%d %b %H:%M",
                                                      tz=timezone.utc))
    ax.tick_params(labelsize=FONT, length=2, colors=MUTED)
    ax.grid(True, color="#E4E6E8", lw=0.5)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_facecolor("none")
    if legend_h:
        lb = cv.box_axes(Box(box.x + left - 0.05, box.y + box.h - legend_h, box.w - left, legend_h))
        col_w = (box.w - left) / cols
        for k, (c, lab) in enumerate(legend):
            r, q = divmod(k, cols)
            x, y = q * col_w, 0.08 + r * 0.15
            lb.plot([x, x + 0.18], [y, y], color=c, lw=2.2, solid_capstyle="butt")
            lb.text(x + 0.23, y, _fits(lab, col_w - 0.25, FONT - 0.5), fontsize=FONT - 0.5,
                    va="center", color=INK)


def _threshold_bands(ax: Any, defaults: Mapping[str, Any]) -> None:
    steps = (defaults.get("thresholds") or {}).get("steps") or []
    lo, hi = ax.get_ylim()
    for k, s in enumerate(steps):
        start = s.get("value")
        end = steps[k + 1].get("value") if k + 1 < len(steps) else None
        a = lo if start is None else max(start, lo)
        b = hi if end is None else min(end, hi)
        if a < b:
            ax.axhspan(a, b, color=colour(s.get("color")), alpha=0.10, lw=0)
    ax.set_ylim(lo, hi)


# --------------------------------------------------------------------------- stat

def stat_value(data: PanelData) -> float | None:
    """Grafana's ``lastNotNull`` over the panel's numeric values."""
    vals = [r[i] for s in data.series for r in s.get("values", [])
            for i in range(1, len(r))
            if isinstance(r[i], (int, float)) and not isinstance(r[i], bool)]
    v = vals[-1] if vals else None
    return v if v is not None and math.isfinite(v) else None


def stat_text(data: PanelData, v: float | None) -> str:
    if v is None:
        return "No data"
    return mapped(data.defaults, v) or units.format_value(v, data.unit,
                                                          data.defaults.get("decimals"))


def draw_stat(cv: Canvas, box: Box, data: PanelData) -> None:
    v = stat_value(data)
    text = stat_text(data, v)
    ax = cv.box_axes(box)
    if v is None:
        ax.text(box.w / 2, box.h / 2, text, ha="center", va="center", fontsize=10, color=MUTED)
        return
    size = min(box.h * 72 * 0.55, box.w * 72 / max(len(text), 1) / 0.62, 30)
    ax.text(box.w / 2, box.h / 2, text, ha="center", va="center", fontsize=size,
            color=threshold_colour(data.defaults, v) or INK, fontweight="bold")


# --------------------------------------------------------------------------- tables

def table_frame(data: PanelData) -> frames.Frame:
    fr = frames.apply(frames.from_results(data.results), data.panel.get("transformations", []))
    if frames.TIME in fr.columns and len(set(fr.column(frames.TIME))) <= 1:
        fr = fr.drop({frames.TIME})  # aggregates over the range: one time, nothing to show
    return fr.drop(_undrawable(fr))


def _undrawable(fr: frames.Frame) -> set[str]:
    """Columns in a script no installed font draws (the Chinese health advice on a machine
    without CJK fonts) that have an English twin (``advice`` → ``advice_en``): shown as
    boxes they say nothing, the twin says it all."""
    if cjk_font() is not None:
        return set()
    return {c for c in fr.columns if f"{c}_en" in fr.columns and any(
        isinstance(v, str) and any(ord(ch) >= 0x2E80 for ch in v) for v in fr.column(c))}


@functools.cache
def cjk_font() -> str | None:
    """An installed font family with CJK glyphs, if any (matplotlib falls back to it)."""
    from matplotlib import font_manager

    for f in font_manager.fontManager.ttflist:
        if any(k in f.name for k in ("CJK", "WenQuanYi", "Droid Sans Fallback", "AR PL",
                                     "Source Han", "Noto Sans SC")):
            return f.name
    return None


def _is_hex_column(fr: frames.Frame, name: str) -> bool:
    vals = [v for v in fr.column(name) if v not in (None, "")]
    return bool(vals) and all(isinstance(v, str) and _HEX.match(v) for v in vals)


def cell_text(data: PanelData, column: str, value: object) -> str:
    unit = data.override_unit(column)
    if column == frames.TIME or unit == "dateTimeAsIso":
        return units.date_time_iso(float(value)) if isinstance(value, (int, float)) else ""
    return units.format_value(value, unit if unit is not None else data.unit,
                              data.defaults.get("decimals"))


def draw_table(cv: Canvas, box: Box, data: PanelData) -> None:
    fr = table_frame(data)
    if not fr.rows:
        _no_data(cv, box)
        return
    swatches = {c for c in fr.columns if _is_hex_column(fr, c)}
    texts = [[("" if c in swatches else cell_text(data, c, v)) for c, v in zip(fr.columns, r)]
             for r in fr.rows]
    natural = [max([len(c), *(len(t[i]) for t in texts)]) for i, c in enumerate(fr.columns)]
    natural = [min(n, 40) if c not in swatches else 3 for n, c in zip(natural, fr.columns)]
    pad_in = 0.12
    widths = [n * CHAR_W + pad_in for n in natural]
    total = sum(widths)
    if total > box.w:  # shrink the widest columns first, never below a few characters
        excess = total - box.w
        while excess > 1e-6:
            widest = max(range(len(widths)), key=lambda i: widths[i])
            floor = 6 * CHAR_W + pad_in
            if widths[widest] <= floor:
                break
            cut = min(excess, widths[widest] - floor)
            widths[widest] -= cut
            excess -= cut
    elif total < box.w:  # spread the spare width, as Grafana's table fills its panel
        widths = [w * box.w / total for w in widths]
    fit = max(int((box.h - ROW_PITCH) // ROW_PITCH), 1)
    more = len(texts) - fit
    rows = texts[: fit - 1] if more > 0 else texts
    ax = cv.box_axes(box)
    x = 0.0
    for i, (c, w) in enumerate(zip(fr.columns, widths)):
        ax.text(x + 0.05, ROW_PITCH / 2, _fits(c, w - 0.08), fontsize=FONT, va="center",
                color=MUTED, fontweight="bold")
        x += w
    ax.plot([0, box.w], [ROW_PITCH, ROW_PITCH], color=PANEL_EDGE, lw=0.8)
    from matplotlib.patches import Rectangle

    for k, row in enumerate(rows):
        y = ROW_PITCH * (k + 1)
        x = 0.0
        raw = fr.rows[k]
        for i, (c, w) in enumerate(zip(fr.columns, widths)):
            bg = None
            if c in swatches:
                bg = raw[i]
            elif data.colour_cells(c):
                bg = threshold_colour(data.defaults, raw[i])
            if bg:
                ax.add_patch(Rectangle((x + 0.01, y + 0.01), w - 0.02, ROW_PITCH - 0.02,
                                       color=bg, lw=0))
            ax.text(x + 0.05, y + ROW_PITCH / 2, _fits(row[i], w - 0.08), fontsize=FONT,
                    va="center", color=ink_on(bg) if bg and c not in swatches else INK)
            x += w
        ax.plot([0, box.w], [y + ROW_PITCH, y + ROW_PITCH], color="#EEF0F2", lw=0.5)
    if more > 0:
        ax.text(0.05, ROW_PITCH * (len(rows) + 1.5), f"… {more + 1} more rows", fontsize=FONT,
                va="center", color=MUTED, style="italic")


def draw_bargauge(cv: Canvas, box: Box, data: PanelData) -> None:
    fr = table_frame(data)
    value_cols = [c for c in fr.columns if c != frames.TIME and any(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in fr.column(c))]
    if not fr.rows or not value_cols:
        _no_data(cv, box)
        return
    vc = value_cols[0]
    label_cols = [c for c in fr.columns if c not in value_cols and c != frames.TIME]
    items = [(" ".join(str(r[fr.columns.index(c)]) for c in label_cols) or vc,
              r[fr.columns.index(vc)]) for r in fr.rows]
    items = [(lab, float(v)) for lab, v in items if isinstance(v, (int, float))]
    pitch = min(max(box.h / max(len(items), 1), 0.2), 0.34)
    fit = max(int(box.h // pitch), 1)
    more = len(items) - fit
    shown = items[: fit - 1] if more > 0 else items
    vmax = max((v for _, v in items), default=1.0) or 1.0
    label_w = min(max(len(lab) for lab, _ in shown) * CHAR_W + 0.15, box.w * 0.35)
    value_w = max(len(units.format_value(v, data.unit)) for _, v in shown) * CHAR_W + 0.15
    bar_w = box.w - label_w - value_w
    ax = cv.box_axes(box)
    from matplotlib.patches import Rectangle

    for k, (lab, v) in enumerate(shown):
        y = k * pitch
        ax.text(label_w - 0.08, y + pitch / 2, _fits(lab, label_w - 0.1), ha="right",
                va="center", fontsize=FONT, color=INK)
        ax.add_patch(Rectangle((label_w, y + pitch * 0.18), bar_w, pitch * 0.64,
                               color="#EEF0F2", lw=0))
        ax.add_patch(Rectangle((label_w, y + pitch * 0.18), bar_w * max(v, 0) / vmax,
                               pitch * 0.64, lw=0,
                               color=threshold_colour(data.defaults, v) or PALETTE[0]))
        ax.text(label_w + bar_w + 0.08, y + pitch / 2, units.format_value(v, data.unit),
                va="center", fontsize=FONT, color=INK)
    if more > 0:
        ax.text(label_w, (len(shown) + 0.5) * pitch, f"… {more + 1} more", fontsize=FONT,
                va="center", color=MUTED, style="italic")


# --------------------------------------------------------------------------- geomap

def draw_geomap(cv: Canvas, box: Box, data: PanelData) -> None:
    fr = frames.from_results(data.results)
    if not fr.rows or "lat" not in fr.columns or "lon" not in fr.columns:
        _no_data(cv, box)
        return
    col = {c: i for i, c in enumerate(fr.columns)}
    pts = [(r[col["lon"]], r[col["lat"]], r[col["district"]] if "district" in col else "",
            r[col["domain"]] if "domain" in col else "")
           for r in fr.rows if isinstance(r[col["lat"]], (int, float))
           and isinstance(r[col["lon"]], (int, float))]
    by_district: dict[str, list[tuple[float, float]]] = {}
    for lon, lat, d, _ in pts:
        by_district.setdefault(str(d), []).append((lon, lat))
    outlines = geo.district_outlines(by_district)
    legend_h = 0.2
    ax = cv.axes(box.inset(0.05, 0.02, 0.05, legend_h))
    for k, (d, poly) in enumerate(sorted(outlines.items())):
        if len(poly) < 3:
            continue
        c = PALETTE[k % len(PALETTE)]
        xs, ys = zip(*(poly + poly[:1]))
        ax.fill(xs, ys, color=c, alpha=0.13, lw=0)
        ax.plot(xs, ys, color=c, lw=1.2, alpha=0.8)
        cx, cy = geo.centroid(poly)
        ax.text(cx, cy, d, ha="center", va="center", fontsize=FONT + 1, color=INK,
                fontweight="bold", alpha=0.75)
    domains = sorted({dm for *_, dm in pts})
    for dm in domains:
        sel = [(lon, lat) for lon, lat, _, d in pts if d == dm]
        ax.scatter([p[0] for p in sel], [p[1] for p in sel], s=7,
                   color=DOMAIN_COLOURS.get(dm, GREY), edgecolors="white", linewidths=0.3,
                   zorder=3)
    lat0 = sum(p[1] for p in pts) / len(pts)
    ax.set_aspect(1 / math.cos(math.radians(lat0)), adjustable="datalim")
    ax.set_axis_off()
    lb = cv.box_axes(Box(box.x, box.y + box.h - legend_h, box.w, legend_h))
    x = 0.1
    for dm in domains:
        lb.scatter([x], [legend_h / 2], s=14, color=DOMAIN_COLOURS.get(dm, GREY))
        lb.text(x + 0.1, legend_h / 2, f"{dm} ({sum(1 for *_, d in pts if d == dm)})",
                va="center", fontsize=FONT, color=INK)
        x += 0.35 + len(dm) * CHAR_W + 0.3
    lb.text(box.w - 0.05, legend_h / 2, "district outlines: hull of its sensors",
            ha="right", va="center", fontsize=FONT - 1, color=MUTED, style="italic")


# --------------------------------------------------------------------------- whole figure

def _no_data(cv: Canvas, box: Box) -> None:
    ax = cv.box_axes(box)
    ax.text(box.w / 2, box.h / 2, "No data", ha="center", va="center", fontsize=10,
            color=MUTED)


def _errors(cv: Canvas, box: Box, errors: list[str]) -> None:
    ax = cv.box_axes(box)
    ax.text(0.05, 0.1, _fits("query failed: " + errors[0].splitlines()[0], box.w * 2.5),
            fontsize=FONT, color=NAMED["red"], va="top", wrap=True)


DRAW: dict[str, Callable[..., None]] = {
    "stat": draw_stat, "table": draw_table, "bargauge": draw_bargauge, "geomap": draw_geomap,
}


def title_of(title: str, values: Mapping[str, Any]) -> str:
    """A panel title with its template variables filled in, as Grafana shows it."""
    def sub(m: re.Match) -> str:
        name = m[1] or m[2]
        v = values.get(name)
        if v is None:
            return m[0]
        return "All" if v == ".*" else ", ".join(v) if isinstance(v, list) else str(v)

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: sub(m) if (m[1] or m[2]) else m[0], title)


def _header(values: Mapping[str, Any], time_range: str, now_ms: float) -> str:
    shown = ", ".join(f"${k}={'All' if v == '.*' else v}" for k, v in values.items())
    when = datetime.fromtimestamp(now_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
    return (f"last {time_range} to {when} UTC" + (f"  ·  {shown}" if shown else "")
            + "  ·  rendered by urbanbrain dashboards snapshot (times UTC)")


#: Grafana-like rounded intervals, for an automatic ``$__interval``.
NICE_INTERVALS = ("10s", "30s", "1m", "2m", "5m", "10m", "15m", "30m", "1h", "3h", "6h", "12h",
                  "1d")
POINTS_PER_PANEL = 360


def auto_interval(time_range: str) -> str:
    """``$__interval`` as Grafana picks it: about one bucket per few pixels of the panel,
    rounded to a nice step (6h → 1m, 24h → 5m, 1h → 10s)."""
    want = seconds(time_range) / POINTS_PER_PANEL
    return next((i for i in NICE_INTERVALS if seconds(i) >= want), NICE_INTERVALS[-1])


def own_range(dashboard: Mapping) -> str:
    """The dashboard's saved time range (``now-6h`` → ``6h``), as Grafana opens it."""
    start = str((dashboard.get("time") or {}).get("from", "now-6h"))
    return start.removeprefix("now-") if start.startswith("now-") else "6h"


def render_dashboard(dashboard: Mapping, client: InfluxQL, out_dir: Path, *,
                     time_range: str | None = None, interval: str | None = None,
                     chosen: Mapping[str, str] | None = None,
                     progress: Callable[[str], None] | None = None,
                     dpi: int = DPI) -> Path:
    """One PNG with every panel at its grid position; returns its path. ``time_range``
    defaults to the dashboard's own, ``interval`` (``$__interval``) to one fitting it;
    ``progress`` is called with each panel's title once it is drawn."""
    import matplotlib

    time_range = time_range or own_range(dashboard)
    interval = interval or auto_interval(time_range)
    matplotlib.use("Agg")
    values = resolve_variables(dashboard, client, chosen, time_range=time_range)
    fonts = ["DejaVu Sans", *([cjk_font()] if cjk_font() else [])]  # fallback for CJK text
    with matplotlib.rc_context({"text.parse_math": False,  # "$district" is not mathematics
                                "font.family": fonts}):
        return _render(dashboard, client, out_dir, values, time_range=time_range,
                       interval=interval, progress=progress, dpi=dpi)


def _render(dashboard: Mapping, client: InfluxQL, out_dir: Path, values: Mapping[str, Any], *,
            time_range: str, interval: str, progress: Callable[[str], None] | None,
            dpi: int) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    now_ms = time.time() * 1000
    t0_ms = now_ms - seconds(time_range) * 1000
    panels = dashboard["panels"]
    bottom = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels), default=8)
    height = HEADER_H + bottom * ROW_H + GAP
    fig = plt.figure(figsize=(FIG_W, height), facecolor="white")
    cv = Canvas(fig, FIG_W, height)
    cv.text(0.12, 0.3, dashboard["title"], fontsize=15, fontweight="bold", color=INK,
            va="center")
    cv.text(0.12, 0.52, _header(values, time_range, now_ms), fontsize=8, color=MUTED,
            va="center")
    col_w = FIG_W / 24
    for p in panels:
        g = p["gridPos"]
        cell = Box(g["x"] * col_w + GAP / 2, HEADER_H + g["y"] * ROW_H + GAP / 2,
                   g["w"] * col_w - GAP, g["h"] * ROW_H - GAP)
        l, b, w, h = cv.rect(cell)
        fig.patches.append(FancyBboxPatch((l, b), w, h, boxstyle="round,pad=0,rounding_size=0.004",
                                          transform=fig.transFigure, facecolor=PANEL_BG,
                                          edgecolor=PANEL_EDGE, lw=0.8, zorder=-1))
        cv.text(cell.x + 0.1, cell.y + TITLE_H / 2 + 0.03,
                _fits(title_of(p["title"], values), cell.w - 0.2, 8.5), fontsize=8.5, color=INK,
                fontweight="bold", va="center")
        content = cell.inset(0.08, TITLE_H, 0.08, 0.06)
        data = fetch(p, client, values, time_range=time_range, interval=interval)
        if data.errors:
            _errors(cv, content, data.errors)
        elif p["type"] == "timeseries":
            draw_timeseries(cv, content, data, t0_ms, now_ms)
        else:
            DRAW.get(p["type"], draw_table)(cv, content, data)
        if progress is not None:
            progress(p["title"])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dashboard['uid']}.png"
    fig.savefig(path, dpi=dpi, facecolor="white")
    plt.close(fig)
    return path


def render_all(models: Mapping[str, Mapping], client: InfluxQL, out_dir: Path,
               **kw: Any) -> list[Path]:
    return [render_dashboard(m, client, out_dir, **kw) for m in models.values()]


def panel_count(models: Sequence[Mapping] | Mapping[str, Mapping]) -> int:
    items = models.values() if isinstance(models, Mapping) else models
    return sum(len(m.get("panels", [])) for m in items)
