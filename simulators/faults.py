"""Sensor and transport faults, recorded exactly so tests can check the pipeline's reaction.

Reading faults (change what a sensor reports): ``stuck`` (repeats the value it had when
the fault began), ``dropout`` (silent), ``skew`` (event time off by 45–240 s, inside
ingest's 300 s future limit), ``spike`` (one reading of one metric ×3–6, clipped to the
metric's plausible range, so it is an outlier and not a dead letter).

Message faults (change what goes over MQTT): ``duplicate`` (the same payload twice) and
``malformed`` (a payload truncated mid-JSON or not UTF-8: always a dead letter). Their
exact counts are in :class:`FaultStats`, so a test can compare with the dead-letter topic.

Fault windows are drawn per UTC day from the seed, like incidents, and written to the
ground truth with kinds ``fault.stuck``, ``fault.dropout``, ``fault.skew``, ``fault.spike``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from urbanbrain.errors import BadValue
from urbanbrain.metrics import METRICS
from urbanbrain.simulators.city import KINDS, City
from urbanbrain.simulators.incidents import DAY_MS, Incident


@dataclass(frozen=True)
class FaultConfig:
    stuck_per_sensor_day: float = 0.0
    dropout_per_sensor_day: float = 0.0
    skew_per_sensor_day: float = 0.0
    spike_prob: float = 0.0  # per reading
    duplicate_prob: float = 0.0  # per message
    malformed_prob: float = 0.0  # per message

    @classmethod
    def off(cls) -> FaultConfig:
        return cls()

    @classmethod
    def light(cls) -> FaultConfig:
        return cls(0.02, 0.03, 0.01, 2e-4, 1e-3, 1e-3)

    @classmethod
    def heavy(cls) -> FaultConfig:
        return cls(0.2, 0.3, 0.1, 2e-3, 1e-2, 1e-2)

    @classmethod
    def parse(cls, spec: str | None) -> FaultConfig:
        """"off" | "light" | "heavy" | "stuck=0.1,malformed=0.01,..." (unknown keys fail)."""
        if not spec or spec == "off":
            return cls.off()
        if spec in ("light", "on"):
            return cls.light()
        if spec == "heavy":
            return cls.heavy()
        names = {"stuck": "stuck_per_sensor_day", "dropout": "dropout_per_sensor_day",
                 "skew": "skew_per_sensor_day", "spike": "spike_prob",
                 "duplicate": "duplicate_prob", "malformed": "malformed_prob"}
        kw = {}
        for part in spec.split(","):
            key, _, val = part.partition("=")
            if key.strip() not in names:
                raise BadValue(f"unknown fault {key!r}; use {', '.join(names)}")
            try:
                kw[names[key.strip()]] = float(val)
            except ValueError:
                raise BadValue(f"fault {key.strip()!r}: {val!r} is not a number; write e.g. "
                               f"{key.strip()}=0.1") from None
        return cls(**kw)

    @property
    def any(self) -> bool:
        return any(v > 0 for v in vars(self).values())


@dataclass
class FaultStats:
    stuck: int = 0  # fault windows started
    dropout: int = 0
    skew: int = 0
    spikes: int = 0  # readings
    duplicated_messages: int = 0  # extra copies sent
    malformed_messages: int = 0
    malformed_readings: int = 0  # readings lost inside malformed messages
    silent_readings: int = 0  # readings not sent (dropout and outages)

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


_DUR_S = {"stuck": (15 * 60, 3 * 3600), "dropout": (5 * 60, 2 * 3600), "skew": (30 * 60, 6 * 3600)}


class FaultInjector:
    def __init__(self, city: City, seed: int, config: FaultConfig,
                 interval_s: float = 60.0) -> None:
        self.city = city
        self.interval_s = interval_s
        self.seed = seed
        self.config = config
        self.stats = FaultStats()
        self.rng = np.random.default_rng([seed, 909])  # spikes and message faults
        self._days: dict[int, list[Incident]] = {}
        self.windows: list[Incident] = []
        self._frozen: dict[str, np.ndarray] = {}
        self._highs = {k: np.array([METRICS[m].high for m in KINDS[k][2]]) for k in KINDS}
        self._spike_seq = 0

    # -- windows --------------------------------------------------------------------------
    def day(self, day: int) -> list[Incident]:
        if day in self._days:
            return self._days[day]
        c = self.config
        rng = np.random.default_rng([self.seed, day, 505])
        n = len(self.city.sensors)
        out = []
        for kind, rate in (("stuck", c.stuck_per_sensor_day), ("dropout", c.dropout_per_sensor_day),
                           ("skew", c.skew_per_sensor_day)):
            for _ in range(int(rng.poisson(rate * n)) if rate > 0 else 0):
                s = self.city.sensors[int(rng.integers(n))]
                start = day * DAY_MS + int(rng.integers(0, DAY_MS // 60_000)) * 60_000
                lo, hi = _DUR_S[kind]
                end = start + int(rng.uniform(lo, hi)) // 60 * 60_000
                details: dict = {}
                if kind == "skew":
                    details["offset_ms"] = int(rng.choice([-1, 1]) * rng.integers(45, 241) * 1000)
                out.append(Incident("", f"fault.{kind}", start, end, s.district, [s.sensor_id],
                                    s.sensor_id, 1.0, details))
        out.sort(key=lambda i: (i.start_ms, i.kind, i.epicentre))
        for k, inc in enumerate(out):
            inc.incident_id = f"flt-{day}-{k + 1:04d}"
        self._days[day] = out
        return out

    def between(self, t0_ms: int, t1_ms: int) -> list[Incident]:
        out = []
        for d in range(t0_ms // DAY_MS, (t1_ms - 1) // DAY_MS + 1):
            out += [i for i in self.day(d) if t0_ms <= i.start_ms < t1_ms]
        return out

    def start(self, inc: Incident) -> None:
        self.windows.append(inc)
        setattr(self.stats, inc.kind[6:], getattr(self.stats, inc.kind[6:]) + 1)

    # -- per tick -------------------------------------------------------------------------
    def apply(self, t_ms: int, values: dict[str, np.ndarray], present: np.ndarray,
              ts: np.ndarray) -> list[Incident]:
        """Apply active faults in place; returns spike records (ground truth) of this tick."""
        city = self.city
        self.windows = [w for w in self.windows if w.end_ms > t_ms]
        for w in self.windows:
            if not (w.start_ms <= t_ms):
                continue
            sid = w.epicentre
            gi = city.index[sid]
            s = city.sensors[gi]
            li = gi - city.kind_slices[s.kind].start
            if w.kind == "fault.stuck":
                if w.incident_id not in self._frozen:
                    self._frozen[w.incident_id] = values[s.kind][li].copy()
                values[s.kind][li] = self._frozen[w.incident_id]
            elif w.kind == "fault.dropout":
                present[gi] = False
            elif w.kind == "fault.skew":
                ts[gi] = t_ms + w.details["offset_ms"]
        alive = {w.incident_id for w in self.windows}
        for key in [k for k in self._frozen if k not in alive]:
            del self._frozen[key]
        spikes: list[Incident] = []
        p = self.config.spike_prob
        if p > 0:
            for kind, arr in values.items():
                sl = city.kind_slices[kind]
                hits = np.flatnonzero(self.rng.random(arr.shape[0]) < p)
                for li in hits:
                    gi = sl.start + int(li)
                    if not present[gi]:
                        continue
                    j = int(self.rng.integers(arr.shape[1]))
                    factor = float(self.rng.uniform(3.0, 6.0))
                    old = arr[li, j]
                    new = round(min(max(old, 1.0) * factor, self._highs[kind][j] * 0.95), 2)
                    if kind == "loop" and j in (0, 3):
                        # a counting glitch: count and flow stay consistent (FIWARE derives
                        # flow from the count, so they must agree to round-trip)
                        count = float(round(new if j == 0 else new * self.interval_s / 3600.0))
                        arr[li, 0] = count
                        arr[li, 3] = round(count * 3600.0 / self.interval_s, 0)
                        new = arr[li, j]
                    arr[li, j] = new
                    self._spike_seq += 1
                    self.stats.spikes += 1
                    s = city.sensors[gi]
                    spikes.append(Incident(
                        f"spk-{self._spike_seq:06d}", "fault.spike", int(ts[gi]), int(ts[gi]) + 1,
                        s.district, [s.sensor_id], s.sensor_id, 1.0,
                        {"metric": KINDS[kind][2][j], "value": new, "normal": float(old)}))
        return spikes

    # -- messages -------------------------------------------------------------------------
    def mangle(self, messages: list[tuple[str, bytes, int]]) -> list[tuple[str, bytes, int]]:
        """Duplicate or corrupt some messages (topic, payload, n_readings); counts them."""
        c = self.config
        if c.duplicate_prob <= 0 and c.malformed_prob <= 0:
            return messages
        r = self.rng.random((len(messages), 2))
        out: list[tuple[str, bytes, int]] = []
        for (topic, payload, n), (rd, rm) in zip(messages, r):
            if rm < c.malformed_prob:
                self.stats.malformed_messages += 1
                self.stats.malformed_readings += n
                bad = (payload[: max(1, len(payload) // 2)] if rm < c.malformed_prob / 2
                       else b"\xff\xfe" + payload[:16])
                out.append((topic, bad, 0))
                continue
            out.append((topic, payload, n))
            if rd < c.duplicate_prob:
                self.stats.duplicated_messages += 1
                out.append((topic, payload, 0))
        return out

