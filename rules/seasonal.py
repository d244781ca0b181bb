"""Time-of-day baselines: "what does this sensor usually read at this hour?".

Why: much of a city is periodic. Rush-hour congestion, the morning water-demand dip in
pressure and traffic-driven PM2.5 recur every working day; an operations centre wants
to hear about what is *unusual for the time of day*, which a fixed threshold cannot
express. A raw history would be too large for the per-sensor state (it goes to a Kafka
changelog), so the baseline is 48 hourly buckets — 24 for working days, 24 for weekends,
in the city's local time — each an exponentially weighted mean and variance *across
days*, plus today's per-hour running statistics, which are folded into the buckets when
the local day changes. So the baseline never contains today's readings: an incident does
not hide itself by dragging its own baseline along.

Lookups interpolate linearly between the current hour's bucket and the nearer
neighbouring hour, so a steep morning ramp is compared with the ramp, not with the hour's
average. The variance of a bucket is the variance of the mixture of the days folded in:
within-hour noise plus the day-to-day spread of the hourly mean.

State: one flat list of floats per (metric, timezone, halflife), :data:`SIZE` numbers
(JSON, ~2 kB): ``[day, today: 24 x (n, mean, m2), buckets: 48 x (mean, var, n)]``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
TODAY = 1  # offset of today's per-hour (n, mean, m2)
BUCKETS = TODAY + 24 * 3  # offset of the 48 (mean, var, n) buckets
SIZE = BUCKETS + 48 * 3


def new_state() -> list:
    return [-1.0] + [0.0] * (SIZE - 1)


def _r(v: float) -> float:
    """6 significant digits: bucket values are estimates; this keeps the JSON short."""
    return float(f"{v:.6g}")


class LocalClock:
    """Local day number, hour and weekday of event times in one time zone (cached per
    UTC hour, so a lookup is a dict hit)."""

    __slots__ = ("_cache", "tz")

    def __init__(self, tz: str) -> None:
        self.tz = ZoneInfo(tz) if tz not in ("UTC", "utc", "Z") else UTC
        self._cache: dict[int, int] = {}

    def offset_ms(self, ts: int) -> int:
        h = ts // HOUR_MS
        off = self._cache.get(h)
        if off is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            dt = datetime.fromtimestamp(h * HOUR_MS / 1000.0, tz=self.tz)
            off = self._cache[h] = int(dt.utcoffset().total_seconds() * 1000)  # type: ignore[union-attr]
        return off

    def local(self, ts: int) -> tuple[int, int, float]:
        """(local day number, hour 0-23, fraction of the hour)."""
        lt = ts + self.offset_ms(ts)
        hours = lt // HOUR_MS
        return lt // DAY_MS, hours % 24, (lt % HOUR_MS) / HOUR_MS


@lru_cache(maxsize=64)
def clock(tz: str) -> LocalClock:
    return LocalClock(tz)


def valid_timezone(tz: str) -> bool:
    try:
        LocalClock(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return False
    return True


def weekend(day: int) -> int:
    """1 for Saturday/Sunday of a day number counted from 1970-01-01 (a Thursday)."""
    return 1 if (day + 3) % 7 >= 5 else 0


def alpha_for(halflife_ms: int) -> float:
    """Weight of one new day in the across-days EWMA."""
    return 1.0 - 2.0 ** (-DAY_MS / max(halflife_ms, 1))


def _fold(st: list, alpha: float) -> None:
    """Move today's per-hour statistics into the day-type buckets; reset today."""
    day = int(st[0])
    if day < 0:
        return
    base = BUCKETS + weekend(day) * 24 * 3
    for h in range(24):
        i = TODAY + 3 * h
        n = st[i]
        if n <= 0:
            continue
        m, var = st[i + 1], st[i + 2] / n
        b = base + 3 * h
        big_n = st[b + 2]
        if big_n <= 0:
            st[b], st[b + 1], st[b + 2] = _r(m), _r(var), n
        else:
            a = max(alpha, n / (big_n + n))  # equal weights while history is short
            d = m - st[b]
            st[b + 1] = _r((1.0 - a) * st[b + 1] + a * var + a * (1.0 - a) * d * d)
            st[b] = _r(st[b] + a * d)
            st[b + 2] = min(big_n + n, 1e9)
        st[i] = st[i + 1] = st[i + 2] = 0.0


def add(st: list, ts: int, x: float, clk: LocalClock, alpha: float) -> None:
    """One sample. Samples of a day already folded (late by a day change) are dropped."""
    day, hour, _ = clk.local(ts)
    cur = st[0]
    if day != cur:
        if day < cur:
            return
        _fold(st, alpha)
        st[0] = float(day)
    i = TODAY + 3 * hour
    n = st[i] + 1.0
    d = x - st[i + 1]
    st[i] = n
    st[i + 1] += d / n
    st[i + 2] += d * (x - st[i + 1])


def positions(now: int, clk: LocalClock) -> tuple[int, int, float]:
    """Where :func:`baseline` looks at ``now``: (current hour's bucket offset, the nearer
    neighbouring hour's bucket offset, the neighbour's interpolation weight). The same for
    every sensor of a tick, so the evaluator computes it once per tick."""
    day, hour, frac = clk.local(now)
    b1 = BUCKETS + (weekend(day) * 24 + hour) * 3
    w2 = abs(frac - 0.5)
    day2, hour2, _ = clk.local(now + (HOUR_MS if frac >= 0.5 else -HOUR_MS))
    return b1, BUCKETS + (weekend(day2) * 24 + hour2) * 3, w2


def baseline_at(st: list, pos: tuple[int, int, float]) -> tuple[float, float, float] | None:
    """(samples behind it, mean, std) of the usual value at the local time of day of
    ``pos`` (:func:`positions`), from previous days only; None without history for this
    hour and day type."""
    b1, b2, w2 = pos
    n1 = st[b1 + 2]
    if n1 <= 0:
        return None
    m, v = st[b1], st[b1 + 1]
    if w2 > 0 and st[b2 + 2] > 0:
        m = (1.0 - w2) * m + w2 * st[b2]
        v = (1.0 - w2) * v + w2 * st[b2 + 1]
    return n1, m, math.sqrt(v) if v > 0 else 0.0


def baseline(st: list, now: int, clk: LocalClock) -> tuple[float, float, float] | None:
    """:func:`baseline_at` for one time."""
    return baseline_at(st, positions(now, clk))
