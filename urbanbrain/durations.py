"""Durations typed on the command line (``--range 6h``, ``--duration 90s``), checked once.

Why a module of its own: every command that takes a duration should refuse ``3hours`` the
same way, with one line that shows how to write it (:class:`urbanbrain.errors.BadValue`),
instead of a ``ValueError`` from deep inside. Rule files keep their own, stricter,
Prometheus notation (``urbanbrain.rules.durations``).
"""

from __future__ import annotations

import re

from urbanbrain.errors import BadValue

_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_INFLUX = re.compile(r"(?:\d+(?:ms|s|m|h|d|w))+")
EXAMPLES = "e.g. 90s, 15m, 6h, 1d or 1h30m"


def _bad(option: str, text: str, how: str = f"write a number and a unit, {EXAMPLES}") -> BadValue:
    name = f"{option} " if option else ""
    return BadValue(f"{name}{text!r} is not a duration: {how}")


def parse_seconds(text: str, option: str = "", *, bare_seconds: bool = True) -> float:
    """Seconds of ``text``: ``90s``, ``15m``, ``1.5h``, ``1h30m``; a bare number is seconds
    when ``bare_seconds``. Raises :class:`BadValue` naming ``option``."""
    s = str(text).strip().lower()
    if bare_seconds:
        try:
            value = float(s)
        except ValueError:
            pass
        else:
            if value < 0 or value != value:
                raise _bad(option, text, "it must be zero or more")
            return value
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m[1]) * _SECONDS[m[2]]
        pos = m.end()
    if not s or pos != len(s):
        raise _bad(option, text)
    return total


def influx_duration(text: str, option: str = "") -> str:
    """``text`` checked as an InfluxQL duration literal (``6h``, ``1d``, ``1h30m``: whole
    numbers, as ``now() - <duration>`` needs), returned as given."""
    s = str(text).strip()
    if not _INFLUX.fullmatch(s):
        raise _bad(option, text, "write a whole number and a unit, e.g. 30m, 6h, 1d or 1h30m")
    return s
