"""Dashboards as code: the committed JSON and provisioning files, checked without servers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from urbanbrain.dashboards.build import JSON_DIR, build, render
from urbanbrain.dashboards.queries import expand, panel_queries, variables_used
from urbanbrain.resolution import variable_query
from urbanbrain.dashboards.registry_points import points_from_csv, registry_points
from urbanbrain.registry import Registry, Sensor

ROOT = Path(__file__).resolve().parents[1]
PROV = ROOT / "dashboards" / "provisioning"
BUILTINS = {"timeFilter", "__interval", "interval", "__from", "__to"}
COMMITTED = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in JSON_DIR.glob("*.json")}


def _datasource() -> dict:
    doc = yaml.safe_load((PROV / "datasources" / "influxdb.yaml").read_text())
    (ds,) = doc["datasources"]
    return ds


def test_committed_json_is_what_the_generator_produces():
    models = build()
    assert set(COMMITTED) == set(models), "run python -m urbanbrain.dashboards.build"
    for name, model in models.items():
        assert (JSON_DIR / name).read_text(encoding="utf-8") == render(model), (
            f"{name} is stale: run python -m urbanbrain.dashboards.build")


def test_the_required_dashboards_exist_with_unique_uids():
    uids = [m["uid"] for m in COMMITTED.values()]
    assert len(uids) == len(set(uids))
    titles = {m["title"] for m in COMMITTED.values()}
    assert titles == {"City overview", "Traffic", "Environment", "Water", "Power", "Alerts",
                      "Pipeline health"}
    for m in COMMITTED.values():
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", m["uid"])
        ids = [p["id"] for p in m["panels"]]
        assert len(ids) == len(set(ids)), m["uid"]


def test_datasource_provisioning_uses_environment_and_fixed_uid():
    ds = _datasource()
    assert ds["uid"] == "urbanbrain-influx" and ds["type"] == "influxdb"
    assert ds["url"] == "${URBANBRAIN_INFLUX_URL}"
    assert ds["user"] == "${URBANBRAIN_INFLUX_READ_USER}"
    assert ds["jsonData"]["dbName"] == "${URBANBRAIN_INFLUX_DB}"
    assert ds["secureJsonData"]["password"] == "${URBANBRAIN_INFLUX_READ_PASSWORD}"
    assert "password" not in ds  # only the encrypted secureJsonData
    # compose.yaml gives Grafana every variable the file uses.
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    genv = compose["services"]["grafana"]["environment"]
    text = (PROV / "datasources" / "influxdb.yaml").read_text()
    for var in re.findall(r"\$\{(\w+)\}", text):
        assert var in genv, var


def test_dashboard_provider_reads_the_mounted_json():
    doc = yaml.safe_load((PROV / "dashboards" / "urbanbrain.yaml").read_text())
    (prov,) = doc["providers"]
    assert prov["type"] == "file"
    assert prov["options"]["path"] == "/var/lib/grafana/dashboards"
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    vols = compose["services"]["grafana"]["volumes"]
    assert "./dashboards/json:/var/lib/grafana/dashboards:ro" in vols
    assert "./dashboards/provisioning:/etc/grafana/provisioning:ro" in vols


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_every_panel_uses_the_provisioned_datasource(name):
    uid = _datasource()["uid"]
    m = COMMITTED[name]
    for var in m["templating"]["list"]:
        assert var["datasource"]["uid"] == uid
    for p in m["panels"]:
        assert p["datasource"]["uid"] == uid, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == uid, p["title"]
            assert t["rawQuery"] is True and t["query"].startswith("SELECT")


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_panels_do_not_overlap_and_fit_the_grid(name):
    cells: dict[tuple[int, int], str] = {}
    for p in COMMITTED[name]["panels"]:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_template_variables_used_are_defined(name):
    m = COMMITTED[name]
    defined: set[str] = set()
    for var in m["templating"]["list"]:
        # tag values, or a row of the resolution table (urbanbrain/resolution.py), hidden
        assert var["query"].startswith("SHOW TAG VALUES") or (
            var["query"] == variable_query(var["name"]) and var["hide"] == 2
            and not var["multi"] and not var["includeAll"]), var["name"]
        # a variable's own query may only use variables defined before it (chained)
        assert variables_used(var["query"]) <= defined | BUILTINS, var["name"]
        defined.add(var["name"])
    for pq in panel_queries(m):
        missing = variables_used(pq.query) - defined - BUILTINS
        assert not missing, f"{pq.panel}: undefined {missing}"
        # fully expandable, and time-bounded where it aggregates over time
        q = expand(pq.query, {v: ".*" for v in defined}, min_interval=pq.min_interval)
        assert not variables_used(q), q
        if "GROUP BY time(" in pq.query:
            assert "$timeFilter" in pq.query, pq.panel
    for p in m["panels"]:
        assert "$" not in json.dumps(p.get("fieldConfig", {})), p["title"]


def test_expand_follows_grafana():
    q = ('SELECT mean("x") FROM "m" WHERE $timeFilter AND "district" =~ /^$district$/ '
         'GROUP BY time($__interval)')
    out = expand(q, {"district": "a.b"}, time_range="2h", interval="1m", min_interval="10s")
    assert out == ('SELECT mean("x") FROM "m" WHERE time > now() - 2h AND "district" =~ '
                   r'/^a\.b$/ GROUP BY time(1m)')
    assert "GROUP BY time(5m)" in expand(q, {"district": ".*"}, min_interval="5m")
    assert r"/^(a|b\ c)$/" in expand(q, {"district": ["a", "b c"]})
    with pytest.raises(KeyError):
        expand(q, {})


def test_aqi_panels_use_the_standard_colours():
    import importlib

    aqi_cn = importlib.import_module("urbanbrain.streams.indices.aqi_cn")
    aqi_us = importlib.import_module("urbanbrain.streams.indices.aqi_us")

    env = next(m for m in COMMITTED.values() if m["uid"] == "urbanbrain-environment")
    by_title = {p["title"]: p for p in env["panels"]}
    for title, mod in (("AQI (US EPA) by district", aqi_us), ("AQI (China HJ 633) by district",
                                                              aqi_cn)):
        steps = by_title[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [s["color"] for s in steps] == list(mod.COLORS)
        assert [s["value"] for s in steps] == [None, 51, 101, 151, 201, 301]
        std = "us" if mod is aqi_us else "cn"
        assert f"\"standard\" = '{std}'" in by_title[title]["targets"][0]["query"]


def test_registry_points_carry_tags_and_coordinates(tmp_path):
    reg = Registry()
    reg["tl-1"] = Sensor("tl-1", "traffic", "loop", "centrum", 45.75, 4.85)
    reg["x y,z"] = Sensor("x y,z", "water", "water_main", "docks", 45.7, 4.8)
    reg["nowhere"] = Sensor("nowhere", "power", "substation", "centrum")  # no coordinates
    lines = registry_points(reg, 1_000)
    assert lines == [
        "sensors,district=centrum,domain=traffic,kind=loop,sensor=tl-1 lat=45.75,lon=4.85 1000",
        r"sensors,district=docks,domain=water,kind=water_main,sensor=x\ y\,z lat=45.7,lon=4.8 1000",
    ]
    path = tmp_path / "devices.csv"
    reg.save(path)
    assert points_from_csv(path, 1_000) == lines
