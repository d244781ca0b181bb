"""Incidents and faults: signatures where the ground truth says, nowhere else; exact counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from urbanbrain.simulators.city import City
from urbanbrain.simulators.engine import Simulation
from urbanbrain.simulators.faults import FaultConfig
from urbanbrain.simulators.incidents import (
    GroundTruthWriter, Schedule, make_incident, read_ground_truth,
)

T0 = 1767600000000  # Monday 2026-01-05 09:00 local (08:00 UTC), busy traffic
MIN = 60_000


@pytest.fixture(scope="module")
def city() -> City:
    return City.generate(21, "small")


def _pair(city: City, incidents, minutes: int = 60, faults=None):  # noqa: ANN001
    """Frames with and without the incidents (same seed, so normal noise is identical)."""
    a = Simulation(city, 5, start_ms=T0, schedule=Schedule(city, None, explicit=incidents),
                   faults=faults)
    b = Simulation(city, 5, start_ms=T0, schedule=Schedule.none(city))
    return list(a.frames(minutes)), list(b.frames(minutes))


def _loop(city: City) -> str:
    """A loop with at least 6 loops upstream."""
    return next(s.sensor_id for s in city.of_kind("loop")
                if s.road_class == "arterial" and len(city.upstream_chain(s.sensor_id, 6)) == 6)


def test_accident_collapses_speed_and_propagates_upstream(city: City) -> None:
    loop = _loop(city)
    inc = make_incident(city, "accident", T0 + 10 * MIN, 40 * 60, incident_id="acc-1",
                        where=loop)
    assert inc.sensors[0] == loop and inc.sensors[1:] == city.upstream_chain(loop, 6)
    with_, without = _pair(city, [inc])
    loops = city.of_kind("loop")
    li = {s.sensor_id: i for i, s in enumerate(loops)}
    at = with_[12].values["loop"]  # 2 minutes in
    late = with_[45].values["loop"]  # 35 minutes in
    i0 = li[loop]
    assert at[i0, 2] < 0.4 * without[12].values["loop"][i0, 2]  # speed collapse
    assert at[i0, 1] > 30 and at[i0, 1] > 2 * without[12].values["loop"][i0, 1]  # occupancy
    up5 = li[inc.sensors[5]]
    assert at[up5, 2] > 0.7 * without[12].values["loop"][up5, 2]  # not reached yet
    assert late[up5, 2] < 0.6 * without[45].values["loop"][up5, 2]  # reached later
    # nowhere else: every other loop is identical to the run without the incident
    others = [li[s.sensor_id] for s in loops if s.sensor_id not in inc.sensors]
    for fa, fb in zip(with_, without):
        assert np.array_equal(fa.values["loop"][others], fb.values["loop"][others])
    # after the end everything is back to normal for all loops
    assert np.array_equal(with_[55].values["loop"], without[55].values["loop"])


def test_pollution_burst_and_outage_signatures(city: City) -> None:
    district = city.district_ids[2]
    main = city.of_kind("water_main")[3].sensor_id
    sub = city.of_kind("substation")[1].sensor_id
    incs = [
        make_incident(city, "pollution", T0, 60 * 60, incident_id="pol", where=district),
        make_incident(city, "water_burst", T0 + 5 * MIN, 30 * 60, incident_id="wb", where=main),
        make_incident(city, "power_outage", T0 + 5 * MIN, 20 * 60, incident_id="po", where=sub),
    ]
    pol, wb, po = incs
    with_, without = _pair(city, incs)
    aq = {s.sensor_id: i for i, s in enumerate(city.of_kind("air_quality"))}
    mid = 30
    for sid in pol.sensors:
        assert with_[mid].values["air_quality"][aq[sid], 0] > 2.5 * without[mid].values[
            "air_quality"][aq[sid], 0]
    other_aq = [i for s, i in aq.items() if s not in pol.sensors]
    assert np.array_equal(with_[mid].values["air_quality"][other_aq],
                          without[mid].values["air_quality"][other_aq])

    wm = {s.sensor_id: i for i, s in enumerate(city.of_kind("water_main"))}
    a, b = with_[15].values["water_main"], without[15].values["water_main"]
    assert a[wm[main], 0] < b[wm[main], 0] - 150  # pressure drop
    assert a[wm[main], 1] > 2.5 * b[wm[main], 1]  # flow spike
    for sid in wb.sensors:
        assert a[wm[sid], 0] < b[wm[sid], 0] - 50
    other_wm = [i for s, i in wm.items() if s not in wb.sensors]
    assert np.array_equal(a[other_wm], b[other_wm])

    gi = city.index[sub]
    ps_i = gi - city.kind_slices["substation"].start
    f = with_[5]  # first tick of the outage: voltage collapsed, area not yet silent
    assert f.values["substation"][ps_i, 1] < 0.05 * without[5].values["substation"][ps_i, 1]
    assert f.values["substation"][ps_i, 0] == 0.0
    assert f.present.all()
    f = with_[10]
    silent = {city.sensors[i].sensor_id for i in np.flatnonzero(~f.present)}
    assert silent == set(po.sensors) - {sub} and silent
    assert with_[10].present[gi]  # the substation itself still reports
    assert with_[26].present.all()  # power back


def test_schedule_is_deterministic_and_ground_truth_round_trips(city: City,
                                                                tmp_path: Path) -> None:
    s1, s2 = Schedule(city, 99), Schedule(city, 99)
    day = T0 // 86_400_000
    a = s1.between(day * 86_400_000, (day + 3) * 86_400_000)
    b = s2.between(day * 86_400_000, (day + 3) * 86_400_000)
    assert [i.to_record() for i in a] == [i.to_record() for i in b] and len(a) >= 5
    assert {i.kind for i in a} >= {"accident", "congestion"}
    for suffix in ("jsonl", "csv"):
        w = GroundTruthWriter(tmp_path / f"gt.{suffix}")
        for inc in a:
            w.write(inc)
        w.close()
        back = read_ground_truth(tmp_path / f"gt.{suffix}")
        assert [i.to_record() for i in back] == [json.loads(json.dumps(i.to_record())) for i in a]


def test_faults_are_applied_and_counted(city: City) -> None:
    cfg = FaultConfig(stuck_per_sensor_day=2.0, dropout_per_sensor_day=2.0,
                      skew_per_sensor_day=2.0, spike_prob=1e-3, duplicate_prob=0.01,
                      malformed_prob=0.01)
    events = []
    sim = Simulation(city, 3, start_ms=T0, schedule=Schedule.none(city), faults=cfg,
                     on_event=events.append)
    frames = list(sim.frames(120))
    st = sim.faults.stats
    assert st.stuck > 0 and st.dropout > 0 and st.skew > 0 and st.spikes > 0
    kinds = {e.kind for e in events}
    assert {"fault.stuck", "fault.dropout", "fault.skew", "fault.spike"} <= kinds
    # a stuck sensor repeats exactly the same values while the fault lasts
    w = next(e for e in events if e.kind == "fault.stuck" and e.end_ms - e.start_ms >= 5 * MIN
             and e.start_ms <= T0 + 100 * MIN)
    gi = city.index[w.epicentre]
    kind = city.sensors[gi].kind
    li = gi - city.kind_slices[kind].start
    rows = [f.values[kind][li].tolist() for f in frames if w.start_ms <= f.t_ms < w.end_ms
            and f.present[gi]]
    assert len(rows) >= 2 and all(r == rows[0] for r in rows)
    skew = next(e for e in events if e.kind == "fault.skew" and e.start_ms <= T0 + 100 * MIN)
    f = next(f for f in frames if f.t_ms >= skew.start_ms)
    assert f.ts[city.index[skew.epicentre]] - f.t_ms == skew.details["offset_ms"]
    assert 45_000 <= abs(skew.details["offset_ms"]) <= 240_000
    # message faults: exact counts
    msgs = [("t", b'{"a": 1}', 1)] * 5000
    out = sim.faults.mangle(msgs)
    assert len(out) == 5000 + st.duplicated_messages
    bad = [m for m in out if m[1] != b'{"a": 1}']
    assert len(bad) == st.malformed_messages > 0
    assert sum(m[2] for m in out) == 5000 - st.malformed_messages


def test_voltage_frequency_and_backhaul_incidents(city: City) -> None:
    subs = city.of_kind("substation")
    district = city.district_ids[1]
    incs = [
        make_incident(city, "voltage_excursion", T0 + 5 * MIN, 20 * 60, incident_id="vu",
                      where=subs[0].sensor_id, direction="under"),
        make_incident(city, "voltage_excursion", T0 + 5 * MIN, 20 * 60, incident_id="vo",
                      where=subs[1].sensor_id, direction="over"),
        make_incident(city, "frequency_excursion", T0 + 30 * MIN, 10 * 60, incident_id="fe"),
        make_incident(city, "backhaul_loss", T0 + 5 * MIN, 20 * 60, incident_id="bl",
                      where=district),
    ]
    vu, vo, fe, bl = incs
    assert vu.details == {"direction": "under", "deviation": -0.09} and vu.sensors == [
        subs[0].sensor_id]
    assert fe.district == "" and fe.sensors == [s.sensor_id for s in subs]
    assert bl.sensors == [s.sensor_id for s in city.in_district(district, "substation")]
    with_, without = _pair(city, incs)
    ps = {s.sensor_id: i for i, s in enumerate(subs)}
    a, b = with_[10].values["substation"], without[10].values["substation"]
    assert a[ps[vu.epicentre], 1] == pytest.approx(b[ps[vu.epicentre], 1] * 0.91, abs=2e-3)
    assert a[ps[vo.epicentre], 1] == pytest.approx(b[ps[vo.epicentre], 1] * 1.09, abs=2e-3)
    others = [i for s, i in ps.items() if s not in (vu.epicentre, vo.epicentre)]
    assert np.array_equal(a[others], b[others])  # nothing else changes
    f = with_[35].values["substation"][:, 2]
    assert np.allclose(f - without[35].values["substation"][:, 2], -0.3, atol=2e-3)
    silent = {city.sensors[i].sensor_id for i in np.flatnonzero(~with_[10].present)}
    assert silent == set(bl.sensors)
    assert with_[26].present.all()
    with pytest.raises(ValueError):
        make_incident(city, "voltage_excursion", T0, 60, incident_id="x", direction="sideways")


def test_standard_week_history_and_incident_plan() -> None:
    from urbanbrain.simulators.incidents import KINDS
    from urbanbrain.simulators.scenario import STANDARD_WEEK, generate_offline

    sc = STANDARD_WEEK
    assert sc.history_days == 7 and sc.data_start_ms == sc.start_ms - 7 * 86_400_000
    kinds = {s.kind for s in sc.incidents}
    assert kinds == set(KINDS)  # every kind of incident the starter rules answer for
    # the severe episode is a separate, stronger pollution incident
    assert max(s.severity for s in sc.incidents if s.kind == "pollution") >= 3
    data = generate_offline(sc, days=0.05)
    assert data.scored_from_ms == sc.start_ms
    assert int(data.readings["ts"].min()) == sc.data_start_ms  # the history is included
    # history: faults only, no incidents
    assert all(i.kind.startswith("fault.") for i in data.ground_truth
               if i.start_ms < sc.start_ms)
