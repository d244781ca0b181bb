"""What operators see of the engine without reading its tables: pending, firing and the
keys whose baselines are still warming up, per rule (``alerts.rules``, ``rules list``)."""

from __future__ import annotations

from types import SimpleNamespace

import orjson

from urbanbrain.console.rules_status import engine_status
from urbanbrain.rules import Evaluator
from urbanbrain.rules.loader import loads

RULES = """
groups:
  - name: g
    rules:
      - alert: Unusual
        kind: anomaly
        metric: speed_kmh
        condition: {seasonal: time_of_day, timezone: UTC, threshold: 4, min_samples: 3}
        labels: {severity: warning}
      - alert: Slow
        kind: threshold
        metric: speed_kmh
        condition: {op: '<', value: 20}
        for: 10m
        labels: {severity: warning}
"""
H = 3_600_000
T0 = 1_780_000_000_000 // (24 * H) * (24 * H)


def test_rule_status_counts_pending_firing_and_warming_keys() -> None:
    reg = {s: {"domain": "traffic", "kind": "loop", "district": "d"} for s in ("a", "b")}
    ev = Evaluator(loads(RULES), reg, scope="sensor")
    # "a" has three earlier days at this hour, "b" has none: only "b" is still cold
    history = [{"sensor_id": "a", "ts": T0 + d * 24 * H + m * 60_000, "domain": "traffic",
                "kind": "loop", "district": "d", "metrics": {"speed_kmh": 50.0 + m % 3}}
               for d in range(3) for m in range(0, 60, 5)]
    ev.process(history, watermark=T0 + 3 * 24 * H)
    now = T0 + 3 * 24 * H + 30 * 60_000
    slow = [{"sensor_id": s, "ts": now, "domain": "traffic", "kind": "loop", "district": "d",
             "metrics": {"speed_kmh": 10.0}} for s in ("a", "b")]
    ev.process(slow, watermark=now - 120_000)
    st = ev.rule_status(now)
    assert st["g/Unusual"]["candidates"] == 2
    assert st["g/Unusual"]["warming"] == 1 and st["g/Unusual"]["warming_keys"] == ["b"]
    assert st["g/Slow"] == {"pending": 2, "firing": 0, "candidates": 2, "warming": 0,
                            "warming_keys": []}


def test_engine_status_sums_the_latest_record_of_each_evaluator() -> None:
    def rec(key: str, at: int, pending: int, warming: int, keys: list[str]):  # noqa: ANN202
        return SimpleNamespace(key=key.encode(), value=orjson.dumps({
            "at": at, "rules": {"g/R": {"pending": pending, "firing": 1, "warming": warming,
                                        "warming_keys": keys}}}))

    records = [rec("w1|readings.traffic|0", 1000, 5, 5, ["x"]),  # superseded below
               rec("w1|readings.traffic|0", 2000, 1, 2, ["a", "b"]),
               rec("w2|readings.traffic|1", 2500, 2, 1, ["c"]),
               rec("w9|readings.traffic|1", 10, 9, 9, ["old"])]  # that partition moved away
    got = engine_status(records, max_age_ms=1000, now_ms=3000)
    assert got == {"g/R": {"pending": 3, "firing": 2, "warming": 3,
                           "warming_keys": ["a", "b", "c"]}}
    tomb = SimpleNamespace(key=b"w2|readings.traffic|1", value=None)
    assert engine_status([*records, tomb], 1000, 3000)["g/R"]["pending"] == 1
