"""Prometheus-style durations (``30s``, ``5m``, ``1h30m``) as integer milliseconds.

Rule files, unit tests and silences all speak this one notation, so engineers who know
Prometheus rule files need nothing new. Units must appear largest first, as Prometheus
requires; a bare ``0`` is allowed.
"""

from __future__ import annotations

import re

UNITS_MS: dict[str, int] = {
    "y": 365 * 86_400_000,
    "w": 7 * 86_400_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1_000,
    "ms": 1,
}
_ORDER = ["y", "w", "d", "h", "m", "s", "ms"]
_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")


class DurationError(ValueError):
    """A string that is not a valid non-negative duration."""


def parse_duration(text: object) -> int:
    """Milliseconds for ``text``; raises :class:`DurationError` with a reason."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise DurationError(f"{text!r} is not a duration (expected e.g. 30s, 5m, 1h30m)")
    if isinstance(text, int):
        if text == 0:
            return 0
        raise DurationError(f"{text!r} has no unit (expected e.g. {text}s or {text}m)")
    s = text.strip()
    if s == "0":
        return 0
    if s.startswith("-"):
        raise DurationError(f"{text!r} is negative: durations must be >= 0")
    if not s:
        raise DurationError("empty duration")
    pos = 0
    total = 0
    last_rank = -1
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        unit = m.group(2)
        rank = _ORDER.index(unit)
        if rank <= last_rank:
            raise DurationError(f"{text!r}: units must be given largest first, each once")
        last_rank = rank
        total += int(m.group(1)) * UNITS_MS[unit]
        pos = m.end()
    if pos != len(s):
        raise DurationError(f"{text!r} is not a duration (expected e.g. 30s, 5m, 1h30m)")
    return total


def format_duration(ms: int) -> str:
    """Inverse of :func:`parse_duration` (canonical form, ``0s`` for zero)."""
    if ms == 0:
        return "0s"
    out = []
    for unit in _ORDER:
        n, ms = divmod(ms, UNITS_MS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
