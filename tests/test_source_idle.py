"""A source not heard from since a worker took its partition is not idle at once.

The live sensor stage judges a sensor's silence against its own source (device, gateway):
a silent sensor whose source has not passed the due time is parked until that source moves
on or goes idle (no record for ``idle_s`` of ingestion time). After a rebalance the new
owner has heard nothing from any source yet; measured from the worker's start, every
source not in its first batch looked idle at once, and a sensor whose next readings were
simply in the next batch was declared silent."""

from __future__ import annotations

import time

from urbanbrain.reading import Partitioner
from urbanbrain.rules import loads
from urbanbrain.streams.alert_stage import SensorRules
from urbanbrain.streams.state import DictStore

RULES = """
groups:
  - name: g
    rules:
      - alert: Silent
        kind: absence
        condition: {silent_for: 3m}
        labels: {severity: warning}
"""
T0 = 1_700_000_000_000
MIN = 60_000


def _reading(sensor: str, src: int, minute: int) -> dict:
    return {"sensor_id": sensor, "domain": "traffic", "district": "c", "kind": "loop",
            "ts": T0 + minute * MIN, "src": src, "metrics": {"speed_kmh": 40.0}}


def test_a_source_unheard_since_a_takeover_is_measured_from_the_takeover() -> None:
    part = Partitioner(4)
    sensors = [f"tl-{i}" for i in range(40)]
    p = part(sensors[0])
    a, b = [s for s in sensors if part(s) == p][:2]
    registry = {s: {"domain": "traffic", "kind": "loop", "district": "c"} for s in (a, b)}
    rules = loads(RULES)
    store = DictStore()
    stage = SensorRules(store, registry, lambda: rules, 4, lateness_ms=0, idle_s=30.0)
    wall = time.time()
    both = [_reading(a, 1, m) for m in range(3)] + [_reading(b, 2, m) for m in range(3)]
    assert stage.process("readings.traffic", p, both, now_wall=wall) == []
    stage.persist("readings.traffic", p)

    # a rebalance: the partition comes back (or to a worker that has run for minutes);
    # its first batch holds only source 1's next minutes, source 2's are in the next one
    stage.reset("generation 2")
    later = wall + 120.0
    events = stage.process("readings.traffic", p, [_reading(a, 1, m) for m in range(3, 7)],
                           now_wall=later)
    assert events == [], [(e.alertname, e.labels["sensor"]) for e in events]
    events = stage.process("readings.traffic", p, [_reading(b, 2, m) for m in range(3, 7)],
                           now_wall=later + 1.0)
    assert events == []

    # a source that then stays quiet for idle_s of ingestion time is idle: its sensor's
    # absence fires at its due time (last reading + 3 min), not before
    events = stage.process("readings.traffic", p, [_reading(a, 1, m) for m in range(7, 14)],
                           now_wall=later + 32.0)
    assert [(e.alertname, e.labels["sensor"], e.status) for e in events] == [
        ("Silent", b, "firing")]
    assert events[0].starts_at == T0 + 9 * MIN
