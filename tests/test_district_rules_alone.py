"""A rule file of district rules alone evaluates as it does beside other rule files.

The district clock advances with the watermarks the source partitions forward, and a
source partition's watermark is what its evaluator has observed. That evaluator ignored
readings no *sensor* rule used, so with only district rules loaded (e.g. traffic.yaml on
its own, as an engineer tests a new file) no source had a watermark, the district clock
never moved and no district rule was ever evaluated: Congestion 0/3 on three days of
standard-week, 3/3 with the whole starter set beside it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from urbanbrain.rules import RuleSet
from urbanbrain.rules import backtest as bt
from urbanbrain.streams.inprocess import InProcessWorker

CITY = Path(bt.__file__).parent / "city"

#: fires in every district with two loops reporting: what matters is that it is evaluated
DISTRICT_RULE = """
groups:
  - name: district-only
    rules:
      - alert: LoopsReporting
        kind: composite
        selector: {domain: traffic, kind: loop}
        scope: district
        condition:
          all:
            - {metric: speed_kmh, window: 5m, aggregate: count, op: '>', value: 0}
          min_sensors: 2
        for: 5m
        labels: {severity: info}
"""


@cache
def traffic_ticks() -> tuple[Path, list[list[dict]]]:
    """Three hours of ci-day's traffic loops, tick by tick."""
    df, _, reg, _ = bt.scenario_inputs("ci-day")
    registry = bt.load_registry_csv(reg)
    loops = df[df["sensor_id"].astype(str).str.startswith("tl-")]
    loops = loops[loops["ts"] < loops["ts"].min() + 3 * 3_600_000]
    return reg, [b for _, b in bt.batches(bt.wide_readings(loops, registry), registry)]


def district_firings(paths: list[str]) -> set[tuple]:
    reg, ticks = traffic_ticks()
    w = InProcessWorker(RuleSet.load(paths), reg, checkpoint_s=0)
    for batch in ticks:
        w.feed(batch)
    return {(e.labels["alertname"], e.labels.get("district"), e.starts_at)
            for e in w.events if e.labels["alertname"] == "LoopsReporting"
            and e.status == "firing"}


def test_district_rules_alone_fire_as_beside_sensor_rules(tmp_path: Path) -> None:
    rule = tmp_path / "district-only.yaml"
    rule.write_text(DISTRICT_RULE)
    alone = district_firings([str(rule)])
    beside = district_firings([str(rule), str(CITY / "sensors.yaml")])
    assert alone, "a district rule loaded on its own was never evaluated"
    assert alone == beside
