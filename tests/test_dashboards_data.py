"""Every panel query of every dashboard, run against a real InfluxDB fed by the real pipeline.

Real servers (LocalStack in this module's own tmp dir), real ingest and streams workers,
the simulated city pushed through MQTT (80 simulated minutes, so at least one hour closes
and the hourly tier has data); the registry written as `sensors` points (what the lead
calls at startup) and a few alert transitions (rules/formatters.influx_line). Then each
query, with Grafana's variables expanded for a 1 h, a 7 d and a 90 d range, must return a
non-empty series whose every column holds a value, and read the resolution its range asks
for (urbanbrain/resolution.py), checked by the policy and measurement names it queries: a
panel naming a measurement or field nothing writes fails here, and so does a 7-day panel
that reads raw points.
"""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import component_env, role_settings, make_stack
from harness import Component, wait_until

from urbanbrain.dashboards.build import build
from urbanbrain.dashboards.queries import (
    InfluxQL,
    QueryError,
    expand,
    panel_queries,
    resolve_variables,
    seconds,
)
from urbanbrain.dashboards.registry_points import write_registry_points
from urbanbrain.resolution import tier_for
from urbanbrain.localstack import LocalStack
from urbanbrain.registry import Registry
from urbanbrain.retention import MEASUREMENT_POLICY, POLICY_NAMES
from urbanbrain.rules.alerts import AlertEvent
from urbanbrain.rules.formatters import influx_line
from urbanbrain.simulators.city import City
from urbanbrain.simulators.runner import run_simulation

pytestmark = pytest.mark.servers

RUN_ID = "dash" + uuid.uuid4().hex[:6]
MODELS = build()


def check(series: list[dict]) -> str | None:
    """Why a result cannot back a panel, or None: it needs a series, and every column a value."""
    if not series:
        return "no series (measurement, field or tag filter matches nothing)"
    filled: dict[str, bool] = {}
    for s in series:
        for i, col in enumerate(s["columns"]):
            if col == "time":
                continue
            filled[col] = filled.get(col, False) or any(r[i] is not None for r in s["values"])
    empty = sorted(c for c, ok in filled.items() if not ok)
    return f"columns without any value: {empty}" if empty else None


def _alert_lines(reg: Registry, now_ms: int) -> list[str]:
    """Firing and resolved transitions of a few rules, within the last half hour."""
    lines = []
    sensors = sorted(reg.values(), key=lambda s: s.sensor_id)
    rules = [("TrafficJam", "warning", "traffic"), ("AirQualityPoor", "critical", "environment"),
             ("PressureLow", "critical", "water"), ("VoltageSag", "warning", "power")]
    for k, (name, severity, domain) in enumerate(rules):
        picked = [s for s in sensors if s.domain == domain][:3]
        for j, s in enumerate(picked):
            start = now_ms - 30 * 60_000 + (k * 3 + j) * 60_000
            labels = {"alertname": name, "severity": severity, "district": s.district,
                      "sensor": s.sensor_id}
            fp = f"{name}-{s.sensor_id}"
            ann = {"summary": f"{name} at {s.sensor_id}"}
            lines.append(influx_line(AlertEvent("firing", f"city/{name}", labels, ann, 42.0 + j,
                                                start, None, fp, at=start)))
            if j < 2:  # the third stays firing
                end = start + (j + 1) * 90_000
                lines.append(influx_line(AlertEvent("resolved", f"city/{name}", labels, ann,
                                                    40.0, start, end, fp, at=end)))
    return lines


@pytest.fixture(scope="module")
def city_data(tmp_path_factory: pytest.TempPathFactory):
    """(InfluxQL client, registry) after the pipeline processed 40 simulated minutes."""
    wd = tmp_path_factory.mktemp("dashdata")
    stack = make_stack(wd / "stack").start()
    comps: list[Component] = []
    try:
        reg_path = wd / "devices.csv"
        City.generate(42, "tiny").write_registry(reg_path)
        env = component_env(stack, RUN_ID, URBANBRAIN_REGISTRY_PATH=str(reg_path),
                            URBANBRAIN_DATA_DIR=str(wd / "var"))
        streams = Component("streams", ["streams", "worker", "-l", "info"], env,
                            wd / "streams.log").start()
        comps.append(streams)
        ingest = Component("ingest", ["ingest"], env, wd / "ingest.log").start()
        comps.append(ingest)
        ingest.wait_for_log("MQTT connected", timeout=30)
        streams.wait_for_log("Ready", timeout=60)
        now = int(time.time() * 1000)
        res = run_simulation(
            role_settings(stack, "simulator"), seed=42, size="tiny", rate=3000,
            speed=0, sim_duration_s=SIM_MIN * 60, start_ms=now - SIM_MIN * 60_000, fmt="senml",
            registry_path=reg_path, faults="malformed=0.01")
        assert res.progress.readings > 8000
        # as Grafana reads it: the provisioned datasource's read-only user
        client = InfluxQL(env["URBANBRAIN_INFLUX_URL"], env["URBANBRAIN_INFLUX_DB"],
                          *stack.influx_login("reader"))
        wait_until(lambda: _has(client, "windows", "district_1m")
                   and _has(client, "longterm", "district_1h"), 90,
                   what="1-min and hourly roll-ups in InfluxDB")
        # What the lead calls at startup: the registry as `sensors` points for the Geomap.
        writer, writer_pw = stack.influx_login("writer")
        assert write_registry_points(reg_path, env["URBANBRAIN_INFLUX_URL"],
                                     env["URBANBRAIN_INFLUX_DB"], username=writer,
                                     password=writer_pw) == 120
        reg = Registry.load(reg_path)
        body = "\n".join(_alert_lines(reg, now)).encode()
        req = urllib.request.Request(
            f"{env['URBANBRAIN_INFLUX_URL']}/write?db={env['URBANBRAIN_INFLUX_DB']}"
            f"&rp=alerts&precision=ms&u={writer}&p={writer_pw}", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass
        yield client, reg
    finally:
        for c in reversed(comps):
            c.stop()
        stack.stop()


def _has(client: InfluxQL, rp: str, measurement: str) -> bool:
    try:
        return bool(client.query(f'SELECT count(*) FROM "{rp}"."{measurement}"'))
    except QueryError:
        return False


SIM_MIN = 80
RANGES = ("1h", "7d", "90d")
#: measurements with a raw, a 5-min and an hourly resolution (the rest are events, counters
#: and metadata: alerts, pipeline, deadletters, sensors)
TIERED = {m for m, rp in MEASUREMENT_POLICY.items() if rp in ("raw", "windows", "longterm")
          and m not in ("sensors", "resolution")}
_FROM = re.compile(r'FROM\s+"([^"]+)"\."([^"]+)"')


def sources(query: str) -> list[tuple[str, str]]:
    """(policy, measurement) of every FROM of an expanded query (subqueries included)."""
    return _FROM.findall(query)


def resolution_problem(panel_type: str, query: str, time_range: str) -> str | None:
    """Why an expanded query reads the wrong resolution for ``time_range``, or None."""
    srcs = sources(query)
    if not srcs:
        return "names no policy"
    tier = tier_for(int(seconds(time_range) * 1000)).name
    now_panel = panel_type != "timeseries"  # stat, table, bargauge, geomap: values "now"
    for rp, meas in srcs:
        if rp not in POLICY_NAMES:
            return f"unknown policy {rp!r}"
        if MEASUREMENT_POLICY.get(meas, rp) != rp and not (
                rp == "longterm" and meas in ("traffic_index", "aqi", "water_index",
                                              "power_index")):
            return f"{meas} read from {rp}, written to {MEASUREMENT_POLICY.get(meas)}"
        if meas not in TIERED:
            continue
        hourly = rp == "longterm"
        window = re.search(r'"window" = \'(\w+)\'', query)
        if tier != "fine" and rp == "raw":
            return f"a {time_range} panel reads raw points ({meas})"
        if tier == "fine" and hourly:
            return f"a {time_range} panel reads hourly points ({meas})"
        if tier == "coarse" and not now_panel and not hourly:
            return f"a {time_range} panel over time reads {rp}.{meas}, not hourly data"
        if hourly and window and window[1] != "1h":
            return f"longterm {meas} with window {window[1]}"
        if tier == "mid" and not now_panel and meas.startswith("agg_sensor") and \
                meas != "agg_sensor_5m":
            return f"a {time_range} sensor panel reads {meas}, not the 5-min windows"
    return None


def _run_all(client: InfluxQL, reg: Registry, time_range: str = "1h"
             ) -> dict[str, str]:
    """(dashboard/panel/ref → problem) for every panel query, with real variable values."""
    problems: dict[str, str] = {}
    for model in MODELS.values():
        # A real district and a real sensor of it (first values the variable queries return).
        values = resolve_variables(model, client, pick_first=True, time_range=time_range)
        for pq in panel_queries(model):
            key = f"{time_range} / {pq.dashboard} / {pq.panel} / {pq.ref}"
            q = expand(pq.query, values, time_range=time_range, interval="auto",
                       min_interval=pq.min_interval)
            why = resolution_problem(pq.panel_type, q, time_range)
            if why:
                problems[key] = f"{why}\n    {q}"
                continue
            try:
                why = check(client.query(q))
            except QueryError as exc:
                why = str(exc)
            if why:
                problems[key] = f"{why}\n    {q}"
    return problems


def test_every_panel_query_returns_data(city_data):
    client, reg = city_data
    last: dict[str, str] = {}

    def all_pass() -> bool:
        nonlocal last
        last = {k: v for r in RANGES for k, v in _run_all(client, reg, r).items()}
        return not last

    # Counters need two report intervals of the pipeline before rates exist; poll briefly.
    deadline = time.monotonic() + 45
    while not all_pass() and time.monotonic() < deadline:
        time.sleep(2)
    assert not last, "panels without data:\n" + "\n".join(f"{k}: {v}" for k, v in last.items())
    n = sum(1 for m in MODELS.values() for _ in panel_queries(m))
    assert n >= 60


def test_points_land_in_their_policies(city_data):
    """Raw readings in raw, windows in windows, hourly windows and roll-ups in longterm, and
    nowhere else: the policy decides how long each is kept."""
    client, _ = city_data
    expected = {("raw", "traffic"), ("windows", "agg_sensor_1m"), ("windows", "agg_sensor_5m"),
                ("windows", "district_1m"), ("windows", "city_1m"),
                ("windows", "traffic_index"), ("longterm", "agg_sensor_1h"),
                ("longterm", "traffic_index"), ("longterm", "district_1h"),
                ("longterm", "city_1h"), ("longterm", "sensors"), ("pipeline", "pipeline"),
                ("alerts", "alerts"), ("deadletters", "deadletters")}
    for rp, meas in expected:
        assert _has(client, rp, meas), f"{rp}.{meas} is empty"
    for rp, meas in (("raw", "agg_sensor_1m"), ("raw", "district_1m"), ("raw", "pipeline"),
                     ("raw", "alerts"), ("windows", "traffic"), ("windows", "agg_sensor_1h"),
                     ("longterm", "traffic"), ("longterm", "agg_sensor_1m"),
                     ("windows", "district_1h"), ("raw", "sensors")):
        assert not _has(client, rp, meas), f"{rp}.{meas} holds points"
    hourly = client.query('SELECT * FROM "longterm"."traffic_index" GROUP BY "window"')
    assert {s["tags"]["window"] for s in hourly} == {"1h"}
    # an hour is stamped at its start, and is whole: 60 minutes' counts of a sensor
    rows = client.query('SELECT "speed_kmh_count" FROM "longterm"."agg_sensor_1h" '
                        'GROUP BY "sensor" LIMIT 1')
    assert all(r[0] % 3_600_000 == 0 for s in rows for r in s["values"])


def test_resolution_variables_follow_the_time_range(city_data):
    client, _ = city_data
    traffic = MODELS["traffic.json"]
    for time_range, rp_s, m_traffic in (("1h", "raw", "traffic"),
                                        ("7d", "windows", "agg_sensor_5m"),
                                        ("30d", "longterm", "agg_sensor_1h"),
                                        ("90d", "longterm", "agg_sensor_1h")):
        values = resolve_variables(traffic, client, pick_first=True, time_range=time_range)
        assert (values["rp_s"], values["m_traffic"]) == (rp_s, m_traffic), time_range
        tier = tier_for(int(seconds(time_range) * 1000)).values
        assert {k: values[k] for k in tier if k in values} == \
            {k: v for k, v in tier.items() if k in values}
        assert len([k for k in tier if k in values]) == 8


def test_variables_resolve_to_real_values(city_data):
    client, reg = city_data
    districts = {s.district for s in reg.values()}
    for model in MODELS.values():
        values = resolve_variables(model, client, pick_first=True)
        if "district" in values:
            assert values["district"] in districts
        if "sensor" in values:
            s = reg[values["sensor"]]
            assert s.district == values["district"]
        if "standard" in values:
            assert values["standard"] in ("cn", "us")


def test_checker_rejects_queries_on_data_nobody_writes(city_data):
    client, _ = city_data
    good = 'SELECT mean("speed_kmh") FROM "traffic" WHERE time > now() - 2h GROUP BY time(1m)'
    assert check(client.query(good)) is None
    for bad in ('SELECT mean("speed_mph") FROM "traffic" WHERE time > now() - 2h',
                'SELECT mean("aqi") FROM "air_quality" WHERE time > now() - 2h',
                "SELECT last(\"aqi\") FROM \"windows\".\"aqi\" WHERE \"standard\" = 'eu'",
                'SELECT last("speed_kmh"), last("nope") FROM "traffic"'):
        assert check(client.query(bad)) is not None, bad


def test_resolution_check_rejects_the_wrong_tier():
    raw = 'SELECT mean("speed_kmh") FROM "raw"."traffic" WHERE time > now() - 7d'
    assert resolution_problem("timeseries", raw, "1h") is None
    assert "reads raw points" in resolution_problem("timeseries", raw, "7d")
    assert "reads raw points" in resolution_problem("stat", raw, "90d")
    minute = 'SELECT mean("x") FROM "windows"."district_1m" WHERE time > now() - 90d'
    assert "not hourly" in resolution_problem("timeseries", minute, "90d")
    assert resolution_problem("stat", minute, "90d") is None  # a value "now"
    hourly = 'SELECT mean("x") FROM "longterm"."district_1h" WHERE time > now() - 1h'
    assert "hourly" in resolution_problem("timeseries", hourly, "1h")
    assert "written to" in resolution_problem(
        "timeseries", 'SELECT * FROM "raw"."district_1m"', "1h")
    assert resolution_problem("timeseries", 'SELECT * FROM "traffic"', "1h") == \
        "names no policy"


def test_snapshot_renders_png_per_dashboard(city_data, tmp_path: Path):
    from urbanbrain.dashboards.snapshot import render_all

    client, _ = city_data
    paths = render_all(MODELS, client, tmp_path, time_range="7d")
    assert len(paths) == len(MODELS)
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, p


def test_snapshot_values_read_as_grafana_shows_them(city_data):
    """Panels of the real pipeline's data, as the snapshot draws them: Grafana's units, the
    LOS letter, and voltage deviations against each substation's own nominal voltage."""
    from urbanbrain.dashboards import frames, geo
    from urbanbrain.dashboards.snapshot import fetch, stat_text, stat_value

    client, reg = city_data

    def data(uid: str, title: str):
        model = next(m for m in MODELS.values() if m["uid"] == uid)
        p = next(p for p in model["panels"] if p["title"] == title)
        values = resolve_variables(model, client)
        return fetch(p, client, values, time_range="2h", interval="1m")

    congestion = data("urbanbrain-traffic", "City congestion")
    assert stat_text(congestion, stat_value(congestion)).endswith("%")
    los = data("urbanbrain-traffic", "Worst level of service")
    assert stat_text(los, stat_value(los)) in tuple("ABCDEF")
    # a healthy grid of 10 and 20 kV substations: a few percent, not 11 kV's ~85 %
    volt = data("urbanbrain-power", "Voltage deviation")
    assert stat_value(volt) is not None and abs(stat_value(volt)) < 8
    speed = data("urbanbrain-traffic", "City mean speed")
    assert stat_text(speed, stat_value(speed)).endswith(" km/h")
    sensors = data("urbanbrain-city", "Sensors")
    fr = frames.from_results(sensors.results)
    pts: dict[str, list[tuple[float, float]]] = {}
    for row in fr.rows:
        r = dict(zip(fr.columns, row))
        pts.setdefault(r["district"], []).append((r["lon"], r["lat"]))
    assert set(geo.district_outlines(pts)) == {s.district for s in reg.values()}
