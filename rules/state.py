"""Per-sensor rolling state: the samples rules need, last-seen times, EWMA, weekly and
time-of-day baselines (``rules/seasonal.py``). Plain lists and dicts only, so ``to_dict`` is JSON and a Faust table (keyed by
sensor, co-partitioned with the readings) can hold it.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping
from typing import Any

import numpy as np

from urbanbrain.rules import seasonal

HOUR_MS = 3_600_000
WEEK_MS = 168 * HOUR_MS
#: from this many numbers a run is encoded from a numpy view of it rather than a copy
#: (measured: a view costs ~1 µs to make, a copy ~10 ns a number)
VIEW_FROM = 64


def _view(a: array, dtype: type) -> np.ndarray | list:
    return np.frombuffer(a, dtype=dtype) if len(a) >= VIEW_FROM else a.tolist()


class SensorState:
    """Everything the engine remembers about one sensor."""

    __slots__ = ("attrs", "based", "evald", "ewma", "last", "seen", "series", "src", "times",
                 "tod", "weekly")

    def __init__(self) -> None:
        self.seen: int | None = None  # event time of the newest reading
        self.attrs: dict[str, Any] | None = None  # for sensors missing from the registry
        # metric -> [ts, values], ts sorted; typed arrays (16 bytes a sample, not ~78 as
        # lists of Python ints and floats): windows of minutes × thousands of sensors
        self.series: dict[str, list[array]] = {}
        self.last: dict[str, int] = {}  # metric -> newest sample time
        # metric -> time of the newest sample folded into its baselines (ewma, weekly,
        # tod): never folded twice; a district evaluator folds up to its clock only
        self.based: dict[str, int] = {}
        self.ewma: dict[str, list] = {}  # "metric|halflife" -> windows.ewma_update state
        self.weekly: dict[str, dict[str, list]] = {}  # metric -> hour-of-week -> bucket
        self.tod: dict[str, list] = {}  # "metric|tz|halflife" -> seasonal.py state
        # rule group -> event time of this sensor's last evaluation (streaming mode: each
        # sensor is evaluated at its own readings' times, at most once per group interval)
        self.evald: dict[str, int] = {}
        # metric ("" = any) -> recent reading times, for "last seen at or before t" when
        # readings newer than t are already in (district scope, sources at different speeds)
        self.times: dict[str, array] = {}
        self.src: int | None = None  # the source (device, gateway) of its latest reading

    # --- samples ----------------------------------------------------------------------
    def add(self, metric: str, ts: int, value: float, retention_ms: int,
            clock: int | None = None) -> bool:
        """Insert a sample (late ones in order, same time replaces); False if too old.

        Samples are kept for ``retention_ms`` behind the newest one, or behind ``clock``
        when that is older (district scope: sources ahead of the evaluator's clock are
        folded in early, and the clock's windows still need what lies behind it)."""
        s = self.series.get(metric)
        if s is None:
            s = self.series[metric] = [array("q"), array("d")]
        tsl, vl = s
        if not tsl or ts > tsl[-1]:
            tsl.append(ts)
            vl.append(value)
        else:
            newest = tsl[-1] if clock is None else min(tsl[-1], clock)
            if ts < newest - retention_ms:
                return False
            i = bisect_left(tsl, ts)
            if i < len(tsl) and tsl[i] == ts:
                vl[i] = value
            else:
                insort(tsl, ts)
                vl.insert(i, value)
        cutoff = (tsl[-1] if clock is None else min(tsl[-1], clock)) - retention_ms
        if tsl[0] < cutoff:
            k = bisect_left(tsl, cutoff)
            del tsl[:k]
            del vl[:k]
        return True

    def window(self, metric: str, start_excl: int, end_incl: int) -> tuple[list[int], list[float]]:
        s = self.series.get(metric)
        if not s:
            return [], []
        tsl, vl = s
        j = bisect_right(tsl, end_incl)
        i = bisect_right(tsl, start_excl, 0, j)
        return tsl[i:j], vl[i:j]

    def seen_at(self, metric: str, ts: int, floor: int | None) -> None:
        """Record a reading time; times before ``floor`` (the evaluator's clock minus the
        longest absence) are dropped, except the last one before it."""
        t = self.times.get(metric)
        if t is None:
            t = self.times[metric] = array("q")
        if not t or ts > t[-1]:
            t.append(ts)
        else:
            i = bisect_left(t, ts)
            if i == len(t) or t[i] != ts:
                t.insert(i, ts)
        if floor is not None and t[0] < floor:
            k = bisect_left(t, floor) - 1
            if k > 0:
                del t[:k]

    def last_seen_before(self, metric: str, now: int) -> int | None:
        t = self.times.get(metric)
        if not t:
            return None
        i = bisect_right(t, now)
        return t[i - 1] if i else None

    # --- same hour last week ------------------------------------------------------------
    def weekly_add(self, metric: str, ts: int, x: float) -> None:
        """Welford stats per hour-of-week bucket: [week, n, mean, m2, pweek, pn, pmean, pm2]."""
        how = str((ts // HOUR_MS) % 168)
        week = ts // WEEK_MS
        buckets = self.weekly.setdefault(metric, {})
        b = buckets.get(how)
        if b is None:
            b = buckets[how] = [week, 0, 0.0, 0.0, -1, 0, 0.0, 0.0]
        elif b[0] < week:
            prev = b[0:4] if b[0] == week - 1 else [-1, 0, 0.0, 0.0]
            b[:] = [week, 0, 0.0, 0.0, *prev]
        elif b[0] > week:
            return
        n = b[1] + 1
        d = x - b[2]
        b[1] = n
        b[2] += d / n
        b[3] += d * (x - b[2])

    def weekly_baseline(self, metric: str, now: int) -> tuple[int, float, float] | None:
        """(n, mean, sample std) of the same hour one week before ``now``."""
        b = self.weekly.get(metric, {}).get(str((now // HOUR_MS) % 168))
        if b is None:
            return None
        week = now // WEEK_MS
        if b[0] == week - 1:
            n, m, m2 = b[1], b[2], b[3]
        elif b[4] == week - 1:
            n, m, m2 = b[5], b[6], b[7]
        else:
            return None
        if n < 2:
            return None
        return n, m, (m2 / (n - 1)) ** 0.5

    # --- serialisation ------------------------------------------------------------------
    def to_dict(self, view: bool = False) -> dict[str, Any]:
        """A copy (the engine keeps mutating its own lists after this returns).

        ``view``: no copy. The number runs are numpy views of the engine's own arrays and
        the baselines its own lists, to be serialised at once (``orjson`` with
        ``OPT_SERIALIZE_NUMPY``, the same JSON as the copy) and dropped: an array cannot
        grow while a view of it lives. Why: a sensor's entry is written every time it
        reports, and copying its ~400 samples and 578-number baseline into fresh Python
        lists only to encode them was a third of that write (``Evaluator.take_encoded``)."""
        if view:
            m = {k: [_view(v[0], np.int64), _view(v[1], np.float64)]
                 for k, v in self.series.items()}
        else:
            m = {k: [list(v[0]), list(v[1])] for k, v in self.series.items()}
        d: dict[str, Any] = {"seen": self.seen, "m": m, "ls": dict(self.last),
                             "bs": dict(self.based)}
        if self.attrs:
            d["attrs"] = dict(self.attrs)
        if self.ewma:
            d["e"] = self.ewma if view else {k: list(v) for k, v in self.ewma.items()}
        if self.weekly:
            d["w"] = self.weekly if view else {
                m: {h: list(b) for h, b in bs.items()} for m, bs in self.weekly.items()}
        if self.tod:
            d["t"] = self.tod if view else {k: list(v) for k, v in self.tod.items()}
        if self.evald:
            d["ev"] = dict(self.evald)
        if self.times:
            d["ts"] = ({k: _view(v, np.int64) for k, v in self.times.items()} if view
                       else {k: list(v) for k, v in self.times.items()})
        if self.src is not None:
            d["src"] = self.src
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SensorState:
        st = cls()
        st.seen = d.get("seen")
        st.attrs = dict(d["attrs"]) if d.get("attrs") else None
        st.series = {k: [array("q", v[0]), array("d", v[1])] for k, v in (d.get("m") or {}).items()}
        st.last = dict(d.get("ls") or {})
        # before "bs" existed every sample was folded into the baselines on arrival
        st.based = dict(d["bs"]) if "bs" in d else dict(st.last)
        st.ewma = {k: list(v) for k, v in (d.get("e") or {}).items()}
        st.weekly = {m: {h: list(b) for h, b in bs.items()} for m, bs in (d.get("w") or {}).items()}
        st.tod = {k: seasonal.upgrade(list(v)) for k, v in (d.get("t") or {}).items()}
        st.evald = dict(d.get("ev") or {})
        st.times = {k: array("q", v) for k, v in (d.get("ts") or {}).items()}
        st.src = d.get("src")
        return st
