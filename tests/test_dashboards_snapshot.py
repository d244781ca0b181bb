"""Snapshots worth sending to a manager: Grafana's units, tables after their
transformations, district outlines, the lines worth a colour, and a correct LOS panel.

The formatting cases are Grafana's own (packages/grafana-data/src/valueFormats tests) plus
the values the issue quotes; the LOS panel runs against a real InfluxDB.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest

from urbanbrain.dashboards import frames, geo, units
from urbanbrain.dashboards.build import build
from urbanbrain.influxql import InfluxQL
from urbanbrain.dashboards.snapshot import (
    Line, fetch, own_range, rank_lines, stat_text, stat_value, table_frame, threshold_colour,
    title_of,
)

MODELS = {m["uid"]: m for m in build().values()}


def panel(uid: str, title: str, kind: str | None = None) -> dict:
    return next(p for p in MODELS[uid]["panels"]
                if p["title"] == title and kind in (None, p["type"]))


# --------------------------------------------------------------------------- units

@pytest.mark.parametrize("unit, value, decimals, text", [
    # Grafana's valueFormats.test.ts
    ("ms", 0.0024, 4, "0.0024 ms"), ("ms", 100, 0, "100 ms"), ("ms", 1250, 2, "1.25 s"),
    ("ms", 10000086.123, 1, "2.8 hour"), ("ms", 1200, 0, "1 s"),
    ("megwatt", 1000, 3, "1.000 GW"),
    (None, 100, None, "100"), (None, 100.4, None, "100"), (None, 100.5, None, "101"),
    (None, 100, 1, "100.0"), (None, 100.37, 1, "100.4"), (None, 100.4, 2, "100.40"),
    (None, 186.123, -2, "186"),
    # what the issue saw raw, as Grafana shows it
    ("percentunit", 0.007977, None, "0.798%"), ("velocitykmh", 55.24, None, "55.2 km/h"),
    ("conμgm3", 6.61, None, "6.61 μg/m³"), ("short", 35100, None, "35.1 K"),
    ("short", 1_250_000, None, "1.25 Mil"), ("ops", 1246, None, "1.25K ops"),
    ("hertz", 0.0143, None, "14.3 mHz"), ("hertz", 50, None, "50 Hz"),
    ("kvolt", 10.35, None, "10.4 kV"), ("percent", 1.66, None, "1.66%"),
    ("pressurekpa", 466.2, None, "466 kPa"), ("celsius", 4.46, None, "4.46 °C"),
    ("s", 125, None, "2.08 min"), ("s", 0.25, None, "250 ms"),
    ("dateTimeAsIso", 0, None, "1970-01-01 00:00:00"),
    ("veh/h", 38940, None, "38940 veh/h"), ("count:veh/h", 38940, None, "38.9K veh/h"),
    ("suffix:NTU", 0.38, None, "0.380 NTU"), ("prefix:€", 12, None, "€12"),
])
def test_units_as_grafana_formats_them(unit, value, decimals, text) -> None:
    assert units.format_value(value, unit, decimals) == text


def test_tick_decimals_print_each_tick_apart() -> None:
    ticks = [0.3, 0.45, 0.6, 0.75]
    labels = [units.format_value(t, "mg/L", units.tick_decimals(0.15, "mg/L", t)) for t in ticks]
    assert labels == ["0.30 mg/L", "0.45 mg/L", "0.60 mg/L", "0.75 mg/L"]
    # scaled units: decimals in the scale each tick is shown in
    labels = [units.format_value(t, "ops", units.tick_decimals(600, "ops", t))
              for t in (0, 600, 1200, 1800)]
    assert labels == ["0 ops", "600 ops", "1.2K ops", "1.8K ops"]
    assert len({units.format_value(t, "hertz", units.tick_decimals(0.005, "hertz", t))
                for t in (49.995, 50.0, 50.005)}) == 3


# --------------------------------------------------------------------------- tables

def test_firing_now_table_applies_its_transformations() -> None:
    p = panel("urbanbrain-alerts", "Firing now", "table")
    series = [{"name": "alerts", "tags": {"rule": r, "severity": "warning", "district": "d",
                                          "sensor": s},
               "columns": ["time", "active", "summary", "value", "since"],
               "values": [[0, active, f"{r} at {s}", 1.5, since]]}
              for r, s, active, since in [("A", "s1", 1, 1_000), ("B", "s2", 0, 2_000),
                                          ("C", "s3", 1, 3_000)]]
    from urbanbrain.dashboards.snapshot import PanelData, cell_text

    data = PanelData(p, [series])
    fr = table_frame(data)
    assert "active" not in fr.columns and frames.TIME not in fr.columns
    assert fr.column("rule") == ["C", "A"]  # resolved one filtered out, newest first
    since = fr.column("since")[0]
    assert cell_text(data, "since", since) == "1970-01-01 00:00:03"  # a date, not epoch ms


def test_frames_sort_filter_limit() -> None:
    fr = frames.Frame(["k", "v"], [["a", 3], ["b", None], ["c", 10], ["d", 1]])
    out = frames.apply(fr, [{"id": "sortBy", "options": {"sort": [{"field": "v", "desc": True}]}},
                            {"id": "limit", "options": {"limitField": 3}}])
    assert out.rows == [["c", 10], ["a", 3], ["d", 1]]
    out = frames.apply(fr, [{"id": "filterByValue", "options": {
        "type": "exclude", "match": "any",
        "filters": [{"fieldName": "v", "config": {"id": "greater", "options": {"value": 2}}}]}}])
    assert [r[0] for r in out.rows] == ["b", "d"]


def test_threshold_colour_and_value_mapping() -> None:
    p = panel("urbanbrain-traffic", "Worst level of service")
    defaults = p["fieldConfig"]["defaults"]
    assert threshold_colour(defaults, 1) != threshold_colour(defaults, 6)
    from urbanbrain.dashboards.snapshot import PanelData

    data = PanelData(p, [[{"columns": ["time", "los_code"], "values": [[0, 6.0]]}]])
    assert stat_value(data) == 6.0 and stat_text(data, 6.0) == "F"


def test_titles_show_variable_values() -> None:
    assert title_of("AQI now by sensor ($standard, 5 min)", {"standard": "us"}) == \
        "AQI now by sensor (us, 5 min)"
    assert title_of("Load in ${district}", {"district": ".*"}) == "Load in All"
    assert own_range(MODELS["urbanbrain-pipeline"]) == "1h"
    assert own_range(MODELS["urbanbrain-alerts"]) == "24h"


# --------------------------------------------------------------------------- map

def test_district_outlines_contain_their_sensors() -> None:
    from urbanbrain.simulators.city import City

    city = City.generate(7, "small")
    pts: dict[str, list[tuple[float, float]]] = {}
    for s in city.sensors:
        pts.setdefault(s.district, []).append((s.lon, s.lat))
    outlines = geo.district_outlines(pts)
    assert set(outlines) == set(pts)
    import matplotlib.path as mpath

    for d, poly in outlines.items():
        path = mpath.Path(poly)
        assert all(path.contains_point(p) for p in pts[d]), d
        cx, cy = geo.centroid(poly)
        assert path.contains_point((cx, cy))
    assert geo.convex_hull([(0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0.5)]) == \
        [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]


# --------------------------------------------------------------------------- top-N

def test_the_accident_loop_gets_a_colour_among_many() -> None:
    ts = list(range(0, 60_000 * 60, 60_000))
    lines = [Line(f"tl-{i:04d}", ts, [50.0 + (i % 5) + 0.1 * (k % 3) for k in range(60)])
             for i in range(268)]
    lines[160] = Line("tl-0160", ts, [50.0] * 20 + [12.0] * 25 + [50.0] * 15)
    shown, rest = rank_lines(lines, top=8)
    assert len(shown) == 8 and len(rest) == 260
    assert shown[0].label == "tl-0160"
    few = lines[:5]
    assert rank_lines(few) == (few, [])


# --------------------------------------------------------------------------- LOS on real data

def _write(stack, db: str, lines: list[str], rp: str = "windows") -> None:
    """As the worker writes them: window points to their retention policy."""
    user, pw = stack.influx_login("writer")
    q = urllib.parse.urlencode({"db": db, "rp": rp, "precision": "ms", "u": user, "p": pw})
    req = urllib.request.Request(f"{stack.env()['URBANBRAIN_INFLUX_URL']}/write?{q}",
                                 data="\n".join(lines).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass


@pytest.mark.servers
def test_worst_level_of_service_reads_each_loops_latest_window(stack) -> None:
    """5-min windows close on event time: the newest can be more than 10 minutes old. The
    panel used to ask for the last 10 minutes of wall time and said "No data" (during an
    accident, too); it now takes each loop's latest window and shows the worst letter."""
    db = stack.provision_database("los_" + str(int(time.time() * 1000) % 10**8))
    now = int(time.time() * 1000)
    pts = []
    for k, minutes_ago in enumerate((40, 30, 20)):
        t = now - minutes_ago * 60_000
        pts.append(f"traffic_index,district=centrum,sensor=tl-1,window=5m los_code=1 {t}")
        # tl-2: free flow, then an accident that is still on in its latest window
        pts.append(f"traffic_index,district=centrum,sensor=tl-2,window=5m "
                   f"los_code={1 if k == 0 else 6} {t}")
        pts.append(f"traffic_index,district=centrum,sensor=tl-2,window=1m los_code=1 {t}")
    _write(stack, db, pts)
    client = InfluxQL(stack.env()["URBANBRAIN_INFLUX_URL"], db, *stack.influx_login("reader"))
    old = ("SELECT max(\"los_code\") FROM \"windows\".\"traffic_index\" WHERE time > now() - 6h AND "
           "\"window\" = '5m' AND time > now() - 10m")
    assert client.query(old) == []  # what the panel showed: No data
    p = panel("urbanbrain-traffic", "Worst level of service")
    data = fetch(p, client, {"district": ".*", "sensor": ".*"}, time_range="6h", interval="1m")
    assert not data.errors
    assert stat_text(data, stat_value(data)) == "F"
    assert threshold_colour(data.defaults, stat_value(data)) == "#F2495C"  # red
    json.dumps(p)  # the panel stays plain JSON for Grafana
