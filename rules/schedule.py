"""When a rule may hold: time-of-day and weekday windows in the city's local time.

An operations centre asks "noise above 55 dB *at night*", "a bus lane blocked *on working
days in the rush hours*". Alertmanager's ``time_intervals`` already give engineers the
words (``times`` with ``start_time``/``end_time``, ``weekdays`` with ranges, ``location``),
so a rule's ``schedule`` speaks them. Two differences, both on purpose:

* a time range may cross midnight (``22:00``–``06:00``): the night belongs to the day it
  starts on, so ``weekdays: [friday]`` with ``22:00-06:00`` covers Friday night until
  Saturday 06:00. Alertmanager needs two ranges for that; for night rules it is the
  common case;
* it is judged at the *event time* of the evaluation, never the wall clock, so a
  backtest and a catch-up give the alerts a live run gives.

Days of month, months and years are left out: no rule of a city needs them yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HHMM = re.compile(r"^(\d{2}):(\d{2})$")
_MINUTE_MS = 60_000


class ScheduleError(ValueError):
    """A schedule that cannot be understood; the message names the bad value."""


def parse_clock(text: str, *, end: bool = False) -> int:
    """``HH:MM`` → minutes after midnight; ``24:00`` only as an end (Alertmanager's rule)."""
    m = _HHMM.match(str(text))
    if not m:
        raise ScheduleError(f"{text!r} is not a time of day HH:MM")
    h, mi = int(m.group(1)), int(m.group(2))
    if mi > 59 or h > 24 or (h == 24 and (mi or not end)):
        raise ScheduleError(f"{text!r} is not a time of day (00:00-23:59{', or 24:00' if end else ''})")
    return h * 60 + mi


def parse_weekdays(items: list[str]) -> frozenset[int]:
    """``["monday:friday", "sunday"]`` → {0, 1, 2, 3, 4, 6} (Monday = 0)."""
    out: set[int] = set()
    for item in items:
        lo, _, hi = str(item).strip().lower().partition(":")
        for day in (lo, hi or lo):
            if day not in WEEKDAYS:
                raise ScheduleError(f"{item!r}: unknown weekday (use {', '.join(WEEKDAYS)})")
        a, b = WEEKDAYS.index(lo), WEEKDAYS.index(hi or lo)
        if b < a:
            raise ScheduleError(f"{item!r}: a weekday range runs forward (e.g. monday:friday)")
        out.update(range(a, b + 1))
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``[start, end)`` in minutes after local midnight; ``end <= start`` crosses midnight."""

    start: int
    end: int

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True, slots=True)
class Interval:
    """One entry of a schedule: the times (all day when empty) on the weekdays (every
    day when empty). A range that crosses midnight counts for the day it starts on."""

    times: tuple[TimeRange, ...] = ()
    weekdays: frozenset[int] = frozenset()

    def contains(self, weekday: int, minute: int) -> bool:
        days = self.weekdays
        if not self.times:
            return not days or weekday in days
        for r in self.times:
            if r.crosses_midnight:
                if minute >= r.start and (not days or weekday in days):
                    return True
                if minute < r.end and (not days or (weekday - 1) % 7 in days):
                    return True
            elif r.start <= minute < r.end and (not days or weekday in days):
                return True
        return False


@dataclass(frozen=True)
class Schedule:
    """The union of its intervals, in the time zone ``location``."""

    intervals: tuple[Interval, ...]
    location: str = "UTC"
    _tz: ZoneInfo | None = field(init=False, default=None, compare=False, repr=False)
    # minute → inside?: rules are evaluated at many sensors' readings of the same minute
    _memo: dict[int, bool] = field(init=False, default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        tz = None if self.location in ("UTC", "utc", "Z") else ZoneInfo(self.location)
        object.__setattr__(self, "_tz", tz)

    def _local(self, t_ms: int) -> datetime:
        return datetime.fromtimestamp(t_ms / 1000.0, tz=self._tz or UTC)

    def contains(self, t_ms: int) -> bool:
        """Whether event time ``t_ms`` (epoch ms) lies inside the schedule."""
        minute = t_ms // _MINUTE_MS
        hit = self._memo.get(minute)
        if hit is None:
            if len(self._memo) > 4096:
                self._memo.clear()
            local = self._local(minute * _MINUTE_MS)
            m = local.hour * 60 + local.minute
            wd = local.weekday()
            hit = self._memo[minute] = any(i.contains(wd, m) for i in self.intervals)
        return hit

    def next_start(self, t_ms: int) -> int | None:
        """The earliest time at or after ``t_ms`` inside the schedule (None: never).

        Why it exists: an absence rule's timer is due when a sensor has been silent for
        ``silent_for``; if that moment falls outside the schedule, the timer must wait
        for the schedule's next opening instead of firing nothing again and again."""
        if self.contains(t_ms):
            return t_ms
        local = self._local(t_ms)
        best: int | None = None
        for days in range(0, 9):
            day = (local + timedelta(days=days)).date()
            starts = {r.start for i in self.intervals for r in i.times} or {0}
            for start in starts:
                cand = datetime(day.year, day.month, day.day, tzinfo=self._tz or UTC) + timedelta(
                    minutes=start)
                ts = int(cand.timestamp() * 1000)
                if ts > t_ms and (best is None or ts < best) and self.contains(ts):
                    best = ts
            if best is not None:
                return best
        return best

    def next_end(self, t_ms: int) -> int | None:
        """The earliest time after ``t_ms`` outside the schedule (None: it never closes).

        Why: an alert that fired inside its schedule must end when the schedule closes,
        also when no reading comes to evaluate it (a silent sensor's absence alert)."""
        local = self._local(t_ms)
        best: int | None = None
        ends = {r.end for i in self.intervals for r in i.times} | {0}
        for days in range(-1, 9):
            day = (local + timedelta(days=days)).date()
            midnight = datetime(day.year, day.month, day.day, tzinfo=self._tz or UTC)
            for end in ends:
                ts = int((midnight + timedelta(minutes=end)).timestamp() * 1000)
                if ts > t_ms and (best is None or ts < best) and not self.contains(ts):
                    best = ts
        return best


def parse_schedule(obj: object, default_location: str = "UTC") -> Schedule:
    """A rule's ``schedule:`` (one interval or a list of them) → :class:`Schedule`.

    ``location`` may be given once, on any interval (all must agree), else the group's
    ``timezone`` applies, else UTC."""
    entries = obj if isinstance(obj, list) else [obj]
    if not entries:
        raise ScheduleError("a schedule needs at least one interval")
    intervals: list[Interval] = []
    locations: set[str] = set()
    for e in entries:
        if not isinstance(e, dict):
            raise ScheduleError("each schedule interval is a mapping (times, weekdays, location)")
        times = tuple(
            TimeRange(parse_clock(t.get("start_time", "")),
                      parse_clock(t.get("end_time", ""), end=True))
            for t in e.get("times") or ()
        )
        for r in times:
            if r.start == r.end:
                raise ScheduleError("a time range needs end_time != start_time "
                                    "(leave 'times' out for the whole day)")
        intervals.append(Interval(times, parse_weekdays(list(e.get("weekdays") or ()))))
        if e.get("location"):
            locations.add(str(e["location"]))
    if len(locations) > 1:
        raise ScheduleError(f"one location per schedule, got {sorted(locations)}")
    location = next(iter(locations), default_location)
    try:
        return Schedule(tuple(intervals), location)
    except (KeyError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {location!r} (use an IANA name, e.g. Europe/Paris)") from exc
