"""Time-of-day baselines (``seasonal: time_of_day``), anomaly parts of composites,
neighbour hops and probe offsets: what the starter traffic, water and environment rules
are built on."""

from __future__ import annotations

import json
import math

import pytest
from urbanbrain.rules import Evaluator, loads, seasonal
from urbanbrain.rules.kinds.anomaly import AnomalyCond
from urbanbrain.rules.loader import RuleFileError

M = 60_000
H = 60 * M
DAY = 24 * H
# 1970-01-01 was a Thursday: day 0 Thu, 1 Fri, 2 Sat, 3 Sun, 4 Mon
PARIS = "Europe/Paris"  # UTC+1 in winter


def rules(body: str) -> str:
    return "groups:\n  - name: g\n    rules:\n" + "\n".join(
        "      " + ln for ln in body.strip("\n").splitlines()
    )


def usual(t_ms: int) -> float:
    """A daily profile with a rush hour peaking at 08:30 UTC (index 0.8) and a little noise."""
    h = (t_ms % DAY) / H
    return 0.1 + 0.7 * max(0.0, 1.0 - abs(h - 8.5) / 1.5) + 0.01 * math.sin(t_ms / 7e5)


# ------------------------------------------------------------------ the baseline itself


def test_baseline_is_previous_days_of_the_same_day_type_and_hour():
    st = seasonal.new_state()
    clk = seasonal.clock("UTC")
    a = seasonal.alpha_for(2 * DAY)
    for t in range(0, 2 * DAY, 5 * M):  # Thursday, Friday
        seasonal.add(st, t, usual(t), clk, a)
    # today (Friday) is not folded yet: the baseline at Friday 08:30 is Thursday's
    n, m, sd = seasonal.baseline(st, DAY + 8 * H + 30 * M, clk)
    assert n == 12 and m == pytest.approx(0.68, abs=0.02) and sd < 0.12
    # Saturday: weekend buckets have no history yet
    seasonal.add(st, 2 * DAY, 0.1, clk, a)
    assert seasonal.baseline(st, 2 * DAY + 8 * H + 30 * M, clk) is None
    # Monday: the working-day buckets hold Thursday and Friday (24 samples at 08:00)
    for t in range(2 * DAY, 4 * DAY + H, 5 * M):
        seasonal.add(st, t, 0.05, clk, a)
    n, m, _ = seasonal.baseline(st, 4 * DAY + 8 * H + 30 * M, clk)
    assert n == 24 and m == pytest.approx(0.68, abs=0.02)


def test_baseline_interpolates_between_hours_and_mixes_days():
    st = seasonal.new_state()
    clk = seasonal.clock("UTC")
    a = seasonal.alpha_for(2 * DAY)
    for t in range(0, DAY, 5 * M):
        seasonal.add(st, t, 1.0 if (t % DAY) < 12 * H else 3.0, clk, a)
    seasonal.add(st, DAY, 0.0, clk, a)  # fold Thursday
    # 12:00 sharp: halfway between the 11h bucket (1) and the 12h bucket (3)
    assert seasonal.baseline(st, DAY + 12 * H, clk)[1] == pytest.approx(2.0)
    assert seasonal.baseline(st, DAY + 12 * H + 30 * M, clk)[1] == pytest.approx(3.0)
    # a second day at another level: mean between, variance includes the day-to-day spread
    for t in range(DAY, 2 * DAY, 5 * M):
        seasonal.add(st, t, 5.0, clk, a)
    seasonal.add(st, 2 * DAY, 0.0, clk, a)
    n, m, sd = seasonal.baseline(st, 4 * DAY + 12 * H + 30 * M, clk)
    assert n == 24 and m == pytest.approx(4.0) and sd == pytest.approx(1.0)


def test_local_time_decides_hour_and_weekend():
    clk = seasonal.clock(PARIS)
    # 2026-01-09 23:30 UTC = Saturday 00:30 in Paris: a weekend day, hour 0
    t = 1768001400000
    day, hour, frac = clk.local(t)
    assert hour == 0 and frac == pytest.approx(0.5) and seasonal.weekend(day) == 1
    assert seasonal.weekend(seasonal.clock("UTC").local(t)[0]) == 0  # still Friday in UTC
    # summer time: 12:00 UTC is 14:00 in Paris
    assert clk.local(1783425600000)[1] == 14  # 2026-07-07
    assert not seasonal.valid_timezone("Mars/Olympus_Mons")


def test_state_is_small_json_and_late_days_are_dropped():
    st = seasonal.new_state()
    clk = seasonal.clock(PARIS)
    a = seasonal.alpha_for(2 * DAY)
    for t in range(0, 14 * DAY, 10_000):  # two weeks of 10-s samples
        seasonal.add(st, t, 100.0 + (t % 7919) / 100.0, clk, a)
    assert len(st) == seasonal.SIZE == 217
    assert len(json.dumps(st)) < 4000
    before = list(st)
    seasonal.add(st, 3 * DAY, 1e6, clk, a)  # a sample from a folded day: ignored
    assert st == before


# ------------------------------------------------------------------ in rules


CONGESTION = rules("""
- alert: Unusual
  kind: composite
  selector: {domain: traffic}
  scope: district
  condition:
    all:
      - {kind: anomaly, metric: congestion_index, window: 5m, seasonal: time_of_day,
         timezone: UTC, threshold: 5, clear: 3, direction: up, min_std: 0.05}
    min_sensors: 2
    neighbours: 2
  for: 5m
  labels: {severity: warning}
  annotations: {summary: '{{ $value }} loops: {{ $sensors }}'}
""")

REG = {
    f"tl-000{i}": {
        "domain": "traffic",
        "kind": "loop",
        "district": "centre",
        "neighbours": ";".join(f"tl-000{j}" for j in (i - 1, i + 1) if 1 <= j <= 4),
    }
    for i in range(1, 5)
} | {"tl-0009": {"domain": "traffic", "kind": "loop", "district": "centre"}}


def _day(ev: Evaluator, day: int, extra: dict[str, tuple[int, int, float]] | None = None) -> list:
    """One day of 5-minute readings on every loop; ``extra``: sensor -> (from h, to h, value)."""
    events = []
    for t in range(day * DAY, (day + 1) * DAY, 5 * M):
        batch = []
        for sid in REG:
            v = usual(t)
            lo, hi, x = (extra or {}).get(sid, (0, 0, 0.0))
            if lo * H <= t % DAY < hi * H:
                v = x
            batch.append({"sensor_id": sid, "ts": t, "metrics": {"congestion_index": v}})
        ev.observe(batch)
        events += [(t, e) for e in ev.tick(t)]
    return events


def test_recurrent_congestion_is_usual_an_unusual_stretch_alerts():
    ev = Evaluator(loads(CONGESTION), REG)
    assert _day(ev, 0) == []  # no baseline on the first day: nothing
    # day 1: the rush hour again (usual), plus 0.5 on tl-0001 and tl-0003 from 12 to 13h
    # (tl-0002 between them stays quiet: two hops), and tl-0009 alone from 15 to 16h
    ev_ = _day(ev, 1, {"tl-0001": (12, 13, 0.5), "tl-0003": (12, 13, 0.5),
                       "tl-0009": (15, 16, 0.9)})
    got = [((t - DAY) / H, e.status, e.annotations["summary"]) for t, e in ev_]
    assert got == [
        (12 + 5 / 60, "firing", "2 loops: tl-0001,tl-0003"),
        (13.0, "resolved", "2 loops: tl-0001,tl-0003"),
    ]


def test_one_hop_needs_direct_neighbours():
    ev = Evaluator(loads(CONGESTION.replace("neighbours: 2", "neighbours: 1")), REG)
    _day(ev, 0)
    assert _day(ev, 1, {"tl-0001": (12, 13, 0.5), "tl-0003": (12, 13, 0.5)}) == []


def test_time_of_day_anomaly_rule_and_state_round_trip():
    text = rules("""
- alert: LowPressure
  kind: anomaly
  metric: pressure_kpa
  condition: {seasonal: time_of_day, timezone: Europe/Paris, threshold: 5, clear: 2,
              direction: down, min_std: 10}
  labels: {severity: warning}
  annotations: {summary: '{{ $observed }} kPa, {{ $value | printf "%.1f" }} sigma'}
""")
    reg = {"wm-0001": {"domain": "water", "kind": "main", "district": "west"}}
    ev = Evaluator(loads(text), reg)

    def feed(ev: Evaluator, t0: int, t1: int, drop: bool = False) -> list:
        out = []
        for t in range(t0, t1, 5 * M):
            v = 400.0 + (t % 3) - (150.0 if drop and t >= DAY + 12 * H else 0.0)
            ev.observe([{"sensor_id": "wm-0001", "ts": t, "metrics": {"pressure_kpa": v}}])
            out += ev.tick(t)
        return out

    assert feed(ev, 0, DAY + 6 * H) == []
    # restart mid-day: the baseline and today's running statistics come back from JSON
    state = json.loads(json.dumps(ev.state_dict()))
    assert "t" in state["s|wm-0001"] and len(json.dumps(state["s|wm-0001"])) < 4000
    ev2 = Evaluator.from_state(ev.ruleset, reg, state.items())
    got = feed(ev2, DAY + 6 * H, DAY + 13 * H, drop=True)
    assert [(e.status, e.at) for e in got] == [("firing", DAY + 12 * H)]
    assert got[0].annotations["summary"].startswith("250 kPa, -15.")


def test_offset_reads_an_earlier_window():
    text = rules("""
- alert: WasAlive
  kind: threshold
  selector: {domain: water}
  metric: pressure_kpa
  window: 10m
  offset: 10m
  aggregate: stddev
  condition: {op: '>', value: 0}
  labels: {severity: info}
""")
    reg = {"wm-0001": {"domain": "water", "kind": "main", "district": "west"}}
    ev = Evaluator(loads(text), reg)
    got = []
    for i, v in enumerate([1, 2] * 5 + [3] * 22):
        ev.observe([{"sensor_id": "wm-0001", "ts": i * M, "metrics": {"pressure_kpa": v}}])
        got += [(i, e.status) for e in ev.tick(i * M)]
    # window (t-20m, t-10m]: two samples at t = 11; only the frozen 3s (from 10m) at t = 29
    assert got == [(11, "firing"), (29, "resolved")]
    assert ev.ruleset.rules[0].retention_ms() == {"pressure_kpa": 20 * M}


@pytest.mark.parametrize(
    "cond, message",
    [
        ("{seasonal: time_of_day, timezone: Mars/Base, threshold: 3}", "unknown time zone"),
        ("{timezone: Europe/Paris, threshold: 3}", "timezone is used by seasonal: time_of_day"),
        ("{method: ewma, seasonal: time_of_day, threshold: 3}", "needs method: zscore"),
        ("{seasonal: time_of_day, halflife: 0, threshold: 3}", "halflife must be > 0"),
        ("{seasonal: hour_of_moon, threshold: 3}", "is not one of"),
        ("{relative_to: {attr: free_flow_kmh}, threshold: 3}", "relative_to is used by"),
    ],
)
def test_check_reports_bad_seasonal_settings(cond, message):
    text = rules(f"""
- alert: A
  kind: anomaly
  metric: pm25_ugm3
  condition: {cond}
  labels: {{severity: info}}
""")
    with pytest.raises(RuleFileError) as exc:
        loads(text)
    assert message in str(exc.value)


def test_anomaly_parts_and_neighbour_hops_in_the_schema():
    ok = loads(CONGESTION)
    (rule,) = ok.rules
    (part,) = [c for c in rule.conditions() if isinstance(c, AnomalyCond)]
    assert part.seasonal == "time_of_day" and part.halflife_ms == 2 * DAY  # default
    assert rule.condition.neighbours == 2
    with pytest.raises(RuleFileError) as exc:
        loads(CONGESTION.replace("neighbours: 2", "neighbours: 9"))
    assert "neighbours" in str(exc.value)
    with pytest.raises(RuleFileError) as exc:  # an anomaly part has no op/value
        loads(CONGESTION.replace("threshold: 5,", "op: '>', value: 5,"))
    assert "unknown key" in str(exc.value)


def test_relative_to_scales_a_time_of_day_z_score_per_sensor():
    """Speed in units of each loop's free-flow speed: equal relative drops, equal z."""
    text = rules("""
- alert: Slow
  kind: anomaly
  selector: {domain: traffic}
  metric: speed_kmh
  window: 5m
  condition: {seasonal: time_of_day, relative_to: {attr: free_flow_kmh, default: 50},
              threshold: 5, direction: down, min_std: 0.05}
  labels: {severity: warning}
""")
    reg = {"a": {"domain": "traffic", "kind": "loop", "district": "c", "free_flow_kmh": 30},
           "b": {"domain": "traffic", "kind": "loop", "district": "c", "free_flow_kmh": 70},
           "c": {"domain": "traffic", "kind": "loop", "district": "c"}}  # default 50
    ev = Evaluator(loads(text), reg)
    got = []
    for t in range(0, 2 * DAY, 5 * M):
        slow = t >= DAY + 12 * H
        batch = [{"sensor_id": s, "ts": t,
                  "metrics": {"speed_kmh": ff * (0.7 if slow else 0.9)}}
                 for s, ff in (("a", 30), ("b", 70), ("c", 50))]
        ev.observe(batch)
        got += ev.tick(t)
    # a drop of 0.2 free-flow speeds is 4 min_std: no alert; 0.3 below would be 6
    assert got == []
    rule = ev.ruleset.rules[0]
    z = {s: rule.spec.evaluate(ev, rule.condition, s, ev.sensor(s), 2 * DAY - 5 * M,
                               False)[1] for s in "abc"}
    assert z["a"] == pytest.approx(-4.0) and z["b"] == pytest.approx(-4.0)
    assert z["c"] == pytest.approx(-4.0)
