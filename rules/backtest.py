"""Backtest alert rules against a recording with ground truth (``urbanbrain rules backtest``).

Why: a rule set is only as good as its precision and recall on incidents we know about.
The simulator writes that knowledge down (incidents *and* injected sensor faults), so we
replay its readings through the streams worker's own stages and compare the firing
intervals with the ground truth.

One evaluation path: the readings go through :class:`urbanbrain.streams.inprocess.
InProcessWorker`, i.e. the worker's windows, indices (AQI, congestion: there is no second
implementation of any index here), sensor rules and district rules, with the same
event-time semantics as live. ``urbanbrain rules livescore`` replays the same scenario
through the real servers and scores the ``alerts`` topic with :func:`score`.

Pipeline:

1. readings (long table of ``simulators/record.py``) -> one reading per (ts, sensor);
2. one tick of event time at a time -> ``InProcessWorker.feed`` (records per readings
   topic and partition, as ingest cuts them);
3. firing/resolved events -> firing intervals per rule and instance;
4. scoring (see :func:`score`): each rule maps to the ground-truth kinds it is meant to
   detect (:data:`DETECTS`, overridable with a rule label ``detects: a,b``).

A scenario may start with history days (``Scenario.history_days``). They are fed through
the worker too (``history="replay"``: baselines and windows have seen the city, alerts
in them are not scored), or only seed the rule state the way a worker warms up from
InfluxDB at start (``history="warmup"``, see streams/warmup.py).
"""

from __future__ import annotations

import csv
import json
import math
import operator
import re
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from urbanbrain.rules.model import Probe, Rule, RuleSet
from urbanbrain.rules.registry import load_registry_csv

MINUTE = 60_000

#: Which ground-truth kinds each starter rule is meant to detect (alert name -> kinds).
#: An empty tuple = no ground truth (only the firing count is reported). A rule label
#: ``detects: "kind1,kind2"`` (or ``none``) overrides this table.
#:
#: A kind may carry a *category* ``kind[metric>value]``: the rule answers for incidents of
#: that kind whose hourly mean of ``metric`` (at one of the incident's sensors, during the
#: incident) passed ``value`` (see :func:`incident_peaks`). Why: an AQI category rule is
#: defined by its category; a pollution episode that never reached an hourly AQI of 200
#: is no "very unhealthy" episode, so not a miss of AirQualityVeryUnhealthy. Its firings
#: on any incident of the kind still count as true positives.
DETECTS: dict[str, tuple[str, ...]] = {
    "Congestion": ("congestion", "accident"),
    "ProbableAccident": ("accident",),
    "AirQualityUnhealthySensitive": ("pollution[aqi_us>100]",),
    "AirQualityUnhealthy": ("pollution[aqi_us>150]",),
    "AirQualityVeryUnhealthy": ("pollution[aqi_us>200]",),
    "PollutionEpisode": ("pollution",),
    "PM25Anomaly": ("pollution",),
    "WaterMainBurst": ("water_burst",),
    "LowWaterPressure": ("water_burst",),
    "PowerOutage": ("power_outage",),
    "PowerDistrictSilent": ("backhaul_loss",),
    "VoltageOutOfBand": ("voltage_excursion", "power_outage"),
    "FrequencyOutOfBand": ("frequency_excursion",),
    "SensorSilent": ("fault.dropout", "power_outage", "backhaul_loss"),
    "SensorStuckPressure": ("fault.stuck",),
    "SensorStuckVoltage": ("fault.stuck",),
    "SensorStuckAirQuality": ("fault.stuck",),
}

_CATEGORY = re.compile(r"^([A-Za-z0-9_.]+)\[([A-Za-z0-9_]+)\s*(>=|<=|>|<)\s*(-?[0-9.]+)\]$")
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
PEAK_WINDOW = "1h"  # categories are judged on hourly means (as AQI is reported)


@dataclass(frozen=True)
class Detects:
    """One entry of a rule's ``detects``: a ground-truth kind, optionally a category."""

    kind: str
    metric: str | None = None
    op: str = ">"
    value: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Detects:
        m = _CATEGORY.match(text.strip())
        if m is None:
            return cls(text.strip())
        return cls(m.group(1), m.group(2), m.group(3), float(m.group(4)))

    def __str__(self) -> str:
        if self.metric is None:
            return self.kind
        return f"{self.kind}[{self.metric}{self.op}{self.value:g}]"

    def answers_for(self, inc: Any, peaks: Mapping[str, Mapping[str, float]] | None) -> bool:
        """Whether the rule is responsible for detecting ``inc`` (its kind and category)."""
        if inc.kind != self.kind:
            return False
        if self.metric is None:
            return True
        peak = ((peaks or {}).get(inc.incident_id) or {}).get(f"{self.metric}{self.op[0]}")
        return peak is not None and _OPS[self.op](peak, self.value)


def detects_of(rule: Rule) -> tuple[str, ...]:
    lab = rule.labels.get("detects")
    if lab is not None:
        return tuple(k.strip() for k in str(lab).split(",") if k.strip() and k.strip() != "none")
    return DETECTS.get(rule.alert, ())


def min_fault_ms(rule: Rule) -> int:
    """The shortest sensor fault the rule can see by its own definition: a silence shorter
    than ``silent_for`` is not "silent for" it; a value frozen for less than the window of
    a stuck detector (stddev/range over the window) has not "stopped changing for" it."""
    return rule.spec.min_fault_ms(rule.condition)


# --------------------------------------------------------------------------- data classes

@dataclass
class Firing:
    rule: str
    instance: str  # sensor id (sensor scope) or district
    sensor: str | None
    district: str
    start_ms: int
    end_ms: int
    open: bool = False  # still firing at the end of the replay
    matched: list[str] = field(default_factory=list)  # incident ids it overlaps


@dataclass
class RuleScore:
    rule: str
    alert: str
    detects: str
    status: str  # scored | no ground truth | no incidents (scored on false positives only)
    firings: int
    tp_firings: int
    precision: float | None
    incidents: int
    detected: int
    recall: float | None
    latency_median_s: float | None
    latency_max_s: float | None
    missed: str = ""
    plot: str = ""
    false_positives: int = 0
    # ground truth left out of recall, with the reason: faults shorter than the rule can
    # see by definition, incidents still running when the replay ends, incidents below
    # the rule's category
    undetectable: int = 0
    truncated: int = 0
    below_category: int = 0


@dataclass
class BacktestResult:
    scores: list[RuleScore]
    firings: list[Firing]
    incidents: list[Any]
    timing: dict[str, float]
    n_readings: int
    ticks: int
    span_ms: tuple[int, int]
    files: dict[str, str] = field(default_factory=dict)
    detail: dict[str, dict] = field(default_factory=dict)
    peaks: dict[str, dict] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)  # every alert event, for comparisons


# --------------------------------------------------------------------------- readings

def wide_readings(df: pd.DataFrame, registry: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Long table -> one row per (ts, sensor), one column per metric."""
    wide = df.pivot_table(index=["ts", "sensor_id"], columns="metric", values="value",
                          aggfunc="last", observed=True)
    wide.columns = [str(c) for c in wide.columns]
    wide = wide.reset_index()
    wide["sensor_id"] = wide["sensor_id"].astype(str)
    return wide.sort_values(["ts", "sensor_id"], kind="stable", ignore_index=True)


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def batches(wide: pd.DataFrame, registry: Mapping[str, Mapping[str, Any]]
            ) -> Iterator[tuple[int, list[dict]]]:
    """(ts, readings of that event time) in time order; NaN metrics left out."""
    metrics = [c for c in wide.columns if c not in ("ts", "sensor_id")]
    ts = wide["ts"].to_numpy(np.int64)
    sids = wide["sensor_id"].tolist()
    vals = wide[metrics].to_numpy(np.float64)
    bounds = np.flatnonzero(np.diff(ts)) + 1
    starts = [0, *bounds.tolist(), len(ts)]
    for a, b in zip(starts, starts[1:]):
        out = []
        for i in range(a, b):
            row = vals[i]
            m = {metrics[j]: float(row[j]) for j in np.flatnonzero(~np.isnan(row))}
            attrs = registry.get(sids[i], {})
            out.append({"sensor_id": sids[i], "ts": int(ts[a]), "domain": attrs.get("domain"),
                        "kind": attrs.get("kind"), "district": attrs.get("district"),
                        "metrics": m})
        yield int(ts[a]), out


# --------------------------------------------------------------------------- replay

def firings_of(events: Sequence[Any], ruleset: RuleSet, end_ms: int | None) -> list[Firing]:
    """Firing intervals per rule and instance from alert events (in any order: each
    transition carries its own times); still open at ``end_ms`` -> ``open``."""
    rules = {r.id: r for r in ruleset.rules}
    open_: dict[tuple[str, str, int], Firing] = {}
    done: list[Firing] = []
    firing = sorted((e for e in events if e.status == "firing"), key=lambda e: e.starts_at)
    for e in firing:
        key = (e.rule, e.fingerprint, int(e.starts_at))
        if key in open_:
            continue  # a re-notification (after a silence) of the same firing
        rule = rules.get(e.rule)
        sensor = e.labels.get("sensor")
        open_[key] = Firing(rule.alert if rule else e.rule, sensor or e.labels.get("district", ""),
                            sensor, e.labels.get("district", ""), int(e.starts_at), int(e.at))
    for e in events:
        if e.status != "resolved":
            continue
        f = open_.pop((e.rule, e.fingerprint, int(e.starts_at)), None)
        if f is not None:
            f.end_ms = int(e.ends_at if e.ends_at is not None else e.at)
            done.append(f)
    for f in open_.values():
        f.end_ms = end_ms if end_ms is not None else f.start_ms
        f.open = True
        done.append(f)
    done.sort(key=lambda f: (f.rule, f.start_ms, f.instance))
    return done


def replay(ruleset: RuleSet, registry_csv: str | Path, wide: pd.DataFrame,
           registry: Mapping[str, Mapping[str, Any]], *, warm_until_ms: int | None = None,
           settings: Any = None, alert_settings: Any = None,
           on_progress: Any = None) -> tuple[list[Firing], int, Any]:
    """Feed the readings through the worker's stages in process; (firing intervals,
    ticks, the worker). Readings before ``warm_until_ms`` only seed the rule state."""
    from urbanbrain.streams.inprocess import InProcessWorker

    from urbanbrain.streams.alerting import AlertSettings

    cfg = alert_settings or AlertSettings()
    worker = InProcessWorker(ruleset, registry_csv, settings=settings, alert_settings=cfg)
    # a worker warms up from the span before its first reading, not the whole history
    warm_from = (warm_until_ms - int(cfg.warmup_s * 1000)
                 if warm_until_ms is not None else None)
    ticks, last = 0, None
    total = int(wide["ts"].nunique()) if len(wide) else 0
    for ts, batch in batches(wide, registry):
        if warm_until_ms is not None and ts < warm_until_ms:
            if ts >= warm_from:  # type: ignore[operator]
                worker.warm(batch)
        else:
            worker.feed(batch)
        ticks += 1
        last = ts
        if on_progress is not None:
            on_progress(ticks, total)
    return firings_of(worker.events, ruleset, last), ticks, worker


def samples_frame(samples: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Index samples of the worker's windows as wide rows (ts, sensor_id, index columns)."""
    if not samples:
        return pd.DataFrame(columns=["ts", "sensor_id"])
    rows = [{"ts": int(s["ts"]), "sensor_id": str(s["sensor_id"]), **s["metrics"]}
            for s in samples]
    return pd.DataFrame(rows).groupby(["ts", "sensor_id"], as_index=False).last()


# --------------------------------------------------------------------------- scoring

def rule_sees(rule: Rule, sid: str, registry: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether ``rule`` evaluates sensor ``sid`` (selector, and the metric it reads)."""
    attrs = registry.get(sid)
    if attrs is None or not rule.selector.matches(sid, attrs):
        return False
    _, metric, _, _ = _signal_metric(rule)
    if metric is None:
        return True
    metric = metric.removesuffix("/rel")
    have = attrs.get("metrics") or []
    from urbanbrain.rules.names import INDEX_METRICS, metric_domain

    if metric in INDEX_METRICS:
        return metric_domain(metric) == attrs.get("domain")
    return not have or metric in have


def _matches_place(f: Firing, inc: Any,
                   registry: Mapping[str, Mapping[str, Any]] | None = None) -> bool:
    """Sensor scope: the firing's sensor is one the incident affects. District scope: the
    firing's district is the incident's, or one of its affected sensors lies in it (a
    queue backs up across a district boundary; a burst lowers pressure next door)."""
    if f.sensor is not None:
        return f.sensor in inc.sensors or f.sensor == inc.epicentre
    if f.district == inc.district:
        return True
    return registry is not None and any(
        (registry.get(s) or {}).get("district") == f.district for s in inc.sensors)


def score(ruleset: RuleSet, firings: Sequence[Firing], truth: Sequence[Any], *,
          span: tuple[int, int], registry: Mapping[str, Mapping[str, Any]] | None = None,
          before_ms: int = 5 * MINUTE, after_ms: int = 30 * MINUTE,
          peaks: Mapping[str, Mapping[str, float]] | None = None,
          ) -> tuple[list[RuleScore], dict[str, dict]]:
    """Per-rule precision, recall and detection latency.

    A firing interval is a true positive when it overlaps ``[start - before, end + after]``
    of an incident of one of the rule's kinds at the same place (sensor scope: the firing's
    sensor is among the incident's ``sensors``; district scope: the incident's district or
    a district its sensors are in). ``after`` allows for windows and hysteresis that keep
    an alert up after the cause ended. Firings that start before the span (history) are
    not scored. precision = TP firings / firings; recall = detected incidents / incidents
    the rule answers for: of its kinds (and categories, see :data:`DETECTS`), starting and
    ending inside the span, touching a sensor the rule evaluates, and — for sensor faults
    — at least as long as the rule can see by definition (:func:`min_fault_ms`). Each
    exclusion is counted in the score. A rule with kinds but no such incident is scored
    on its false positives only (status ``no incidents``). latency = first matching
    firing start - incident start.
    """
    t0, t1 = span
    by_rule: dict[str, list[Firing]] = defaultdict(list)
    for f in firings:
        if f.start_ms >= t0:
            by_rule[f.rule].append(f)
    out: list[RuleScore] = []
    detail: dict[str, dict] = {}
    for rule in ruleset.rules:
        kinds = detects_of(rule)
        specs = [Detects.parse(k) for k in kinds]
        base = {d.kind for d in specs}
        fs = by_rule.get(rule.alert, [])
        incs = [i for i in truth if i.kind in base and i.start_ms < t1 and i.end_ms > t0
                and (registry is None or any(rule_sees(rule, s, registry) for s in i.sensors))]
        for f in fs:
            f.matched = [i.incident_id for i in incs if _matches_place(f, i, registry)
                         and f.start_ms <= i.end_ms + after_ms
                         and f.end_ms >= i.start_ms - before_ms]
        lat: dict[str, float] = {}
        for i in incs:
            starts = [f.start_ms for f in fs if i.incident_id in f.matched]
            if starts:
                lat[i.incident_id] = (min(starts) - i.start_ms) / 1000.0
        shortest = min_fault_ms(rule)
        scored, undetectable, truncated, below = [], 0, 0, 0
        for i in incs:
            if i.start_ms < t0:
                continue  # began in the history (or before the recording)
            if i.kind.startswith("fault.") and i.end_ms - i.start_ms < shortest:
                undetectable += 1
            elif i.end_ms > t1:
                truncated += 1  # still going when the replay ends
            elif not any(d.answers_for(i, peaks) for d in specs):
                below += 1
            else:
                scored.append(i)
        detected = [i for i in scored if i.incident_id in lat]
        tp = sum(1 for f in fs if f.matched)
        lats = [lat[i.incident_id] for i in detected]
        if not kinds:
            status = "no ground truth"
        elif not scored:
            status = "no incidents"
        else:
            status = "scored"
        out.append(RuleScore(
            rule=rule.id, alert=rule.alert, detects=",".join(kinds), status=status,
            firings=len(fs), tp_firings=tp if kinds else 0,
            precision=(tp / len(fs)) if (kinds and fs) else None,
            incidents=len(scored), detected=len(detected),
            recall=(len(detected) / len(scored)) if scored else None,
            latency_median_s=statistics.median(lats) if lats else None,
            latency_max_s=max(lats) if lats else None,
            missed=",".join(i.incident_id for i in scored if i.incident_id not in lat
                            and not i.kind.startswith("fault.")),
            false_positives=(len(fs) - tp) if kinds else 0,
            undetectable=undetectable, truncated=truncated, below_category=below,
        ))
        per_kind = {}
        for d in specs:
            ks = [i for i in scored if d.answers_for(i, peaks)]
            per_kind[str(d)] = {"incidents": len(ks),
                                "detected": sum(1 for i in ks if i.incident_id in lat)}
        detail[rule.alert] = {
            "per_kind": per_kind, "latency_s": lat,
            "missed_faults": [i.incident_id for i in scored if i.incident_id not in lat
                              and i.kind.startswith("fault.")],
            "excluded": {"undetectable": undetectable, "truncated": truncated,
                         "below_category": below, "min_fault_s": shortest / 1000.0},
        }
    return out, detail


def incident_peaks(ruleset: RuleSet, truth: Sequence[Any], wide: pd.DataFrame
                   ) -> dict[str, dict[str, float]]:
    """For the categories the rules use: per incident, the highest (``>``) or lowest
    (``<``) hourly rolling mean of the metric at the incident's sensors during it.
    Keys ``"<metric>>"`` / ``"<metric><"``."""
    wanted: dict[str, set[tuple[str, str]]] = defaultdict(set)  # kind -> {(metric, side)}
    for rule in ruleset.rules:
        for k in detects_of(rule):
            d = Detects.parse(k)
            if d.metric is not None:
                wanted[d.kind].add((d.metric, d.op[0]))
    out: dict[str, dict[str, float]] = {}
    if not wanted or not len(wide):
        return out
    for inc in truth:
        for metric, side in wanted.get(inc.kind, ()):
            if metric not in wide:
                continue
            rows = wide[(wide["ts"] >= inc.start_ms) & (wide["ts"] <= inc.end_ms)
                        & wide["sensor_id"].isin(inc.sensors)][["ts", "sensor_id", metric]]
            rows = rows.dropna()
            if not len(rows):
                continue
            rows = rows.assign(t=pd.to_datetime(rows["ts"], unit="ms")).set_index("t")
            hourly = rows.groupby("sensor_id", observed=True)[metric].rolling(PEAK_WINDOW).mean()
            val = hourly.max() if side == ">" else hourly.min()
            out.setdefault(inc.incident_id, {})[f"{metric}{side}"] = float(val)
    return out


# --------------------------------------------------------------------------- plots

def _signal_metric(rule: Rule) -> tuple[Probe | None, str | None, list[float], list[float]]:
    """(probe, metric, trigger lines, clear lines) to draw for a rule (no probe: the
    gaps between readings); lines are in the plotted unit, so a relative level plots the
    metric over its divisor (``<metric>/rel``)."""
    probe, lines, clears = rule.spec.plot(rule.condition)
    if probe is None:
        return None, None, lines, clears
    if lines and probe.relative_attr is not None:
        return probe, probe.metric + "/rel", lines, clears
    return probe, probe.metric, lines, clears


def _pick_sensor(rule: Rule, fs: list[Firing], incs: list[Any],
                 registry: Mapping[str, Mapping[str, Any]], wide: pd.DataFrame) -> str | None:
    for f in fs:
        if f.matched and f.sensor:
            return f.sensor
    matched = {m for f in fs for m in f.matched}
    for i in incs:
        if i.incident_id in matched or not fs:
            cand = [i.epicentre] + list(i.sensors) if i.epicentre else list(i.sensors)
            for s in cand:
                if rule.selector.matches(s, registry.get(s, {})):
                    return s
    if fs:
        counts: dict[str, int] = defaultdict(int)
        for f in fs:
            if f.sensor:
                counts[f.sensor] += 1
        if counts:
            return max(counts, key=counts.get)
        d = fs[0].district
        for s, a in registry.items():
            if a.get("district") == d and rule.selector.matches(s, a):
                return s
    for s, a in registry.items():
        if rule.selector.matches(s, a):
            return s
    return None


def plot_rule(path: Path, rule: Rule, fs: list[Firing], truth: Sequence[Any],
              registry: Mapping[str, Mapping[str, Any]], wide: pd.DataFrame,
              span: tuple[int, int]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = {Detects.parse(k).kind for k in detects_of(rule)}
    incs = [i for i in truth if i.kind in kinds and i.start_ms < span[1] and i.end_ms > span[0]]
    sensor = _pick_sensor(rule, fs, incs, registry, wide)
    probe, metric, lines, clears = _signal_metric(rule)
    fig, ax = plt.subplots(figsize=(11, 3.6))
    title = f"{rule.alert} — {sensor or '(no sensor)'}"
    rows = wide[wide["sensor_id"] == sensor] if sensor else wide.iloc[0:0]
    t = pd.to_datetime(rows["ts"], unit="ms", utc=True) if len(rows) else None
    if metric is None:  # absence: gap since the previous reading
        if len(rows):
            gaps = np.diff(rows["ts"].to_numpy(), prepend=rows["ts"].iloc[0]) / 60_000.0
            ax.step(t, gaps, where="post", lw=0.8, label="minutes since previous reading")
    else:
        base = metric.removesuffix("/rel")
        if len(rows) and base in rows:
            y = rows[base].to_numpy(np.float64)
            if metric.endswith("/rel") and probe is not None:
                div = _float(registry.get(sensor, {}).get(probe.relative_attr))
                if not np.isfinite(div):
                    std = probe.relative_standard
                    div = (min(std, key=lambda lv: abs(lv - np.nanmedian(y))) if std
                           else probe.relative_default or 1.0)
                y = y / div
                base += f" / {probe.relative_attr}"
            ax.plot(t, y, lw=0.7, label=base)
    for v in lines:
        ax.axhline(v, color="red", ls="--", lw=0.9)
    for v in clears:
        ax.axhline(v, color="orange", ls=":", lw=0.9)
    lab_i = lab_f = True
    for i in incs:
        if sensor is None or sensor in i.sensors or (not i.sensors) or any(
                f.matched and i.incident_id in f.matched and f.sensor is None for f in fs):
            ax.axvspan(pd.to_datetime(i.start_ms, unit="ms", utc=True),
                       pd.to_datetime(i.end_ms, unit="ms", utc=True), color="green",
                       alpha=0.2, label="incident" if lab_i else None)
            lab_i = False
    for f in fs:
        if f.sensor == sensor or (f.sensor is None and f.district ==
                                  registry.get(sensor or "", {}).get("district")):
            ax.axvspan(pd.to_datetime(f.start_ms, unit="ms", utc=True),
                       pd.to_datetime(max(f.end_ms, f.start_ms + MINUTE), unit="ms", utc=True),
                       color="red", alpha=0.25, label="firing" if lab_f else None)
            lab_f = False
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=7)
    ax.set_xlim(pd.to_datetime(span[0], unit="ms", utc=True),
                pd.to_datetime(span[1], unit="ms", utc=True))
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return sensor


# --------------------------------------------------------------------------- driver

def backtest(rule_paths: Sequence[str], readings: pd.DataFrame, truth: Sequence[Any],
             registry_csv: str | Path, *, out_dir: str | Path | None = None,
             before_ms: int = 5 * MINUTE, after_ms: int = 30 * MINUTE, plots: bool = True,
             scored_from_ms: int | None = None, history: str = "replay",
             settings: Any = None, alert_settings: Any = None,
             on_progress: Any = None) -> BacktestResult:
    """Feed ``readings`` (long table) through the worker's stages and score against
    ``truth``. ``scored_from_ms``: readings before it are history, fed (``history=
    "replay"``) or only seeding the rule state (``"warmup"``), never scored."""
    timing: dict[str, float] = {}
    t = time.perf_counter()
    registry = load_registry_csv(registry_csv)
    ruleset = RuleSet.load(list(rule_paths), registry)
    wide = wide_readings(readings, registry)
    timing["prepare_s"] = time.perf_counter() - t
    t = time.perf_counter()
    warm = scored_from_ms if history == "warmup" else None
    firings, ticks, worker = replay(ruleset, registry_csv, wide, registry,
                                    warm_until_ms=warm, settings=settings,
                                    alert_settings=alert_settings, on_progress=on_progress)
    timing["replay_s"] = time.perf_counter() - t
    span = (int(wide["ts"].min()), int(wide["ts"].max())) if len(wide) else (0, 0)
    if scored_from_ms is not None:
        span = (max(span[0], int(scored_from_ms)), span[1])
    # the worker's own indices (AQI ...) beside the readings: categories and plots
    with_indices = pd.concat([wide, samples_frame(worker.samples)], ignore_index=True)
    peaks = incident_peaks(ruleset, truth, with_indices)
    scores, detail = score(ruleset, firings, truth, span=span, registry=registry,
                           before_ms=before_ms, after_ms=after_ms, peaks=peaks)
    res = BacktestResult(scores, firings, list(truth), timing, len(wide), ticks, span,
                         detail=detail, peaks=peaks)
    res.events = worker.events
    if out_dir is not None:
        t = time.perf_counter()
        write_outputs(res, ruleset, registry, with_indices, Path(out_dir), plots=plots)
        timing["outputs_s"] = time.perf_counter() - t
    return res


def write_outputs(res: BacktestResult, ruleset: RuleSet, registry: Mapping[str, Any],
                  wide: pd.DataFrame, out: Path, *, plots: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    by_rule: dict[str, list[Firing]] = defaultdict(list)
    for f in res.firings:
        by_rule[f.rule].append(f)
    if plots:
        for rule, sc in zip(ruleset.rules, res.scores):
            p = out / f"{rule.alert}.png"
            plot_rule(p, rule, by_rule.get(rule.alert, []), res.incidents, registry, wide,
                      res.span_ms)
            sc.plot = p.name
            res.files[f"plot:{rule.alert}"] = str(p)
    csv_path = out / "backtest.csv"
    with csv_path.open("w", newline="") as fh:
        cols = list(RuleScore.__dataclass_fields__)
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for s in res.scores:
            w.writerow(asdict(s))
    json_path = out / "backtest.json"
    json_path.write_text(json.dumps({
        "span_ms": list(res.span_ms), "readings": res.n_readings, "ticks": res.ticks,
        "peaks": res.peaks,
        "timing": res.timing, "scores": [asdict(s) for s in res.scores],
        "detail": res.detail, "firings": [asdict(f) for f in res.firings],
    }, indent=1, default=str))
    res.files["csv"] = str(csv_path)
    res.files["json"] = str(json_path)


def scenario_inputs(name: str, days: float | None = None, seed: int | None = None
                    ) -> tuple[pd.DataFrame, list[Any], Path, int]:
    """(readings, ground truth, registry CSV path, scored-from time) of a named simulator
    scenario, history included; ``seed`` replaces the scenario's (another city, other
    noise and faults, the same incident plan)."""
    import dataclasses

    from urbanbrain.simulators.scenario import generate_offline, get_scenario

    sc = get_scenario(name)
    if seed is not None:
        sc = dataclasses.replace(sc, seed=int(seed))
    data = generate_offline(sc, days=days)
    reg = Path(tempfile.mkdtemp(prefix="ub-backtest-")) / "registry.csv"
    data.city.write_registry(reg)
    return data.readings, data.ground_truth, reg, data.scored_from_ms


def recording_inputs(path: str | Path, ground_truth: str | Path, registry: str | Path,
                     days: float | None = None) -> tuple[pd.DataFrame, list[Any], Path]:
    from urbanbrain.simulators.incidents import read_ground_truth
    from urbanbrain.simulators.record import read_table

    df = read_table(path)
    if days is not None and len(df):
        t0 = int(df["ts"].min())
        df = df[df["ts"] < t0 + int(days * 86_400_000)]
    return df, read_ground_truth(ground_truth), Path(registry)


def manifest_scored_from(recording: str | Path) -> int | None:
    """The scored start written by ``write_scenario`` next to a recording, if any."""
    p = Path(f"{Path(recording).with_suffix('')}.manifest.json")
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return int(doc["start_ms"]) if doc.get("history_days") else None


def note(s: RuleScore) -> str:
    """The table's note column: status, misses and what was left out of recall, and why."""
    parts = []
    if s.status == "no incidents":
        parts.append(f"no incidents: scored on false positives only ({s.false_positives})")
    elif s.status != "scored":
        parts.append(s.status)
    if s.missed:
        parts.append(f"missed {s.missed}")
    if s.undetectable:
        parts.append(f"{s.undetectable} fault(s) shorter than the rule can see")
    if s.truncated:
        parts.append(f"{s.truncated} still running at the end")
    if s.below_category:
        parts.append(f"{s.below_category} below its category")
    return "; ".join(parts)


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)
