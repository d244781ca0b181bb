"""Every panel query of every dashboard, run against a real InfluxDB fed by the real pipeline.

Real servers (LocalStack in this module's own tmp dir), real ingest and streams workers,
the simulated city pushed through MQTT; the registry written as `sensors` points (what the
lead calls at startup) and a few alert transitions (rules/formatters.influx_line), since no
alert evaluator writes to InfluxDB yet. Then each query, with Grafana's variables expanded,
must return a non-empty series whose every column holds a value: a panel naming a
measurement or field nothing writes fails here.
"""

from __future__ import annotations

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
)
from urbanbrain.dashboards.registry_points import write_registry_points
from urbanbrain.localstack import LocalStack
from urbanbrain.registry import Registry
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
            speed=0, sim_duration_s=40 * 60, start_ms=now - 40 * 60_000, fmt="senml",
            registry_path=reg_path, faults="malformed=0.01")
        assert res.progress.readings > 4000
        # as Grafana reads it: the provisioned datasource's read-only user
        client = InfluxQL(env["URBANBRAIN_INFLUX_URL"], env["URBANBRAIN_INFLUX_DB"],
                          *stack.influx_login("reader"))
        wait_until(lambda: _has(client, "district_1m"), 60, what="roll-ups in InfluxDB")
        # What the lead calls at startup: the registry as `sensors` points for the Geomap.
        writer, writer_pw = stack.influx_login("writer")
        assert write_registry_points(reg_path, env["URBANBRAIN_INFLUX_URL"],
                                     env["URBANBRAIN_INFLUX_DB"], username=writer,
                                     password=writer_pw) == 120
        reg = Registry.load(reg_path)
        body = "\n".join(_alert_lines(reg, now)).encode()
        req = urllib.request.Request(
            f"{env['URBANBRAIN_INFLUX_URL']}/write?db={env['URBANBRAIN_INFLUX_DB']}"
            f"&precision=ms&u={writer}&p={writer_pw}", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass
        yield client, reg
    finally:
        for c in reversed(comps):
            c.stop()
        stack.stop()


def _has(client: InfluxQL, measurement: str) -> bool:
    try:
        return bool(client.query(f'SELECT count(*) FROM "{measurement}"'))
    except QueryError:
        return False


def _run_all(client: InfluxQL, reg: Registry) -> dict[str, str]:
    """(dashboard/panel/ref → problem) for every panel query, with real variable values."""
    problems: dict[str, str] = {}
    for model in MODELS.values():
        # A real district and a real sensor of it (first values the variable queries return).
        values = resolve_variables(model, client, pick_first=True)
        for pq in panel_queries(model):
            key = f"{pq.dashboard} / {pq.panel} / {pq.ref}"
            q = expand(pq.query, values, time_range="2h", interval="1m",
                       min_interval=pq.min_interval)
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
        last = _run_all(client, reg)
        return not last

    # Counters need two report intervals of the pipeline before rates exist; poll briefly.
    deadline = time.monotonic() + 45
    while not all_pass() and time.monotonic() < deadline:
        time.sleep(2)
    assert not last, "panels without data:\n" + "\n".join(f"{k}: {v}" for k, v in last.items())
    n = sum(1 for m in MODELS.values() for _ in panel_queries(m))
    assert n >= 60


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
                "SELECT last(\"aqi\") FROM \"aqi\" WHERE \"standard\" = 'eu'",
                'SELECT last("speed_kmh"), last("nope") FROM "traffic"'):
        assert check(client.query(bad)) is not None, bad


def test_snapshot_renders_png_per_dashboard(city_data, tmp_path: Path):
    from urbanbrain.dashboards.snapshot import render_all

    client, _ = city_data
    paths = render_all(MODELS, client, tmp_path, time_range="2h")
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
