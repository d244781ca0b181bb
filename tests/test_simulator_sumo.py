"""SUMO mode: loop values are SUMO's own E1 induction-loop values, end to end.

The reference is always SUMO's own E1 XML output of the same run (written with 6 decimals),
never our reading of it: the published loop values, and the points the pipeline stores, must
equal it loop-minute by loop-minute.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import component_env, role_settings
from harness import Component, Influx, wait_until
from urbanbrain.simulators import sumo
from urbanbrain.simulators.city import City
from urbanbrain.simulators.engine import Simulation
from urbanbrain.simulators.incidents import Schedule, make_incident
from urbanbrain.simulators.runner import run_simulation

from urbanbrain.registry import Registry

# SUMO is a declared test dependency (the Makefile installs sumo, sumo-tools): a missing
# SUMO must fail here, not skip silently.
sumo.sumo_home()
sumo.load_sumo()

T0 = 1767600000000  # Monday 09:00 local
MIN = 60_000
GAME = Path(sumo.sumo_home()) / "tools" / "game"


def _e1(path: Path) -> dict[tuple[str, int], dict[str, float]]:
    return {(d, int(b)): v for (d, b), v in sumo.read_e1_xml(path).items()}


def test_loops_equal_sumo_e1_xml_and_take_the_network_speeds(tmp_path: Path) -> None:
    city = City.generate(1, "small")
    traffic = sumo.SumoTraffic(city, tmp_path, seed=2, grid=4, start_ms=T0, hours=1)
    try:
        got = {k: traffic.step() for k in range(30)}
    finally:
        traffic.close()
    xml = _e1(traffic.scenario.e1_output)
    ids = traffic.loop_ids
    assert len(ids) == 48 and len(xml) == 48 * 30
    empty = 0
    for k, values in got.items():
        for i, det in enumerate(ids):
            x = xml[(det, k * 60)]
            count, occ, speed, flow = values[i]
            assert count == x["nVehContrib"], (det, k)
            assert occ == pytest.approx(x["occupancy"], abs=1e-4), (det, k)
            assert flow == pytest.approx(x["flow"], abs=1e-3), (det, k)
            if x["nVehContrib"] == 0:
                assert math.isnan(speed) and x["speed"] == -1  # no vehicle: no speed
                empty += 1
            else:
                assert speed == pytest.approx(x["speed"] * 3.6, abs=1e-4), (det, k)
    assert sum(v[:, 0].sum() for v in got.values()) > 1000
    assert 0 < empty < len(xml)
    # the loops are the city's first loops now: free flow from the lanes (13.89 m/s)
    loops = city.of_kind("loop")[:48]
    assert [s.sensor_id for s in loops] == ids
    assert {s.free_flow_kmh for s in loops} == {50.0}
    assert {s.road_class for s in loops} == {"collector"}
    assert {s.district for s in loops} <= set(city.district_ids)
    reg = Registry.load(city.write_registry(tmp_path / "registry.csv"))
    assert reg[ids[0]].free_flow_kmh == 50.0 and reg[ids[0]].kind == "loop"


def test_an_accident_stops_a_car_on_the_loop(tmp_path: Path) -> None:
    city = City.generate(1, "small")
    traffic = sumo.SumoTraffic(city, tmp_path, seed=1, grid=5, start_ms=T0, hours=1)
    try:
        target = traffic.loop_ids[3]
        acc = make_incident(city, "accident", T0 + 5 * 60_000, 20 * 60, incident_id="acc",
                            where=target)
        sim = Simulation(city, 1, start_ms=T0, schedule=Schedule(city, None, explicit=[acc]),
                         sumo=traffic)
        frames = list(sim.frames(15))
    finally:
        traffic.close()
    k = int(traffic.loop_index[3])
    before = [f.values["loop"][k] for f in frames[:5]]
    after = [f.values["loop"][k] for f in frames[7:]]
    assert sum(r[0] for r in before) > 0 and max(r[1] for r in before) < 50
    assert all(r[1] == 100.0 and r[0] == 0 for r in after)  # held occupied, nobody passes
    assert all(math.isnan(r[2]) for r in after)  # and no speed is invented


def test_a_users_scenario_is_placed_on_the_city_by_geometry(tmp_path: Path) -> None:
    net = GAME / "cross" / "cross.net.xml"
    routes = GAME / "cross" / "cross.rou.xml"
    add = tmp_path / "loops.add.xml"
    add.write_text('<additional>\n'
                   '  <inductionLoop id="west_in" lane="1si_0" pos="-30" freq="60" file="o.xml"/>\n'
                   '  <e1Detector id="east_in" lane="2si_0" pos="100" period="60" file="o.xml"/>\n'
                   '</additional>\n')
    sc = sumo.Scenario.user(net, [routes], [add])
    loops = sumo.read_loops(sc.net, sc.additional)
    assert [lp.det_id for lp in loops] == ["east_in", "west_in"]
    west = loops[1]
    assert west.pos_m == pytest.approx(135.75 - 30) and west.lane_speed_kmh == 50.0
    # on the lane's shape (48.82,182.81 → 184.26,192.30), 105.75 m along it
    assert west.x_m == pytest.approx(48.82 + 135.44 * 105.75 / 135.77, abs=0.05)
    city = City.generate(3, "small")
    traffic = sumo.SumoTraffic(city, tmp_path / "run", seed=3, scenario=sc)
    try:
        values = [traffic.step() for _ in range(5)]
    finally:
        traffic.close()
    assert sum(v[:, 0].sum() for v in values) > 0
    placed = {s.sensor_id: s for s in city.of_kind("loop")[:2]}
    # the plain (not geo-referenced) net lies in metres around the city centre: the two
    # loops 62 m apart east-west, 2 m north-south
    w, e = placed["west_in"], placed["east_in"]
    assert (e.x_km - w.x_km) * 1000 == pytest.approx(sumo.read_loops(net, [add])[0].x_m -
                                                     west.x_m, abs=1)
    assert abs(e.lat - w.lat) < 0.0002 and w.district == e.district == "centrum"
    assert w.free_flow_kmh == 50.0 and w.kind == "loop"

    bad = tmp_path / "bad.add.xml"
    bad.write_text('<additional><inductionLoop id="x" lane="nope_0" pos="1" freq="60" '
                   'file="o.xml"/></additional>')
    with pytest.raises(sumo.SumoScenarioError, match="lane 'nope_0' is not in cross.net.xml"):
        sumo.read_loops(net, [bad])
    bad.write_text('<additional><inductionLoop id="a b" lane="1si_0" pos="1" freq="60" '
                   'file="o.xml"/></additional>')
    with pytest.raises(sumo.SumoScenarioError, match="valid sensor id"):
        sumo.read_loops(net, [bad])
    with pytest.raises(sumo.SumoScenarioError, match="no such file"):
        sumo.Scenario.user(net, [tmp_path / "missing.rou.xml"], [add])


def test_georeferenced_net_maps_linearly_between_its_boundaries() -> None:
    geo = sumo.NetGeometry.of(GAME / "A10KW" / "osm.net.xml")
    assert geo.georeferenced
    lat, lon = geo.centre_latlon()
    assert (lat, lon) == pytest.approx(((52.291597 + 52.319872) / 2, (13.576712 + 13.630952) / 2))
    x0, y0, x1, y1 = geo.conv
    assert geo.latlon(x0, y0, (0, 0)) == pytest.approx((52.291597, 13.576712))
    assert geo.latlon(x1, y1, (0, 0)) == pytest.approx((52.319872, 13.630952))


@pytest.mark.servers
def test_pipeline_stores_sumo_e1_values_per_loop_minute(private_stack, run_id, components,
                                                        tmp_path: Path) -> None:
    """SUMO → simulator → mosquitto → ingest → Kafka → worker → InfluxDB equals E1 XML."""
    minutes = 15
    t0 = (int(time.time() * 1000) - 30 * MIN) // MIN * MIN
    # demand of a Monday 09:00 whatever the clock says (event times are the last half hour)
    scenario = sumo.grid_scenario(tmp_path / "sumo", seed=5, grid=4, start_ms=T0, hours=1)
    city = City.generate(5, "small")
    sumo.attach_loops(city, sumo.read_loops(scenario.net, scenario.additional),
                      sumo.NetGeometry.of(scenario.net))
    registry = city.write_registry(tmp_path / "registry.csv")
    env = component_env(private_stack, run_id, URBANBRAIN_REGISTRY_PATH=str(registry))
    ingest = Component("ingest", ["ingest"], env, tmp_path / "ingest.log").start()
    worker = Component("streams", ["streams", "worker", "-l", "info"], env,
                       tmp_path / "streams.log").start()
    components += [ingest, worker]
    ingest.wait_for_log("MQTT subscribed", timeout=30)
    worker.wait_for_log("Ready", timeout=60)

    settings = role_settings(private_stack, "simulator")
    res = run_simulation(settings, seed=5, city=city, speed=0, sim_duration_s=minutes * 60,
                         fmt="senml", start_ms=t0, incidents=False, sumo=True,
                         sumo_scenario=scenario, sumo_workdir=tmp_path / "sumo")
    assert res.progress.readings == len(city.sensors) * minutes
    xml = _e1(scenario.e1_output)
    loops = [s.sensor_id for s in city.of_kind("loop")[:48]]
    assert len(xml) == len(loops) * minutes

    influx = Influx.reader(private_stack, f"test_{run_id}")
    sel = (f"FROM traffic WHERE sensor =~ /^e1_/ AND time >= {t0}ms "
           f"AND time < {t0 + minutes * MIN}ms")

    def stored() -> int:
        try:
            return len(influx.rows(f"SELECT vehicle_count {sel}"))
        except Exception:  # noqa: BLE001 - the database is not there yet
            return 0

    wait_until(lambda: stored() >= len(xml), 90, what=f"{len(xml)} loop-minutes in InfluxDB")
    rows = influx.rows(f"SELECT vehicle_count, speed_kmh, occupancy_pct, flow_vph {sel} "
                       "GROUP BY sensor")
    got = {(r["sensor"], (r["time"] - t0) // 1000): r for r in rows}
    assert set(got) == set(xml)  # every loop-minute, once
    for key, x in xml.items():
        r = got[key]
        assert r["vehicle_count"] == x["nVehContrib"], key
        assert r["flow_vph"] == x["nVehContrib"] * 60, key
        # the simulator reports 0.1 km/h and 0.1 %: SUMO's value rounded
        assert abs(r["occupancy_pct"] - x["occupancy"]) <= 0.05 + 1e-5, key
        if x["speed"] < 0:
            assert r["speed_kmh"] is None, key  # no vehicle: no speed stored
        else:
            assert abs(r["speed_kmh"] - x["speed"] * 3.6) <= 0.05 + 1e-5, key

    # traffic_index of the windows the watermark closed: E1 flow, the lane's free flow
    def indices() -> list[dict]:
        try:
            return influx.rows(f"SELECT * FROM windows.traffic_index WHERE sensor =~ /^e1_/ AND "
                               f"\"window\" = '1m' AND time >= {t0}ms AND "
                               f"time < {t0 + 10 * MIN}ms")
        except Exception:  # noqa: BLE001
            return []

    ti = wait_until(lambda: len(indices()) >= len(loops) * 10 and indices(), 60,
                    what="traffic_index of 10 closed minutes")
    assert len(ti) == len(loops) * 10
    for r in ti:
        x = xml[(r["sensor"], (r["time"] - t0) // 1000)]
        assert r["flow_vph"] == x["nVehContrib"] * 60
        assert r["free_flow_kmh"] == 50.0
        if x["speed"] < 0:
            assert r["speed_kmh"] is None and r["congestion_index"] is None
        else:
            assert abs(r["speed_kmh"] - x["speed"] * 3.6) <= 0.05 + 1e-5
    assert np.mean([r["vehicle_count"] for r in rows]) > 1.0  # a busy grid, not empty loops
