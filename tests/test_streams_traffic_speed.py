"""A window's speed is the mean speed of its vehicles: 10 s loop readings, aggregated by the
worker's window code, give exactly the speed SUMO's own 60 s E1 loop reports.

Both sides are SUMO's E1 XML output of one run (two loops at the same spot, one writing every
10 s, one every 60 s); nothing of ours produces the reference.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from urbanbrain.simulators import sumo
from urbanbrain.streams.aggregates import by_sensor
from urbanbrain.streams.derive import IndexCalculator
from urbanbrain.streams.windows import PartitionWindows

T0 = 1767600000000  # Monday 09:00 local, a minute boundary
MIN = 60_000


def _sumo_10s_and_60s(tmp: Path, minutes: int) -> tuple[dict, dict]:
    sc = sumo.grid_scenario(tmp, seed=11, grid=4, interval_s=10, start_ms=T0, hours=1)
    root = ET.parse(sc.additional[0]).getroot()
    add60 = ET.Element("additional")
    for el in root.iter("inductionLoop"):
        ET.SubElement(add60, "inductionLoop", id="m60" + el.get("id", "")[2:],
                      lane=el.get("lane", ""), pos=el.get("pos", ""), freq="60",
                      file="e1_60.xml")
    ET.ElementTree(add60).write(tmp / "loops60.add.xml")
    proc = subprocess.run(
        [shutil.which("sumo") or "sumo", "-n", str(sc.net), "-r", ",".join(map(str, sc.routes)),
         "-a", f"{sc.additional[0]},{tmp / 'loops60.add.xml'}", "--end", str(minutes * 60),
         "--precision", "6", "--no-step-log", "true", "--no-warnings", "true", "--seed", "11",
         "--xml-validation", "never"],
        cwd=tmp, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return sumo.read_e1_xml(tmp / "e1.xml"), sumo.read_e1_xml(tmp / "e1_60.xml")


def test_weighted_one_minute_speed_equals_sumo_60s_loop(tmp_path: Path) -> None:
    minutes = 20
    e10, e60 = _sumo_10s_and_60s(tmp_path, minutes)
    readings = []
    for (det, begin), x in sorted(e10.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        metrics = {"vehicle_count": x["nVehContrib"], "occupancy_pct": x["occupancy"],
                   "flow_vph": x["flow"]}
        if x["speed"] >= 0:  # E1 writes -1 when no vehicle passed: no speed
            metrics["speed_kmh"] = x["speed"] * 3.6
        readings.append({"sensor_id": det[3:], "domain": "traffic", "kind": "loop",
                         "district": "d", "ts": T0 + int(begin * 1000), "recv": T0,
                         "metrics": metrics})
    assert len(readings) == 48 * minutes * 6
    pw = PartitionWindows("readings.traffic", 0, lateness_ms=MIN)
    results = [pw.process([(i, readings[i:i + 100])]) for i in range(0, len(readings), 100)]
    results.append(pw.process([(10**6, [{**readings[-1], "ts": T0 + (minutes + 5) * MIN}])]))
    calc = IndexCalculator(None)
    windows = {}
    for res in results:
        for w in res.windows:
            if w.size == "1m":
                rows = by_sensor(w.frame)
                idx = {p.sensor: p.fields for p in calc.compute("traffic", rows, 60.0)}
                windows[w.start] = (rows, idx)
    assert sorted(windows) == [T0 + k * MIN for k in range(minutes)]
    checked = unweighted_off = no_speed = 0
    for (det, begin), x in e60.items():
        lane = det[4:]
        rows, idx = windows[T0 + int(begin * 1000)]
        st, fields = rows[lane], idx[lane]
        assert st["vehicle_count"].sum == x["nVehContrib"]
        assert fields["flow_vph"] == pytest.approx(x["flow"], abs=1e-6)
        if x["nVehContrib"] == 0:
            assert fields["speed_kmh"] is None and fields["congestion_index"] is None
            assert "speed_kmh" not in st or math.isnan(st["speed_kmh"].mean)
            no_speed += 1
            continue
        # SUMO's E1 writes m/s with 6 decimals: 1e-6 m/s is 3.6e-6 km/h
        assert fields["speed_kmh"] == pytest.approx(x["speed"] * 3.6, abs=1e-5), (det, begin)
        assert st["speed_kmh"].mean == pytest.approx(x["speed"] * 3.6, abs=1e-5)
        assert fields["congestion_index"] == pytest.approx(
            max(0.0, 1 - x["speed"] * 3.6 / 60.0), abs=1e-6)  # default arterial, 60 km/h
        checked += 1
        if abs(st["speed_kmh"].reading_mean - x["speed"] * 3.6) > 0.01:
            unweighted_off += 1
    assert checked > 500 and no_speed > 0
    # the plain mean of interval means is what this replaces: it is wrong often
    assert unweighted_off > checked // 10
