"""Time-of-day baselines: "what does this sensor usually read at this time of day?".

Why: much of a city is periodic. Rush-hour congestion, the morning water-demand dip in
pressure and traffic-driven PM2.5 recur every working day; an operations centre wants
to hear about what is *unusual for the time of day*, which a fixed threshold cannot
express. A raw history would be too large for the per-sensor state (it goes to a Kafka
changelog), so the baseline is a set of buckets per day type (by default working days
and weekends) and slot of the day (by default an hour), in the city's local time — each
an exponentially weighted mean and variance *across days* — plus per-slot running
statistics of the sensor's two newest local days, which are not folded into the buckets
yet. A lookup at time t folds, on the fly, those of the two days that lie before t's
local day: the baseline holds exactly the days before the evaluated day. So it never
contains the evaluated day's readings (an incident does not hide itself by dragging its
own baseline along), and it does not depend on how far past t the sensor's readings have
already been folded in: district rules fold the readings of a source running ahead of
the district clock early, possibly past midnight (a worker catching up, another one
busy), and must see the baseline the backtest sees. A source more than a whole day ahead
of the clock pushes the older of the two days into the buckets for good; by then its
readings are late in every other sense too.

Lookups interpolate linearly between the current slot's bucket and the nearer
neighbouring slot, so a steep morning ramp is compared with the ramp, not with the
slot's average. The variance of a bucket is the variance of the mixture of the days
folded in: within-slot noise plus the day-to-day spread of the slot's mean. That is why
the slot width matters: an hour that holds the onset of a rush has the whole ramp in its
"noise", and an incident at the onset hides in it (30-minute slots cut that spread).
Day types matter the same way: a Friday evening that starts an hour earlier is, against
Monday to Thursday, an incident every week.

State: one flat list of floats per (metric, timezone, halflife, layout), laid out by
:class:`Layout` (hourly working-day/weekend: :data:`SIZE` = 290 numbers, ~2.6 kB of
JSON; 30-minute slots: 578, ~5.2 kB; and three day types: 722). The previous-day block
was appended in December 2026; :func:`upgrade` extends an older (hourly) state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MIN_SLOT_MS = 300_000  # the finest resolution: 5 min (288 slots a day)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class BadDayTypes(ValueError):
    pass


def parse_day_types(groups: list[str]) -> tuple[int, ...]:
    """The day type (index into ``groups``) of each weekday, Monday first, from groups
    like ``["mon-thu", "fri", "sat-sun"]``: every weekday in exactly one group."""
    of = [-1] * 7
    for k, g in enumerate(groups):
        for part in str(g).lower().replace(" ", "").split(","):
            lo, _, hi = part.partition("-")
            if lo not in WEEKDAYS or (hi and hi not in WEEKDAYS):
                raise BadDayTypes(f"{part!r} is not a weekday or a range like mon-fri")
            i, j = WEEKDAYS.index(lo), WEEKDAYS.index(hi or lo)
            if j < i:
                raise BadDayTypes(f"{part!r}: a range runs from Monday to Sunday")
            for d in range(i, j + 1):
                if of[d] >= 0:
                    raise BadDayTypes(f"{WEEKDAYS[d]} is in two day types")
                of[d] = k
    if -1 in of:
        missing = ", ".join(WEEKDAYS[d] for d in range(7) if of[d] < 0)
        raise BadDayTypes(f"every weekday needs a day type; missing: {missing}")
    return tuple(of)


WORKDAY_WEEKEND = (0, 0, 0, 0, 0, 1, 1)  # the default: working days, weekends


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a state keeps what: ``slot_ms`` wide slots of the day, one set of buckets
    per day type (``day_type``: a type for each weekday, Monday first).

    ``[day, today: S x (n, mean, m2), buckets: T x S x (mean, var, n), previous day,
    previous: S x (n, mean, m2)]`` for S slots and T day types."""

    slot_ms: int = HOUR_MS
    day_type: tuple[int, ...] = WORKDAY_WEEKEND
    slots: int = field(init=False)
    types: int = field(init=False)
    buckets: int = field(init=False)  # offset of the buckets (today's slots start at 1)
    prev_day: int = field(init=False)  # the previous local day of the sensor (-1: none)
    prev: int = field(init=False)  # its per-slot (n, mean, m2)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        slots, types = DAY_MS // self.slot_ms, max(self.day_type) + 1
        for k, v in (("slots", slots), ("types", types), ("buckets", 1 + 3 * slots),
                     ("prev_day", 1 + 3 * slots + 3 * types * slots),
                     ("prev", 2 + 3 * slots + 3 * types * slots),
                     ("size", 2 + 6 * slots + 3 * types * slots)):
            object.__setattr__(self, k, v)

    def type_of(self, day: int) -> int:
        """Day type of a day number counted from 1970-01-01 (a Thursday)."""
        return self.day_type[(day + 3) % 7]


HOURLY = Layout()  # the default layout, and the only one before December 2026
TODAY = 1  # offset of today's per-slot (n, mean, m2), in every layout
BUCKETS, PREV_DAY, PREV, SIZE = HOURLY.buckets, HOURLY.prev_day, HOURLY.prev, HOURLY.size
_LEGACY_SIZE = PREV_DAY  # hourly states saved before the previous-day block existed


def new_state(layout: Layout = HOURLY) -> list:
    st = [-1.0] + [0.0] * (layout.size - 1)
    st[layout.prev_day] = -1.0
    return st


def upgrade(st: list) -> list:
    """A state saved before the previous-day block existed, extended in place (its
    current day stays current; there is no previous day to keep). Called where states
    are loaded (``SensorState.from_dict``), so everything else can assume a whole layout.
    Only hourly states predate that block."""
    if len(st) == _LEGACY_SIZE:
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

    def local(self, ts: int, slot_ms: int = HOUR_MS) -> tuple[int, int, float]:
        """(local day number, slot of the day (the hour 0-23 by default), fraction of
        the slot)."""
        lt = ts + self.offset_ms(ts)
        return lt // DAY_MS, (lt % DAY_MS) // slot_ms, (lt % slot_ms) / slot_ms


@lru_cache(maxsize=64)
def clock(tz: str) -> LocalClock:
    return LocalClock(tz)


def valid_timezone(tz: str) -> bool:
    try:
        LocalClock(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return False
    return True


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


def _fold(st: list, day_at: int, slots_at: int, alpha: float, lay: Layout) -> None:
    """Move one day's per-slot statistics (day number at ``day_at``, slots from
    ``slots_at``) into its day type's buckets; reset that day."""
    day = int(st[day_at])
    if day < 0:
        return
    base = lay.buckets + lay.type_of(day) * lay.slots * 3
    for h in range(lay.slots):
        i = slots_at + 3 * h
        n = st[i]
        if n <= 0:
            continue
        b = base + 3 * h
        st[b], st[b + 1], st[b + 2] = _folded(st[b], st[b + 1], st[b + 2], n, st[i + 1],
                                              st[i + 2], alpha)
        st[i] = st[i + 1] = st[i + 2] = 0.0
    st[day_at] = -1.0


def add(st: list, ts: int, x: float, clk: LocalClock, alpha: float,
        lay: Layout = HOURLY) -> None:
    """One sample. A sample of the previous day still joins it; older ones are dropped."""
    day, slot, _ = clk.local(ts, lay.slot_ms)
    cur = st[0]
    if day == cur:
        i = TODAY + 3 * slot
    elif day > cur:
        # the previous day goes into the buckets, the current one becomes the previous
        _fold(st, lay.prev_day, lay.prev, alpha, lay)
        st[lay.prev_day] = cur
        w, prev = 3 * lay.slots, lay.prev
        st[prev:prev + w] = st[TODAY:TODAY + w]
        st[TODAY:TODAY + w] = [0.0] * w
        st[0] = float(day)
        i = TODAY + 3 * slot
    elif day == st[lay.prev_day]:
        i = lay.prev + 3 * slot
    else:
        return
    n = st[i] + 1.0
    d = x - st[i + 1]
    st[i] = n
    st[i + 1] += d / n
    st[i + 2] += d * (x - st[i + 1])


Position = tuple[int, int, float, int, Layout]


def positions(now: int, clk: LocalClock, lay: Layout = HOURLY) -> Position:
    """Where :func:`baseline` looks at ``now``: (current slot's bucket offset, the nearer
    neighbouring slot's bucket offset, the neighbour's interpolation weight, the local
    day of ``now``, the layout). The same for every sensor of a tick, so the evaluator
    computes it once per tick."""
    day, slot, frac = clk.local(now, lay.slot_ms)
    b1 = lay.buckets + (lay.type_of(day) * lay.slots + slot) * 3
    w2 = abs(frac - 0.5)
    day2, slot2, _ = clk.local(now + (lay.slot_ms if frac >= 0.5 else -lay.slot_ms),
                               lay.slot_ms)
    return b1, lay.buckets + (lay.type_of(day2) * lay.slots + slot2) * 3, w2, day, lay


def _bucket(st: list, b: int, day: int, alpha: float, lay: Layout
            ) -> tuple[float, float, float]:
    """Bucket ``b`` (mean, var, n) with the sensor's unfolded days before ``day`` folded
    in, oldest first, as :func:`add` will fold them."""
    m, v, n = st[b], st[b + 1], st[b + 2]
    wt, h = divmod((b - lay.buckets) // 3, lay.slots)
    for day_at, slots_at in ((lay.prev_day, lay.prev), (0, TODAY)):
        d = st[day_at]
        if 0 <= d < day and lay.type_of(int(d)) == wt:
            i = slots_at + 3 * h
            if st[i] > 0:
                m, v, n = _folded(m, v, n, st[i], st[i + 1], st[i + 2], alpha)
    return m, v, n


def baseline_at(st: list, pos: Position, alpha: float) -> tuple[float, float, float] | None:
    """(samples behind it, mean, std) of the usual value at the local time of day of
    ``pos`` (:func:`positions`), from the days before its local day only; None without
    history for this hour and day type. ``alpha``: the state's (:func:`alpha_for`)."""
    b1, b2, w2, day, lay = pos
    m, v, n1 = _bucket(st, b1, day, alpha, lay)
    if n1 <= 0:
        return None
    if w2 > 0:
        m2, v2, n2 = _bucket(st, b2, day, alpha, lay)
        if n2 > 0:
            m = (1.0 - w2) * m + w2 * m2
            v = (1.0 - w2) * v + w2 * v2
    return n1, m, math.sqrt(v) if v > 0 else 0.0


def baseline(st: list, now: int, clk: LocalClock, alpha: float, lay: Layout = HOURLY
             ) -> tuple[float, float, float] | None:
    """:func:`baseline_at` for one time."""
    return baseline_at(st, positions(now, clk, lay), alpha)
