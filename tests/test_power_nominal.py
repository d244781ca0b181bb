"""Voltage deviation against each substation's own nominal voltage, from the registry.

A city with 10 kV and 20 kV substations read "Voltage deviation 84.53 %" on a healthy grid
because one nominal (11 kV) was used for all. The registry now carries ``nominal_kv`` per
substation (the simulator writes the level it drives each one at), and the index uses it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from urbanbrain.registry import Registry
from urbanbrain.simulators.city import City
from urbanbrain.streams.aggregates import Stats
from urbanbrain.streams.derive import IndexCalculator


def stats(*values: float) -> Stats:
    return Stats(len(values), sum(values), sum(v * v for v in values), min(values), max(values),
                 0, values[-1])


def test_registry_round_trip_keeps_nominal_kv(tmp_path: Path) -> None:
    city = City.generate(7, "small")  # the city `urbanbrain up` simulates
    reg = Registry.load(city.write_registry(tmp_path / "registry.csv"))
    subs = [s for s in reg.values() if s.domain == "power"]
    assert {s.nominal_kv for s in subs} == {10.0, 20.0}  # both levels in this city
    assert all(s.nominal_kv is None for s in reg.values() if s.domain != "power")
    reg.save(tmp_path / "again.csv")
    assert Registry.load(tmp_path / "again.csv") == reg
    # a registry of the older columns (no nominal_kv) still loads
    old = tmp_path / "old.csv"
    old.write_text("sensor_id,domain,kind,district,lat,lon\nps-1,power,substation,x,1,2\n")
    assert Registry.load(old)["ps-1"].nominal_kv is None


def test_healthy_10_and_20_kv_substations_deviate_little(tmp_path: Path) -> None:
    city = City.generate(7, "small")
    reg = Registry.load(city.write_registry(tmp_path / "registry.csv"))
    ten = next(s.sensor_id for s in reg.values() if s.nominal_kv == 10.0)
    twenty = next(s.sensor_id for s in reg.values() if s.nominal_kv == 20.0)
    rows = {ten: {"voltage_kv": stats(10.30, 10.40)}, twenty: {"voltage_kv": stats(20.6, 20.8)},
            "ps-unknown": {"voltage_kv": stats(11.55)}}
    points = {p.sensor: p.fields for p in IndexCalculator(reg, nominal_kv=11.0)
              .compute("power", rows, 60.0)}
    assert points[ten]["voltage_deviation_pct"] == pytest.approx(3.5)
    assert points[twenty]["voltage_deviation_pct"] == pytest.approx(3.5)
    assert points[twenty]["voltage_deviation_max_pct"] == pytest.approx(4.0)
    # not in the registry: the configured nominal (URBANBRAIN_STREAMS_NOMINAL_KV)
    assert points["ps-unknown"]["voltage_deviation_pct"] == pytest.approx(5.0)
    # what the old single nominal made of the 20 kV substation
    old = IndexCalculator(None, nominal_kv=11.0).compute("power", rows, 60.0)
    assert next(p for p in old if p.sensor == twenty).fields["voltage_deviation_pct"] > 80
