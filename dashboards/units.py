"""Grafana's value formats, for snapshots: ``0.007977`` with unit ``percentunit`` is ``0.798%``.

Why re-implemented: snapshots are rendered without Grafana, and a manager reading one should
see what Grafana shows, not raw unit ids (``velocitykmh``) or ``3.51e+04``. This follows
Grafana's ``packages/grafana-data/src/valueFormats`` (``toFixed`` with its automatic
decimals, ``scaledUnits``, the SI prefixes, ``toPercent``/``toPercentUnit``, ``toSeconds``
and ``toMilliSeconds``, ``dateTimeAsIso``) for the unit ids our dashboards use, plus
Grafana's custom units ``suffix:``, ``prefix:``, ``si:`` and ``count:``. An unknown id is a
suffix, as in Grafana.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone

Formatter = Callable[[float, "int | None"], str]


def _auto_decimals(value: float) -> int:
    """Grafana's ``getDecimalsForValue``: about two significant digits, none for integers."""
    if value == 0 or not math.isfinite(value):
        return 0
    log10 = math.floor(math.log10(abs(value)))
    dec = -log10 + 1
    norm = value / 10 ** -dec
    if norm > 2.25:
        dec += 1
    if value % 1 == 0:
        dec = 0
    return max(0, dec)


def to_fixed(value: float, decimals: int | None = None) -> str:
    """Grafana's ``toFixed``: rounded to ``decimals`` (automatic when None)."""
    if not math.isfinite(value):
        return "∞" if value > 0 else "-∞" if value < 0 else "NaN"
    d = _auto_decimals(value) if decimals is None else max(0, decimals)
    factor = 10 ** d
    rounded = math.floor(value * factor + 0.5) / factor  # JavaScript's Math.round: half up
    text = f"{rounded:.{d}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def fixed_unit(unit: str, prefix: bool = False) -> Formatter:
    def fmt(v: float, decimals: int | None = None) -> str:
        text = to_fixed(v, decimals)
        if not unit:
            return text
        return f"{unit}{text}" if prefix else f"{text} {unit}"
    return fmt


def scaled_units(factor: float, exts: list[str], offset: int = 0) -> Formatter:
    """Grafana's ``scaledUnits``: divide by ``factor`` while the value is large."""
    def fmt(v: float, decimals: int | None = None) -> str:
        if not math.isfinite(v):
            return to_fixed(v)
        idx = math.floor(math.log(abs(v), factor)) if v != 0 else 0
        idx = min(max(idx, -offset), len(exts) - offset - 1)
        return to_fixed(v / factor ** idx, decimals) + exts[offset + idx]
    return fmt


_SI = ["n", "µ", "m", "", "k", "M", "G", "T", "P", "E", "Z", "Y"]


def si_prefix(unit: str, offset: int = 0) -> Formatter:
    """Grafana's ``decimalSIPrefix``: ``50`` Hz, ``1.20 kHz``, ``3 MW``."""
    return scaled_units(1000, [f" {p}{unit}" for p in _SI], 3 + offset)


def count_unit(symbol: str) -> Formatter:
    """Grafana's ``simpleCountUnit``: ``35.1K veh/h``."""
    inner = scaled_units(1000, ["", "K", "M", "B", "T"])
    return lambda v, d=None: f"{inner(v, d)} {symbol}"


def _percent(v: float, d: int | None = None) -> str:
    return to_fixed(v, d) + "%"


def _percent_unit(v: float, d: int | None = None) -> str:
    return to_fixed(100 * v, d) + "%"


def _steps(table: list[tuple[float, float, str]], small: Formatter | None = None) -> Formatter:
    """A value in the largest unit of ``table`` ((limit, divisor, suffix), ascending) that
    it reaches, as Grafana's time formatters do."""
    def fmt(v: float, d: int | None = None) -> str:
        if small is not None and abs(v) < table[0][0] and v != 0:
            return small(v, d)
        for limit, div, suffix in table:
            if abs(v) < limit:
                return to_fixed(v / div, d) + suffix
        _, div, suffix = table[-1]
        return to_fixed(v / div, d) + suffix
    return fmt


_ms = _steps([(1000, 1, " ms"), (60_000, 1000, " s"), (3_600_000, 60_000, " min"),
              (86_400_000, 3_600_000, " hour"), (31_536_000_000, 86_400_000, " day"),
              (math.inf, 31_536_000_000, " year")])
_s_big = _steps([(60, 1, " s"), (3600, 60, " min"), (86400, 3600, " hour"),
                 (604800, 86400, " day"), (31_536_000, 604800, " week"),
                 (math.inf, 3.15569e7, " year")])


def _seconds(v: float, d: int | None = None) -> str:
    if v != 0 and abs(v) < 1:
        return _ms(v * 1000, d)
    return _s_big(v, d)


def date_time_iso(v: float, d: int | None = None) -> str:
    """``dateTimeAsIso`` of epoch milliseconds (UTC: snapshots say so in their header)."""
    return datetime.fromtimestamp(v / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


_SHORT = scaled_units(1000, ["", " K", " Mil", " Bil", " Tri", " Quadr", " Quint", " Sext",
                             " Sept"])

FORMATS: dict[str, Formatter] = {
    "none": fixed_unit(""),
    "short": _SHORT,
    "percent": _percent,
    "percentunit": _percent_unit,
    "humidity": fixed_unit("%H"),
    "dB": fixed_unit("dB"),
    "celsius": fixed_unit("°C"),
    "fahrenheit": fixed_unit("°F"),
    "velocitykmh": fixed_unit("km/h"),
    "velocityms": fixed_unit("m/s"),
    "conμgm3": fixed_unit("μg/m³"),
    "conmgm3": fixed_unit("mg/m³"),
    "ppm": fixed_unit("ppm"),
    "pressurekpa": fixed_unit("kPa"),
    "pressurehpa": fixed_unit("hPa"),
    "hertz": si_prefix("Hz"),
    "volt": si_prefix("V"),
    "kvolt": si_prefix("V", 1),
    "watt": si_prefix("W"),
    "kwatt": si_prefix("W", 1),
    "megwatt": si_prefix("W", 2),
    "litre": si_prefix("L"),
    "m3": fixed_unit("m³"),
    "ops": count_unit("ops"),
    "reqps": count_unit("req/s"),
    "ms": _ms,
    "s": _seconds,
    "dateTimeAsIso": date_time_iso,
}


def formatter(unit: str | None) -> Formatter:
    """The formatter of a Grafana unit id (``""``/None: ``none``)."""
    if not unit:
        return FORMATS["none"]
    if unit in FORMATS:
        return FORMATS[unit]
    kind, _, rest = unit.partition(":")
    if rest:
        if kind == "suffix":
            return fixed_unit(rest)
        if kind == "prefix":
            return fixed_unit(rest, prefix=True)
        if kind == "count":
            return count_unit(rest)
        if kind == "si":
            offset = _SI.index(rest[0]) - 3 if rest[0] in _SI and len(rest) > 1 else 0
            return si_prefix(rest[1:] if offset else rest, offset)
    return fixed_unit(unit)  # Grafana: an unknown id is a custom suffix


def format_value(value: object, unit: str | None = None, decimals: int | None = None) -> str:
    """``value`` as Grafana shows it in a stat or table cell."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return formatter(unit)(float(value), decimals)


def _scale_of(unit: str | None, magnitude: float) -> float:
    """What a scaled format divides by at ``magnitude`` (1000 per K/M/... or SI step)."""
    u = unit or ""
    si = u in ("hertz", "volt", "kvolt", "watt", "kwatt", "megwatt", "litre") or \
        u.startswith("si:")
    counts = u in ("short", "ops", "reqps") or u.startswith("count:")  # never below 1
    if not (si or counts) or magnitude <= 0 or not math.isfinite(magnitude):
        return 1.0
    k = math.floor(math.log(magnitude, 1000) + 1e-9)
    return 1000.0 ** (max(k, 0) if counts else k)


def tick_decimals(step: float, unit: str | None, magnitude: float = 0.0) -> int | None:
    """Decimals that print ticks ``step`` apart exactly (0.15 apart: two), in the scale the
    unit shows at ``magnitude`` (the largest tick). None for time units (they pick theirs)."""
    if unit in ("ms", "s", "dateTimeAsIso"):
        return None
    s = abs(step) * (100.0 if unit == "percentunit" else 1.0) / _scale_of(unit, magnitude)
    if s == 0 or not math.isfinite(s):
        return 0
    for d in range(0, 7):
        scaled = s * 10 ** d
        if abs(scaled - round(scaled)) < 1e-6 * max(1.0, scaled):
            return d
    return 6
