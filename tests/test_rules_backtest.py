"""`urbanbrain rules backtest`: scoring is right, a known incident is found, outputs written."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from urbanbrain.rules import backtest as bt
from urbanbrain.rules.loader import loads
from urbanbrain.simulators.scenario import IncidentSpec, Scenario, generate_offline

RULES = """
groups:
  - name: t
    rules:
      - alert: BurstPressure
        kind: threshold
        selector: {domain: water}
        metric: pressure_kpa
        condition: {op: '<', value: 300, clear: 330}
        labels: {severity: critical, detects: water_burst}
      - alert: Silent
        kind: absence
        condition: {silent_for: 10m}
        labels: {severity: warning, detects: none}
"""

MIN = 60_000


def _inc(iid, kind, start, end, district, sensors):
    return SimpleNamespace(incident_id=iid, kind=kind, start_ms=start, end_ms=end,
                           district=district, sensors=sensors, epicentre=sensors[0])


def test_score_counts_precision_recall_latency():
    rs = loads(RULES.replace("detects: none", "detects: fault.dropout"), "r.yaml")
    truth = [
        _inc("i1", "water_burst", 100 * MIN, 160 * MIN, "d1", ["wm-1", "wm-2"]),
        _inc("i2", "water_burst", 400 * MIN, 430 * MIN, "d2", ["wm-9"]),  # missed
        _inc("f1", "fault.dropout", 200 * MIN, 260 * MIN, "d1", ["wm-3"]),
    ]
    F = bt.Firing
    firings = [
        F("BurstPressure", "wm-1", "wm-1", "d1", 105 * MIN, 150 * MIN),   # TP, latency 5m
        F("BurstPressure", "wm-2", "wm-2", "d1", 110 * MIN, 185 * MIN),   # TP
        F("BurstPressure", "wm-5", "wm-5", "d1", 110 * MIN, 150 * MIN),   # wrong sensor: FP
        F("BurstPressure", "wm-1", "wm-1", "d1", 300 * MIN, 310 * MIN),   # too late: FP
        F("BurstPressure", "wm-9", "wm-9", "d2", 440 * MIN, 450 * MIN),   # within tolerance
        F("Silent", "wm-3", "wm-3", "d1", 210 * MIN, 262 * MIN),          # TP, latency 10m
    ]
    scores, detail = bt.score(rs, firings, truth, span=(0, 1000 * MIN),
                              before_ms=5 * MIN, after_ms=15 * MIN)
    s = {x.alert: x for x in scores}
    b = s["BurstPressure"]
    assert (b.firings, b.tp_firings, b.incidents, b.detected) == (5, 3, 2, 2)
    assert b.precision == pytest.approx(3 / 5)
    assert b.recall == 1.0
    assert b.latency_median_s == pytest.approx((300 + 2400) / 2)  # 5 min and 40 min
    assert b.latency_max_s == 2400
    # tighter tolerance: the late firing at wm-9 no longer counts, i2 is missed
    scores, _ = bt.score(rs, firings, truth, span=(0, 1000 * MIN), after_ms=5 * MIN)
    b = {x.alert: x for x in scores}["BurstPressure"]
    assert (b.tp_firings, b.detected, b.missed) == (2, 1, "i2")
    assert b.recall == 0.5
    sil = s["Silent"]
    assert (sil.precision, sil.recall, sil.latency_median_s) == (1.0, 1.0, 600)
    assert detail["BurstPressure"]["per_kind"]["water_burst"] == {"incidents": 2, "detected": 2}


def test_no_ground_truth_and_label_override():
    rs = loads(RULES, "r.yaml")
    scores, _ = bt.score(rs, [bt.Firing("Silent", "x", "x", "d", 0, MIN)], [], span=(0, MIN))
    sil = {x.alert: x for x in scores}["Silent"]
    assert sil.status == "no ground truth" and sil.firings == 1 and sil.precision is None
    assert bt.detects_of(rs.rules[0]) == ("water_burst",)


def test_backtest_tiny_city_detects_known_burst(tmp_path: Path):
    sc = Scenario(name="bt-tiny", seed=7, size="tiny", start="2026-01-05T00:00:00+01:00",
                  days=0.25, interval_s=300,
                  incidents=(IncidentSpec("water_burst", 0, "02:00", 60, 1.0),))
    data = generate_offline(sc)
    (burst,) = [i for i in data.ground_truth if i.kind == "water_burst"]
    reg = data.city.write_registry(tmp_path / "registry.csv")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    out = tmp_path / "out"
    res = bt.backtest([str(rules)], data.readings, data.ground_truth, reg, out_dir=out)
    s = {x.alert: x for x in res.scores}["BurstPressure"]
    assert s.status == "scored" and s.incidents == 1 and s.detected == 1 and s.recall == 1.0
    fs = [f for f in res.firings if f.rule == "BurstPressure"]
    assert fs and any(f.sensor == burst.epicentre for f in fs)
    # precision is exactly the share of firings at the burst's sensors near its time
    tp = [f for f in fs if f.sensor in burst.sensors
          and f.start_ms <= burst.end_ms + 30 * MIN and f.end_ms >= burst.start_ms - 5 * MIN]
    assert s.tp_firings == len(tp) and s.precision == pytest.approx(len(tp) / len(fs))
    # the first sample inside the incident shows the drop: latency under one interval
    assert 0 <= s.latency_median_s <= 300
    assert {p.name for p in out.glob("*.png")} == {"BurstPressure.png", "Silent.png"}
    assert all(p.stat().st_size > 5000 for p in out.glob("*.png"))
    doc = json.loads((out / "backtest.json").read_text())
    assert {r["alert"] for r in doc["scores"]} == {"BurstPressure", "Silent"}
    assert (out / "backtest.csv").read_text().startswith("rule,alert,detects")


# -- what counts: history, sensor faults the rule cannot see, truncation, categories ------

EXCLUSIONS = """
groups:
  - name: t
    rules:
      - alert: Silent
        kind: absence
        condition: {silent_for: 10m}
        labels: {severity: warning, detects: fault.dropout}
      - alert: Stuck
        kind: threshold
        metric: pressure_kpa
        window: 30m
        aggregate: stddev
        condition: {op: '<=', value: 0}
        labels: {severity: warning, detects: fault.stuck}
      - alert: VeryBad
        kind: threshold
        metric: aqi_us
        condition: {op: '>', value: 200}
        labels: {severity: critical, detects: 'pollution[aqi_us>200]'}
      - alert: Queue
        kind: threshold
        scope: district
        selector: {domain: traffic}
        metric: speed_kmh
        condition: {op: '<', value: 20}
        labels: {severity: warning, detects: accident}
      - alert: Freq
        kind: threshold
        metric: frequency_hz
        condition: {op: '<', value: 49.8}
        labels: {severity: warning, detects: frequency_excursion}
"""


def test_history_short_faults_truncation_and_categories_are_left_out_and_counted():
    rs = loads(EXCLUSIONS, "r.yaml")
    span = (100 * MIN, 1000 * MIN)
    truth = [
        _inc("d-hist", "fault.dropout", 50 * MIN, 80 * MIN, "d1", ["wm-1"]),    # history
        _inc("d-short", "fault.dropout", 200 * MIN, 207 * MIN, "d1", ["wm-1"]),  # < 10m
        _inc("d-ok", "fault.dropout", 300 * MIN, 330 * MIN, "d1", ["wm-1"]),
        _inc("d-end", "fault.dropout", 995 * MIN, 1100 * MIN, "d1", ["wm-2"]),   # truncated
        _inc("s-short", "fault.stuck", 400 * MIN, 420 * MIN, "d1", ["wm-3"]),    # < 30m
        _inc("s-ok", "fault.stuck", 500 * MIN, 600 * MIN, "d1", ["wm-3"]),
        _inc("p-mod", "pollution", 200 * MIN, 400 * MIN, "d1", ["aq-1"]),
        _inc("p-bad", "pollution", 500 * MIN, 700 * MIN, "d1", ["aq-2"]),
        _inc("acc", "accident", 300 * MIN, 340 * MIN, "d1", ["tl-1", "tl-2"]),
    ]
    F = bt.Firing
    firings = [
        F("Silent", "wm-1", "wm-1", "d1", 60 * MIN, 90 * MIN),   # in the history: not scored
        F("Silent", "wm-1", "wm-1", "d1", 310 * MIN, 330 * MIN),
        F("Stuck", "wm-3", "wm-3", "d1", 530 * MIN, 600 * MIN),
        F("VeryBad", "aq-1", "aq-1", "d1", 250 * MIN, 260 * MIN),  # real episode, below 200 h
        F("VeryBad", "aq-2", "aq-2", "d1", 560 * MIN, 600 * MIN),
        F("Queue", "d2", None, "d2", 310 * MIN, 330 * MIN),        # tl-2 lies in d2
    ]
    registry = {"tl-1": {"domain": "traffic", "district": "d1"},
                "tl-2": {"domain": "traffic", "district": "d2"}}
    for s in ("wm-1", "wm-2", "wm-3"):
        registry[s] = {"domain": "water", "district": "d1", "metrics": ["pressure_kpa"]}
    for s in ("aq-1", "aq-2"):
        registry[s] = {"domain": "environment", "district": "d1", "metrics": ["pm25_ugm3"]}
    peaks = {"p-mod": {"aqi_us>": 170.0}, "p-bad": {"aqi_us>": 240.0}}
    scores, detail = bt.score(rs, firings, truth, span=span, registry=registry, peaks=peaks)
    s = {x.alert: x for x in scores}
    sil = s["Silent"]
    assert (sil.firings, sil.incidents, sil.detected, sil.undetectable, sil.truncated) == (
        1, 1, 1, 1, 1)
    assert detail["Silent"]["excluded"]["min_fault_s"] == 600
    st = s["Stuck"]
    assert (st.incidents, st.detected, st.undetectable, st.precision) == (1, 1, 1, 1.0)
    vb = s["VeryBad"]
    assert (vb.incidents, vb.detected, vb.below_category, vb.tp_firings) == (1, 1, 1, 2)
    assert vb.precision == 1.0 and vb.recall == 1.0
    q = s["Queue"]  # district firing next door to the epicentre's district
    assert (q.tp_firings, q.detected) == (1, 1)
    fr = s["Freq"]  # kinds, but none in the span: judged on false positives only
    assert fr.status == "no incidents" and fr.false_positives == 0 and fr.recall is None
    assert "no incidents" in bt.note(fr) and "1 still running" in bt.note(sil)
    # without the registry, a district firing only matches the epicentre's district
    scores, _ = bt.score(rs, firings, truth, span=span, peaks=peaks)
    assert {x.alert: x for x in scores}["Queue"].tp_firings == 0


def test_detects_categories_parse_and_peaks_from_readings():
    d = bt.Detects.parse("pollution[aqi_us>=200]")
    assert (d.kind, d.metric, d.op, d.value, str(d)) == (
        "pollution", "aqi_us", ">=", 200.0, "pollution[aqi_us>=200]")
    assert bt.Detects.parse("accident") == bt.Detects("accident")
    rs = loads(EXCLUSIONS, "r.yaml")
    import pandas as pd

    ts = [i * MIN for i in range(0, 180, 5)]
    # an hour at 250 then 100: the best hourly mean is 250 (a 15-minute 400 would be 400)
    wide = pd.DataFrame({"ts": ts * 2, "sensor_id": ["aq-2"] * 36 + ["aq-9"] * 36,
                         "aqi_us": [250.0] * 12 + [100.0] * 24 + [900.0] * 36})
    truth = [_inc("p", "pollution", 0, 180 * MIN, "d1", ["aq-2"])]
    peaks = bt.incident_peaks(rs, truth, wide)
    assert peaks == {"p": {"aqi_us>": 250.0}}  # aq-9 is not the incident's


def test_min_fault_duration_of_a_rule():
    rs = loads(EXCLUSIONS, "r.yaml")
    got = {r.alert: bt.min_fault_ms(r) for r in rs.rules}
    assert got["Silent"] == 10 * MIN and got["Stuck"] == 30 * MIN and got["VeryBad"] == 0
