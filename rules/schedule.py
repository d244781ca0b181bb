"""When a rule may hold: time-of-day and weekday windows in the city's local time.

An operations centre asks "noise above 55 dB *at night*", "a bus lane blocked *on working
days in the rush hours*", "pollen counts *from March to June*". Alertmanager's
``time_intervals`` already give engineers the words (``times`` with
``start_time``/``end_time``, ``weekdays``, ``days_of_month``, ``months``, ``years`` with
ranges, ``location``), so a rule's ``schedule`` speaks them. Two differences, both on
purpose:

* a time range may cross midnight (``22:00``–``06:00``): the night belongs to the day it
  starts on, so ``weekdays: [friday]`` with ``22:00-06:00`` covers Friday night until
  Saturday 06:00. Alertmanager needs two ranges for that; for night rules it is the
  common case;
* it is judged at the *event time* of the evaluation, never the wall clock, so a
  backtest and a catch-up give the alerts a live run gives.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
#: how far ahead the next opening or closing is searched (a ``years`` list may end)
_SEARCH_DAYS = 4 * 366
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


def _bounds(item: object, what: str, parse: Callable[[str], int]) -> tuple[int, int]:
    """``"a:b"`` or ``"a"`` (or a bare number from YAML) → (a, b) parsed by ``parse``."""
    text = str(item).strip().lower()
    lo, sep, hi = text.partition(":")
    if not lo or (sep and not hi):
        raise ScheduleError(f"{item!r}: not a {what} or a range of them (a:b)")
    try:
        return parse(lo), parse(hi if sep else lo)
    except ScheduleError as exc:
        if isinstance(item, int):  # YAML 1.1 reads an unquoted 1:7 as 67 (base 60)
            raise ScheduleError(f"{exc} (quote ranges: '1:7'; unquoted, YAML reads 1:7 as "
                                "the number 67)") from None
        raise


def _named(names: tuple[str, ...], what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if text in names:
            return names.index(text) + 1
        if text.isdigit() and 1 <= int(text) <= len(names):
            return int(text)
        raise ScheduleError(f"{text!r}: unknown {what} (use {names[0]} … {names[-1]} or "
                            f"1 … {len(names)})")
    return parse


def _int_in(lo: int, hi: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise ScheduleError(f"{text!r}: not a {what}") from None
        if not lo <= v <= hi or v == 0:
            raise ScheduleError(f"{text!r}: a {what} is {lo} … {hi}"
                                f"{' (negative: from the end of the month), not 0' if lo < 0 else ''}")
        return v
    return parse


def parse_days_of_month(items: list[object]) -> tuple[tuple[int, int], ...]:
    """``["1:7", "-1"]`` → ((1, 7), (-1, -1)); negative days count from the month's end
    (-1 is its last day), as in Alertmanager, and a range may mix them (``1:-1``)."""
    out = []
    for item in items:
        a, b = _bounds(item, "day of month", _int_in(-31, 31, "day of month"))
        if (a > 0) == (b > 0) and b < a:
            raise ScheduleError(f"{item!r}: a day-of-month range runs forward (e.g. 1:7)")
        out.append((a, b))
    return tuple(out)


def parse_months(items: list[object]) -> frozenset[int]:
    """``["march:june", "december"]`` → {3, 4, 5, 6, 12} (names or 1-12)."""
    out: set[int] = set()
    for item in items:
        a, b = _bounds(item, "month", _named(MONTHS, "month"))
        if b < a:
            raise ScheduleError(f"{item!r}: a month range runs forward (e.g. march:june; "
                                "list december and january:february across the new year)")
        out.update(range(a, b + 1))
    return frozenset(out)


def parse_years(items: list[object]) -> tuple[tuple[int, int], ...]:
    out = []
    for item in items:
        a, b = _bounds(item, "year", _int_in(1970, 9999, "year"))
        if b < a:
            raise ScheduleError(f"{item!r}: a year range runs forward (e.g. 2026:2027)")
        out.append((a, b))
    return tuple(out)


def _day_in(d: date, ranges: tuple[tuple[int, int], ...]) -> bool:
    last = calendar.monthrange(d.year, d.month)[1]
    for a, b in ranges:
        a = a if a > 0 else last + 1 + a
        b = b if b > 0 else last + 1 + b
        if a <= d.day <= b:
            return True
    return False


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
    """One entry of a schedule: the times (all day when empty) on the days its day fields
    allow (each left empty allows every day). A range that crosses midnight counts for
    the day it starts on: its early-morning part is judged by the previous day's fields."""

    times: tuple[TimeRange, ...] = ()
    weekdays: frozenset[int] = frozenset()
    days_of_month: tuple[tuple[int, int], ...] = ()
    months: frozenset[int] = frozenset()
    years: tuple[tuple[int, int], ...] = ()

    def day_ok(self, d: date) -> bool:
        return ((not self.weekdays or d.weekday() in self.weekdays)
                and (not self.months or d.month in self.months)
                and (not self.years or any(a <= d.year <= b for a, b in self.years))
                and (not self.days_of_month or _day_in(d, self.days_of_month)))

    def contains(self, d: date, minute: int) -> bool:
        if not self.times:
            return self.day_ok(d)
        for r in self.times:
            if r.crosses_midnight:
                if minute >= r.start and self.day_ok(d):
                    return True
                if minute < r.end and self.day_ok(d - timedelta(days=1)):
                    return True
            elif r.start <= minute < r.end and self.day_ok(d):
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
            m, d = local.hour * 60 + local.minute, local.date()
            hit = self._memo[minute] = any(i.contains(d, m) for i in self.intervals)
        return hit

    def next_start(self, t_ms: int) -> int | None:
        """The earliest time at or after ``t_ms`` inside the schedule (None: never).

        Why it exists: an absence rule's timer is due when a sensor has been silent for
        ``silent_for``; if that moment falls outside the schedule, the timer must wait
        for the schedule's next opening instead of firing nothing again and again."""
        if self.contains(t_ms):
            return t_ms
        local = self._local(t_ms)
        if all(i.years and max(b for _, b in i.years) < local.year for i in self.intervals):
            return None  # every interval's years are over: no day-by-day search
        best: int | None = None
        starts = sorted({r.start for i in self.intervals for r in i.times} | {0})
        for days in range(0, _SEARCH_DAYS):
            day = (local + timedelta(days=days)).date()
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
        ends = sorted({r.end for i in self.intervals for r in i.times} | {0})
        for days in range(-1, _SEARCH_DAYS):
            day = (local + timedelta(days=days)).date()
            midnight = datetime(day.year, day.month, day.day, tzinfo=self._tz or UTC)
            for end in ends:
                ts = int((midnight + timedelta(minutes=end)).timestamp() * 1000)
                if ts > t_ms and (best is None or ts < best) and not self.contains(ts):
                    best = ts
            if best is not None and days >= 1:
                return best  # later days only hold later candidates
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
            raise ScheduleError("each schedule interval is a mapping (times, weekdays, "
                                "days_of_month, months, years, location)")
        times = tuple(
            TimeRange(parse_clock(t.get("start_time", "")),
                      parse_clock(t.get("end_time", ""), end=True))
            for t in e.get("times") or ()
        )
        for r in times:
            if r.start == r.end:
                raise ScheduleError("a time range needs end_time != start_time "
                                    "(leave 'times' out for the whole day)")
        intervals.append(Interval(
            times, parse_weekdays(list(e.get("weekdays") or ())),
            parse_days_of_month(list(e.get("days_of_month") or ())),
            parse_months(list(e.get("months") or ())),
            parse_years(list(e.get("years") or ()))))
        if e.get("location"):
            locations.add(str(e["location"]))
    if len(locations) > 1:
        raise ScheduleError(f"one location per schedule, got {sorted(locations)}")
    location = next(iter(locations), default_location)
    try:
        return Schedule(tuple(intervals), location)
    except (KeyError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {location!r} (use an IANA name, e.g. Europe/Paris)") from exc
