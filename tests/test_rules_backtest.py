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
