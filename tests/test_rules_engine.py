"""The rule engine: each kind fires and resolves once per condition, hysteresis, for /
keep_firing_for timing, fingerprints, silences, and state that survives a restart."""

from __future__ import annotations

import json
import math

import orjson
import pytest
from urbanbrain.rules import Evaluator, Silence, fingerprint, loads
from urbanbrain.rules.names import metric_domain
from urbanbrain.rules.silences import Matcher

M = 60_000
REG = {
    "tl-0001": {
        "domain": "traffic",
        "kind": "loop",
        "district": "centre",
        "free_flow_kmh": 50,
        "neighbours": "tl-0002",
    },
    "tl-0002": {
        "domain": "traffic",
        "kind": "loop",
        "district": "centre",
        "free_flow_kmh": 50,
        "neighbours": "tl-0001;tl-0003",
    },
    "tl-0003": {
        "domain": "traffic",
        "kind": "loop",
        "district": "centre",
        "free_flow_kmh": 50,
        "neighbours": "tl-0002",
    },
    "tl-0009": {"domain": "traffic", "kind": "loop", "district": "centre", "free_flow_kmh": 50},
    "wm-0001": {"domain": "water", "kind": "main", "district": "west"},
    "ps-0001": {"domain": "power", "kind": "substation", "district": "east"},
    "ps-0002": {"domain": "power", "kind": "substation", "district": "east"},
}


def rules(body: str) -> str:
    return "groups:\n  - name: g\n    rules:\n" + "\n".join(
        "      " + ln for ln in body.strip("\n").splitlines()
    )


def reading(sid: str, t_min: float, **metrics: float) -> dict:
    a = REG.get(sid, {})
    domain = a.get("domain") or metric_domain(next(iter(metrics)))
    return {
        "sensor_id": sid,
        "ts": int(t_min * M),
        "recv": int(t_min * M),
        "domain": domain,
        "kind": a.get("kind", "loop"),
        "district": a.get("district", "centre"),
        "metrics": metrics,
    }


def run(
    ev: Evaluator, series: dict[str, list[float | None]], metric: str, until: int | None = None
) -> list:
    """Feed one sample per minute per sensor and tick every minute; return all events."""
    n = max(len(v) for v in series.values()) if until is None else until
    events = []
    for i in range(n):
        batch = [
            reading(s, i, **{metric: v[i]})
            for s, v in series.items()
            if i < len(v) and v[i] is not None
        ]
        ev.observe(batch)
        events += [(i, e) for e in ev.tick(i * M)]
    return events


def statuses(events) -> list[tuple[int, str]]:
    return [(i, e.status) for i, e in events]


THRESHOLD = rules("""
- alert: Slow
  kind: threshold
  metric: speed_kmh
  condition: {op: '<', value: 20, clear: 30}
  for: 2m
  labels: {severity: warning}
  annotations: {summary: 'Speed {{ $value | printf "%.1f" }} km/h at {{ $labels.sensor }}'}
""")


def test_threshold_fires_and_resolves_once_per_condition():
    ev = Evaluator(loads(THRESHOLD), REG)
    speeds = [50] * 3 + [10] * 6 + [50] * 4 + [10] * 5 + [50] * 3
    events = run(ev, {"tl-0001": speeds}, "speed_kmh")
    assert statuses(events) == [(5, "firing"), (9, "resolved"), (15, "firing"), (18, "resolved")]
    first = events[0][1]
    assert first.labels == {
        "alertname": "Slow",
        "severity": "warning",
        "sensor": "tl-0001",
        "district": "centre",
    }
    assert first.annotations == {"summary": "Speed 10.0 km/h at tl-0001"}
    assert first.starts_at == 5 * M and first.ends_at is None
    assert events[1][1].ends_at == 9 * M and events[1][1].starts_at == 5 * M
    assert all(e.fingerprint == first.fingerprint for _, e in events)


def test_hysteresis_prevents_flapping():
    # oscillates between 15 (fires) and 25 (between value 20 and clear 30)
    osc = [50, 50] + [15, 25] * 10 + [40, 40]
    ev = Evaluator(loads(THRESHOLD), REG)
    assert statuses(run(ev, {"tl-0001": osc}, "speed_kmh")) == [(4, "firing"), (22, "resolved")]
    # the same rule without a clear level never even gets past `for`, the condition flaps
    no_clear = THRESHOLD.replace(", clear: 30", "").replace("for: 2m", "for: 0s")
    ev = Evaluator(loads(no_clear), REG)
    assert [s for _, s in statuses(run(ev, {"tl-0001": osc}, "speed_kmh"))].count("firing") == 10


def test_pending_is_reset_when_the_condition_breaks_before_for():
    ev = Evaluator(loads(THRESHOLD), REG)
    # true for 2 evaluations (0,1 min: not yet 2m), broken, then true for 3
    speeds = [10, 10, 50, 10, 10, 10, 50]
    assert statuses(run(ev, {"tl-0001": speeds}, "speed_kmh")) == [(5, "firing"), (6, "resolved")]


def test_keep_firing_for_holds_and_is_reset_by_a_new_true():
    body = THRESHOLD.replace("for: 2m", "for: 0s\n        keep_firing_for: 3m")
    ev = Evaluator(loads(body), REG)
    speeds = [10, 50, 50, 10, 50, 50, 50, 50, 50]
    # false at 1 (keep since 1), true at 3 resets, false from 4 -> resolved at 4+3 = 7
    assert statuses(run(ev, {"tl-0001": speeds}, "speed_kmh")) == [(0, "firing"), (7, "resolved")]


def test_for_timing_is_exact_with_sub_interval_ticks():
    ev = Evaluator(loads(THRESHOLD), REG)
    ev.observe([reading("tl-0001", 0, speed_kmh=10)])
    got = []
    for t in range(0, 3 * M + 1, 10_000):
        got += [(t, e.status) for e in ev.tick(t)]
    assert got == [(2 * M, "firing")]


def test_rate_fires_and_resolves_once():
    ev = Evaluator(
        loads(
            rules("""
- alert: PressureFalling
  kind: rate
  metric: pressure_kpa
  window: 3m
  condition: {op: '<', value: -20}
  labels: {severity: warning}
""")
        ),
        REG,
    )
    p = [400] * 5 + [300] * 8 + [400] * 2 + [300] * 6
    events = run(ev, {"wm-0001": p}, "pressure_kpa")
    # windows (t-3m, t] hold samples t-2..t: (2,5] and (3,6] see 400 -> 300, (4,7] only 300;
    # the rise at 13 is no fall
    assert statuses(events) == [(5, "firing"), (7, "resolved"), (15, "firing"), (17, "resolved")]
    assert events[0][1].value == pytest.approx(-100 / 2)  # 100 kPa between samples 3m and 5m


def test_absence_sensor_and_district():
    ev = Evaluator(
        loads(
            rules("""
- alert: Silent
  kind: absence
  selector: {domain: power}
  condition: {silent_for: 5m}
  labels: {severity: warning}
- alert: DistrictSilent
  kind: absence
  selector: {domain: power}
  scope: district
  condition: {silent_for: 5m}
  labels: {severity: critical}
""")
        ),
        REG,
    )
    ev.tick(0)  # evaluator starts: never-seen sensors are silent from here
    ev.observe([reading("ps-0001", 0, voltage_kv=11), reading("ps-0002", 0, voltage_kv=11)])
    got = []
    for i in range(1, 20):
        if i < 3:
            ev.observe([reading("ps-0001", i, voltage_kv=11)])
        if i >= 12:
            ev.observe([reading("ps-0002", i, voltage_kv=11)])
        got += [(i, e.alertname, e.status, e.labels.get("sensor")) for e in ev.tick(i * M)]
    assert got == [
        (5, "Silent", "firing", "ps-0002"),  # last seen at 0
        (7, "Silent", "firing", "ps-0001"),  # last seen at 2
        (7, "DistrictSilent", "firing", None),
        (12, "Silent", "resolved", "ps-0002"),
        (12, "DistrictSilent", "resolved", None),
    ]


def _noise(n: int, seed: int = 1) -> list[float]:
    import random

    rnd = random.Random(seed)
    return [100 + rnd.gauss(0, 2) for _ in range(n)]


@pytest.mark.parametrize("method", ["zscore", "ewma"])
def test_anomaly_fires_and_resolves_once(method):
    ev = Evaluator(
        loads(
            rules(f"""
- alert: Spike
  kind: anomaly
  metric: pm25_ugm3
  condition: {{method: {method}, baseline: 1h, halflife: 30m, threshold: 5, clear: 3, direction: up, min_samples: 20}}
  labels: {{severity: info}}
""")
        ),
        REG,
    )
    series = _noise(60) + [160.0] * 3 + _noise(30, seed=2)
    ev_list = run(ev, {"aq-0001": series}, "pm25_ugm3")
    assert statuses(ev_list) == [(60, "firing"), (63, "resolved")]
    assert ev_list[0][1].value > 20  # z-score of 160 against ~100 +- 2


def test_anomaly_against_same_hour_last_week():
    ev = Evaluator(
        loads(
            rules("""
- alert: Unusual
  kind: anomaly
  metric: flow_ls
  condition: {method: zscore, seasonal: same_hour_last_week, threshold: 4, min_samples: 10}
  labels: {severity: info}
""")
        ),
        REG,
    )
    week = 7 * 24 * 60
    # last week 08:00-09:00 flow ~ 100 +- 2, this week ~ 100 then 200
    for i, v in enumerate(_noise(60)):
        ev.observe([reading("wm-0001", 8 * 60 + i, flow_ls=v)])
    got = []
    for i in range(60):
        t = week + 8 * 60 + i
        ev.observe([reading("wm-0001", t, flow_ls=100.0 if i < 30 else 200.0)])
        got += [(i, e.status) for e in ev.tick(t * M)]
    assert got == [(30, "firing")]


def test_composite_neighbours_min_sensors():
    ev = Evaluator(
        loads(
            rules("""
- alert: Accident
  kind: composite
  selector: {domain: traffic}
  scope: district
  condition:
    all:
      - {metric: speed_kmh, relative_to: {attr: free_flow_kmh}, op: '<', value: 0.3, clear: 0.5}
    min_sensors: 3
    neighbours: true
  labels: {severity: critical}
  annotations: {summary: '{{ $value }} loops: {{ $sensors }}'}
""")
        ),
        REG,
    )
    slow, ok = [50] * 2 + [10] * 5 + [50] * 3, [50] * 10
    # two neighbours + a non-neighbour slow: no accident
    assert (
        run(ev, {"tl-0001": slow, "tl-0002": slow, "tl-0009": slow, "tl-0003": ok}, "speed_kmh")
        == []
    )
    ev = Evaluator(
        loads(
            ev.ruleset.groups
            and rules("""
- alert: Accident
  kind: composite
  selector: {domain: traffic}
  scope: district
  condition:
    all:
      - {metric: speed_kmh, relative_to: {attr: free_flow_kmh}, op: '<', value: 0.3, clear: 0.5}
    min_sensors: 3
    neighbours: true
  labels: {severity: critical}
  annotations: {summary: '{{ $value }} loops: {{ $sensors }}'}
""")
        ),
        REG,
    )
    events = run(
        ev, {"tl-0001": slow, "tl-0002": slow, "tl-0003": slow, "tl-0009": ok}, "speed_kmh"
    )
    assert statuses(events) == [(2, "firing"), (7, "resolved")]
    assert events[0][1].labels == {
        "alertname": "Accident",
        "severity": "critical",
        "district": "centre",
    }
    assert events[0][1].annotations == {"summary": "3 loops: tl-0001,tl-0002,tl-0003"}


def test_composite_across_metrics_of_one_sensor():
    ev = Evaluator(
        loads(
            rules("""
- alert: Burst
  kind: composite
  selector: {domain: water}
  condition:
    all:
      - {metric: pressure_kpa, op: '<', value: 200}
      - {metric: flow_ls, op: '>', value: 150}
  labels: {severity: critical}
""")
        ),
        REG,
    )
    got = []
    for i, (p, f) in enumerate(
        [(400, 100), (150, 100), (150, 200), (150, 200), (400, 200), (400, 100)]
    ):
        ev.observe([reading("wm-0001", i, pressure_kpa=p, flow_ls=f)])
        got += [(i, e.status) for e in ev.tick(i * M)]
    assert got == [(2, "firing"), (4, "resolved")]


def test_fingerprint_is_alertmanagers_and_stable():
    # test vector of prometheus/common model.labelSetToFingerprint
    assert (
        int(fingerprint({"name": "garland, briggs", "fear": "love is not enough"}), 16)
        == 5799056148416392346
    )
    assert fingerprint({}) == "cbf29ce484222325"
    a = fingerprint({"alertname": "X", "sensor": "tl-1", "district": "c"})
    assert a == fingerprint({"district": "c", "sensor": "tl-1", "alertname": "X"})
    assert a != fingerprint({"alertname": "X", "sensor": "tl-2", "district": "c"})
    # the same alert from two evaluator instances (e.g. two workers) has the same fingerprint
    fps = []
    for _ in range(2):
        ev = Evaluator(loads(THRESHOLD.replace("for: 2m", "for: 0s")), REG)
        ev.observe([reading("tl-0001", 0, speed_kmh=5)])
        fps.append(ev.tick(0)[0].fingerprint)
    assert (
        fps[0]
        == fps[1]
        == fingerprint(
            {"alertname": "Slow", "severity": "warning", "sensor": "tl-0001", "district": "centre"}
        )
    )


def test_silence_suppresses_notification_but_keeps_state():
    ev = Evaluator(loads(THRESHOLD.replace("for: 2m", "for: 0s")), REG)
    sil = ev.add_silence(
        Silence.create(
            ['sensor=~"tl-000[12]"', 'severity!="critical"'], 0, 5 * M, comment="roadworks"
        )
    )
    speeds = {"tl-0001": [10] * 8 + [50] * 2, "tl-0003": [10] * 2 + [50] * 8}
    events = run(ev, speeds, "speed_kmh")
    summary = [(i, e.status, e.labels["sensor"], e.silenced) for i, e in events]
    assert summary == [
        (0, "firing", "tl-0001", True),  # silenced: state kept, not notified
        (0, "firing", "tl-0003", False),  # not matched by the silence
        (2, "resolved", "tl-0003", False),
        (5, "firing", "tl-0001", False),  # silence over while still firing: notified now
        (8, "resolved", "tl-0001", False),
    ]
    assert events[0][1].silenced_by == [sil.id]
    assert events[3][1].starts_at == 0  # same alert, started at 0


def test_resolved_of_an_alert_never_notified_is_silenced_too():
    ev = Evaluator(loads(THRESHOLD.replace("for: 2m", "for: 0s")), REG)
    ev.add_silence(Silence.create(['alertname="Slow"'], 0, 60 * M))
    events = run(ev, {"tl-0001": [10, 10, 50]}, "speed_kmh")
    assert [(e.status, e.silenced) for _, e in events] == [("firing", True), ("resolved", True)]


def test_matchers():
    labels = {"alertname": "A", "district": "north", "severity": "critical"}
    assert Matcher.parse('district="north"').matches(labels)
    assert Matcher.parse("district!=south").matches(labels)
    assert Matcher.parse('district=~"nor.*"').matches(labels)
    assert not Matcher.parse('district=~"nor"').matches(labels)  # anchored
    assert Matcher.parse('team!~".+"').matches(labels)  # absent label = ""
    assert Matcher.parse(
        {"name": "severity", "value": "crit.*", "isRegex": True, "isEqual": True}
    ).matches(labels)
    with pytest.raises(ValueError):
        Matcher.parse("no operator")
    s = Silence.create(['district="north"'], 10, 20)
    assert not s.matches(labels, 9) and s.matches(labels, 10) and not s.matches(labels, 20)


def test_state_round_trip_through_json_neither_resends_nor_forgets():
    rs = loads(THRESHOLD.replace("for: 2m", "for: 2m\n        keep_firing_for: 1m"))
    ev = Evaluator(rs, REG)
    ev.add_silence(Silence.create(['sensor="tl-0002"'], 0, 100 * M))
    speeds = {
        "tl-0001": [10] * 6 + [50] * 4,
        "tl-0002": [10] * 10,
        "tl-0003": [50, 50, 10, 10, 10, 10, 50],
    }
    # run to minute 3: tl-0001 firing since 2, tl-0002 firing (silenced), tl-0003 pending since 2
    first = run(ev, speeds, "speed_kmh", until=4)
    assert [(i, e.status, e.labels["sensor"]) for i, e in first] == [
        (2, "firing", "tl-0001"),
        (2, "firing", "tl-0002"),
    ]
    snapshot = json.loads(json.dumps(ev.state_dict()))
    restored = Evaluator.from_state(rs, REG, snapshot)
    assert restored.state_dict() == snapshot
    rest = []
    for i in range(4, 10):
        restored.observe([reading(s, i, speed_kmh=v[i]) for s, v in speeds.items() if i < len(v)])
        rest += [(i, e.status, e.labels["sensor"], e.silenced) for e in restored.tick(i * M)]
    # no re-send of tl-0001 / tl-0002 (still silenced), tl-0003's pending timer continued
    # (fires at 4, not 6), keep_firing_for timers survive too
    assert rest == [
        (4, "firing", "tl-0003", False),
        (7, "resolved", "tl-0001", False),
        (7, "resolved", "tl-0003", False),
    ]
    assert restored.silences()[0].matchers[0].value == "tl-0002"


def test_take_changes_for_a_changelog_table():
    ev = Evaluator(loads(THRESHOLD.replace("for: 2m", "for: 0s")), REG)
    ev.observe([reading("tl-0001", 0, speed_kmh=10), reading("wm-0001", 0, pressure_kpa=300)])
    ev.tick(0)
    changes = ev.take_changes()
    # wm-0001 matches no rule: no state at all
    assert set(changes) == {"meta", "s|tl-0001", "a|g/Slow|tl-0001"}
    assert changes["a|g/Slow|tl-0001"]["s"] == "firing"
    json.dumps(changes)  # plain JSON
    assert ev.take_changes() == {}
    ev.observe([reading("tl-0001", 1, speed_kmh=50)])
    ev.tick(M)
    changes = ev.take_changes()
    assert changes["a|g/Slow|tl-0001"] is None  # resolved: delete the table key
    # rebuilding from the table (items with deletions applied) gives the same state
    table: dict = {}
    ev2 = Evaluator(ev.ruleset, REG)
    for sid, v in [("tl-0001", 10), ("tl-0002", 10)]:
        ev2.observe([reading(sid, 0, speed_kmh=v)])
    ev2.tick(0)
    for k, v in ev2.take_changes().items():
        table.pop(k, None) if v is None else table.__setitem__(k, v)
    ev3 = Evaluator.from_state(ev.ruleset, REG, table)
    assert ev3.state_dict() == ev2.state_dict()


def test_sensor_state_stays_small():
    ev = Evaluator(loads(THRESHOLD.replace("condition", "window: 10m\n        condition")), REG)
    for i in range(600):
        ev.observe([reading("tl-0001", i / 6, speed_kmh=50)])  # every 10 s for 100 min
    st = ev.state_dict()["s|tl-0001"]
    assert len(st["m"]["speed_kmh"][0]) <= 61  # 10 minutes of 10-s samples


def test_state_entries_encoded_without_copies_are_the_same_json():
    """What the worker writes (``take_encoded``: numpy views, no copies) is byte for byte
    the JSON of the copies (``take_changes``), samples, reading times and baselines
    included, and leaves the arrays free to grow again."""
    rs = loads(THRESHOLD.replace("condition", "window: 10m\n        condition"))
    a, b = Evaluator(rs, REG), Evaluator(rs, REG)
    for ev in (a, b):
        for i in range(90):
            ev.observe([reading("tl-0001", i / 6, speed_kmh=50 - i / 7),
                        reading("tl-0002", i / 6, speed_kmh=30.25)])
        ev.tick(15 * M)
    st = a._sensors["tl-0001"]
    st.tod["speed_kmh|UTC|7d"] = [-1.0, 3.0, 41.5, 0.125]
    st.seen_at("", 15 * M, None)
    b._sensors["tl-0001"].tod["speed_kmh|UTC|7d"] = [-1.0, 3.0, 41.5, 0.125]
    b._sensors["tl-0001"].seen_at("", 15 * M, None)
    copies = {k: None if v is None else json.dumps(v, separators=(",", ":")).encode()
              for k, v in a.take_changes().items()}
    encoded = b.take_encoded()
    assert encoded.keys() == copies.keys() and "s|tl-0001" in encoded
    assert json.loads(encoded["s|tl-0001"]) == json.loads(copies["s|tl-0001"])
    assert encoded["s|tl-0001"] == orjson.dumps(json.loads(copies["s|tl-0001"]))
    b.observe([reading("tl-0001", 16, speed_kmh=12.0)])  # no view left behind
    assert b._sensors["tl-0001"].series["speed_kmh"][1][-1] == 12.0


def test_late_and_unregistered_readings():
    ev = Evaluator(loads(THRESHOLD.replace("for: 2m", "for: 0s")), {})
    # unregistered sensor: district comes from the reading; late sample inserted in order
    ev.observe([reading("tl-0777", 2, speed_kmh=50), reading("tl-0777", 1, speed_kmh=10)])
    assert ev.tick(1 * M)[0].labels["district"] == "centre"
    st = ev.state_dict()["s|tl-0777"]
    assert st["m"]["speed_kmh"] == [[M, 2 * M], [10.0, 50.0]]
    assert st["attrs"]["district"] == "centre"


def test_scope_filter_and_district_threshold():
    rs = loads(
        rules("""
- alert: Slow
  kind: threshold
  metric: speed_kmh
  condition: {op: '<', value: 20}
  labels: {severity: warning}
- alert: DistrictSlow
  kind: threshold
  metric: speed_kmh
  scope: district
  across: mean
  condition: {op: '<', value: 30}
  labels: {severity: warning}
""")
    )
    ev = Evaluator(rs, REG, scope="district")
    ev.observe([reading("tl-0001", 0, speed_kmh=10), reading("tl-0002", 0, speed_kmh=40)])
    events = ev.tick(0)
    assert [(e.alertname, e.value) for e in events] == [("DistrictSlow", 25.0)]


def test_hot_swap_keeps_state_and_resolves_removed_rules():
    ev = Evaluator(loads(THRESHOLD.replace("for: 2m", "for: 0s")), REG)
    ev.observe([reading("tl-0001", 0, speed_kmh=10)])
    assert len(ev.tick(0)) == 1
    # same rule, different annotation: alert kept, nothing re-sent
    same = loads(THRESHOLD.replace("for: 2m", "for: 0s").replace("Speed", "Vitesse"))
    assert ev.replace_ruleset(same, M) == []
    ev.observe([reading("tl-0001", 1, speed_kmh=10)])
    assert ev.tick(M) == []
    # rule removed: its firing alert is resolved once
    other = loads(
        rules("""
- alert: Other
  kind: threshold
  metric: speed_kmh
  condition: {op: '>', value: 200}
  labels: {severity: info}
""")
    )
    out = ev.replace_ruleset(other, 2 * M)
    assert [(e.alertname, e.status, e.ends_at) for e in out] == [("Slow", "resolved", 2 * M)]
    assert ev.tick(2 * M) == []


def test_infinite_zscore_does_not_break_outputs():
    from urbanbrain.rules import influx_line

    ev = Evaluator(
        loads(
            rules("""
- alert: Jump
  kind: anomaly
  metric: pressure_kpa
  condition: {threshold: 3, min_samples: 5, min_std: 0}
  labels: {severity: info}
""")
        ),
        REG,
    )
    events = run(ev, {"wm-0001": [300.0] * 10 + [500.0]}, "pressure_kpa")
    assert len(events) == 1 and math.isinf(events[0][1].value)
    assert "value=" not in influx_line(events[0][1])


def test_group_interval_limits_evaluations():
    body = THRESHOLD.replace("for: 2m", "for: 0s").replace(
        "  - name: g\n", "  - name: g\n    interval: 5m\n"
    )
    rs = loads(body)
    assert rs.groups[0].interval_ms == 5 * M
    ev = Evaluator(rs, REG)
    got = []
    for i in range(12):
        ev.observe([reading("tl-0001", i, speed_kmh=10 if i >= 1 else 50)])
        got += [(i, e.status) for e in ev.tick(i * M)]
    assert got == [(5, "firing")]  # evaluated at 0, 5, 10 only


def test_relative_to_attribute_or_nearest_standard_level():
    ev = Evaluator(loads(rules("""
- alert: Band
  kind: threshold
  metric: voltage_kv
  condition: {op: outside, value: [0.94, 1.06], relative_to: {attr: nominal_kv, standard: [10, 20]}}
  labels: {severity: warning}
""")), {**REG, "ps-0009": {"domain": "power", "district": "east", "nominal_kv": "11"}})
    ev.observe([
        reading("ps-0001", 0, voltage_kv=20.5),  # nearest standard 20: 1.025, in band
        reading("ps-0002", 0, voltage_kv=10.8),  # nearest standard 10: 1.08, out of band
        reading("ps-0009", 0, voltage_kv=10.8),  # registry nominal 11: 0.98, in band
    ])
    assert [(e.labels["sensor"], round(e.value, 3)) for e in ev.tick(0)] == [("ps-0002", 1.08)]
