"""Time-of-day baselines: "what does this sensor usually read at this hour?".

Why: much of a city is periodic. Rush-hour congestion, the morning water-demand dip in
pressure and traffic-driven PM2.5 recur every working day; an operations centre wants
to hear about what is *unusual for the time of day*, which a fixed threshold cannot
express. A raw history would be too large for the per-sensor state (it goes to a Kafka
changelog), so the baseline is 48 hourly buckets — 24 for working days, 24 for weekends,
in the city's local time — each an exponentially weighted mean and variance *across
days*, plus per-hour running statistics of the sensor's two newest local days, which are
not folded into the buckets yet. A lookup at time t folds, on the fly, those of the two
days that lie before t's local day: the baseline holds exactly the days before the
evaluated day. So it never contains the evaluated day's readings (an incident does not
hide itself by dragging its own baseline along), and it does not depend on how far past
t the sensor's readings have already been folded in: district rules fold the readings of
a source running ahead of the district clock early, possibly past midnight (a worker
catching up, another one busy), and must see the baseline the backtest sees. A source
more than a whole day ahead of the clock pushes the older of the two days into the
buckets for good; by then its readings are late in every other sense too.

Lookups interpolate linearly between the current hour's bucket and the nearer
neighbouring hour, so a steep morning ramp is compared with the ramp, not with the hour's
average. The variance of a bucket is the variance of the mixture of the days folded in:
within-hour noise plus the day-to-day spread of the hourly mean.

State: one flat list of floats per (metric, timezone, halflife), :data:`SIZE` numbers
(JSON, ~2.6 kB): ``[day, today: 24 x (n, mean, m2), buckets: 48 x (mean, var, n),
previous day, previous: 24 x (n, mean, m2)]`` (the previous-day block was appended in
December 2026; :func:`upgrade` extends an older state).
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
PREV_DAY = BUCKETS + 48 * 3  # the previous local day of the sensor (-1: none)
PREV = PREV_DAY + 1  # its per-hour (n, mean, m2)
SIZE = PREV + 24 * 3


def new_state() -> list:
    st = [-1.0] + [0.0] * (SIZE - 1)
    st[PREV_DAY] = -1.0
    return st


def upgrade(st: list) -> list:
    """A state saved before the previous-day block existed, extended in place (its
    current day stays current; there is no previous day to keep). Called where states
    are loaded (``SensorState.from_dict``), so everything else can assume :data:`SIZE`."""
    if len(st) < SIZE:
        st.extend([-1.0] + [0.0] * (SIZE - PREV_DAY - 1))
    return st


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


def _folded(b_mean: float, b_var: float, b_n: float, n: float, m: float, m2: float,
            alpha: float) -> tuple[float, float, float]:
    """A bucket (mean, var, n) with one day's hour (n, mean, m2) folded in. The one
    formula for a fold kept in the state and a fold done on the fly at a lookup: both
    must give the same numbers to the last digit."""
    var = m2 / n
    if b_n <= 0:
        return _r(m), _r(var), n
    a = max(alpha, n / (b_n + n))  # equal weights while history is short
    d = m - b_mean
    return (_r(b_mean + a * d), _r((1.0 - a) * b_var + a * var + a * (1.0 - a) * d * d),
            min(b_n + n, 1e9))


def _fold(st: list, day_at: int, hours_at: int, alpha: float) -> None:
    """Move one day's per-hour statistics (day number at ``day_at``, hours from
    ``hours_at``) into the day-type buckets; reset that day."""
    day = int(st[day_at])
    if day < 0:
        return
    base = BUCKETS + weekend(day) * 24 * 3
    for h in range(24):
        i = hours_at + 3 * h
        n = st[i]
        if n <= 0:
            continue
        b = base + 3 * h
        st[b], st[b + 1], st[b + 2] = _folded(st[b], st[b + 1], st[b + 2], n, st[i + 1],
                                              st[i + 2], alpha)
        st[i] = st[i + 1] = st[i + 2] = 0.0
    st[day_at] = -1.0


def add(st: list, ts: int, x: float, clk: LocalClock, alpha: float) -> None:
    """One sample. A sample of the previous day still joins it; older ones are dropped."""
    day, hour, _ = clk.local(ts)
    cur = st[0]
    if day == cur:
        i = TODAY + 3 * hour
    elif day > cur:
        # the previous day goes into the buckets, the current one becomes the previous
        _fold(st, PREV_DAY, PREV, alpha)
        st[PREV_DAY] = cur
        st[PREV:PREV + 72] = st[TODAY:TODAY + 72]
        st[TODAY:TODAY + 72] = [0.0] * 72
        st[0] = float(day)
        i = TODAY + 3 * hour
    elif day == st[PREV_DAY]:
        i = PREV + 3 * hour
    else:
        return
    n = st[i] + 1.0
    d = x - st[i + 1]
    st[i] = n
    st[i + 1] += d / n
    st[i + 2] += d * (x - st[i + 1])


def positions(now: int, clk: LocalClock) -> tuple[int, int, float, int]:
    """Where :func:`baseline` looks at ``now``: (current hour's bucket offset, the nearer
    neighbouring hour's bucket offset, the neighbour's interpolation weight, the local
    day of ``now``). The same for every sensor of a tick, so the evaluator computes it
    once per tick."""
    day, hour, frac = clk.local(now)
    b1 = BUCKETS + (weekend(day) * 24 + hour) * 3
    w2 = abs(frac - 0.5)
    day2, hour2, _ = clk.local(now + (HOUR_MS if frac >= 0.5 else -HOUR_MS))
    return b1, BUCKETS + (weekend(day2) * 24 + hour2) * 3, w2, day


def _bucket(st: list, b: int, day: int, alpha: float) -> tuple[float, float, float]:
    """Bucket ``b`` (mean, var, n) with the sensor's unfolded days before ``day`` folded
    in, oldest first, as :func:`add` will fold them."""
    m, v, n = st[b], st[b + 1], st[b + 2]
    wt, h = divmod((b - BUCKETS) // 3, 24)
    for day_at, hours_at in ((PREV_DAY, PREV), (0, TODAY)):
        d = st[day_at]
        if 0 <= d < day and weekend(int(d)) == wt:
            i = hours_at + 3 * h
            if st[i] > 0:
                m, v, n = _folded(m, v, n, st[i], st[i + 1], st[i + 2], alpha)
    return m, v, n


def baseline_at(st: list, pos: tuple[int, int, float, int], alpha: float
                ) -> tuple[float, float, float] | None:
    """(samples behind it, mean, std) of the usual value at the local time of day of
    ``pos`` (:func:`positions`), from the days before its local day only; None without
    history for this hour and day type. ``alpha``: the state's (:func:`alpha_for`)."""
    b1, b2, w2, day = pos
    m, v, n1 = _bucket(st, b1, day, alpha)
    if n1 <= 0:
        return None
    if w2 > 0:
        m2, v2, n2 = _bucket(st, b2, day, alpha)
        if n2 > 0:
            m = (1.0 - w2) * m + w2 * m2
            v = (1.0 - w2) * v + w2 * v2
    return n1, m, math.sqrt(v) if v > 0 else 0.0


def baseline(st: list, now: int, clk: LocalClock, alpha: float
             ) -> tuple[float, float, float] | None:
    """:func:`baseline_at` for one time."""
    return baseline_at(st, positions(now, clk), alpha)
