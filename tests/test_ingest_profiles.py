"""Device profiles: vendor payloads → canonical readings without code, partial acceptance.

The three sample vendor shapes (flat with vendor names and milli-units, nested with an ISO
timestamp and a device type, sentinel values) are held to their exact readings and dead
letters by their own test files, run here through the normaliser the bridge runs; the last
test sends them through the real pipeline into InfluxDB.
"""

from __future__ import annotations

import shutil
import time
import zlib
from pathlib import Path

import orjson
import pytest
from conftest import INJECTOR, INJECTOR_PASSWORD, component_env
from harness import Component, Influx, Publisher, read_topic, wait_until
from typer.testing import CliRunner
from urbanbrain.ingest.normalise import Normaliser
from urbanbrain.ingest.profiles import ProfileWatcher, check_text, loads
from urbanbrain.ingest.profiles.testing import run_tests

from urbanbrain.cli import app
from urbanbrain.settings import Settings

SAMPLES = Path(__file__).resolve().parents[1] / "ingest" / "profiles" / "samples"
SHAPES = ("acme-flat", "metro-nested", "loopx-sentinel")
NOW = 1767596430000  # 2026-01-05T07:00:30Z


def test_each_sample_shape_gives_its_exact_readings_and_dead_letters() -> None:
    results = run_tests([str(SAMPLES / s / "profile_test.yaml") for s in SHAPES])
    assert [Path(r.file).parent.name for r in results] == list(SHAPES)
    for r in results:
        assert not r.problems, r.problems
        assert r.tests and all(t.ok for t in r.tests), [(t.name, t.failures) for t in r.tests]
    assert sum(len(r.tests) for r in results) == 11


def test_the_profile_test_runner_fails_a_wrong_expectation(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "acme-flat" / "profile.yaml", tmp_path / "profile.yaml")
    shutil.copy(SAMPLES / "acme-flat" / "payload.json", tmp_path / "payload.json")
    text = (SAMPLES / "acme-flat" / "profile_test.yaml").read_text()
    (tmp_path / "wrong_test.yaml").write_text(
        text.replace("speed_kmh: 50.004", "speed_kmh: 50.0").replace("field: occ_pm", "field: occ"))
    [res] = run_tests([str(tmp_path / "wrong_test.yaml")])
    failures = {t.name: t.failures for t in res.tests}
    assert any("speed_kmh = 50.004000000000005, expected 50.0" in f
               for f in failures["a flat reading in milli-units"])
    assert any("no dead letter like" in f for f in failures["an implausible occupancy costs only itself"])
    r = CliRunner().invoke(app, ["devices", "test", str(tmp_path / "wrong_test.yaml")])
    assert r.exit_code == 1 and "FAILED a flat reading in milli-units" in r.output


def test_normalised_readings_of_the_sentinel_shape() -> None:
    """The same shape asserted directly, reading dicts and dead letters whole."""
    ps = loads((SAMPLES / "loopx-sentinel" / "profile.yaml").read_text())
    norm = Normaliser(Settings(), profiles=ps)
    payload = orjson.dumps({"begin_ms": NOW - 30_000, "nVehContrib": 5, "speed": 900,
                            "occupancy": -1, "flow": 300, "extra": 1})
    readings, dead = norm.process("loopx/centrum/lx-1", payload, NOW)
    # src: the topic it came through (the source whose progress absence is judged by)
    assert readings == [{"sensor_id": "lx-1", "domain": "traffic", "kind": "loop",
                         "district": "centrum", "ts": NOW - 30_000, "recv": NOW,
                         "metrics": {"vehicle_count": 5.0, "flow_vph": 300.0},
                         "lat": None, "lon": None,
                         "src": zlib.crc32(b"loopx/centrum/lx-1")}]
    assert [(d["reason"], d.get("metric"), d.get("field"), d.get("profile"), d["sensor_id"])
            for d in dead] == [("out_of_range", "speed_kmh", "speed", "loopx-e1", "lx-1")]
    assert dead[0]["payload"] == payload.decode() and norm.absent == 1  # occupancy -1
    # unknown fields are ignored by default (this profile says nothing)
    assert norm.rejected == {"out_of_range": 1}


def test_partial_acceptance_without_a_profile_and_the_reject_policy() -> None:
    payload = b'{"ts": 1767596400000, "metrics": {"vehicle_count": 4, "speed_kmh": -3.6}}'
    readings, dead = Normaliser(Settings()).process("city/c/traffic/loop/tl-1", payload, NOW)
    assert [r["metrics"] for r in readings] == [{"vehicle_count": 4.0}]
    assert [(d["reason"], d["metric"], d["sensor_id"]) for d in dead] == [
        ("out_of_range", "speed_kmh", "tl-1")]
    readings, dead = Normaliser(Settings(ingest_partial="reject")).process(
        "city/c/traffic/loop/tl-1", payload, NOW)
    assert readings == [] and [d["reason"] for d in dead] == ["out_of_range"]
    assert "metric" not in dead[0]


BROKEN = """\
profiles:
  - name: broken
    match:
      topic: vendor/x/+/{id}
    domain: trafic
    metrics:
      vehicle_cnt: cnt
      speed_kmh: {field: spd, unit: furlong/fortnight, scale: 0}
    timestamp: {field: t, format: epoch_minutes}
    unknown_fields: drop
  - match: {}
    metrics: {speed_kmh: /a//b}
"""


def test_checker_reports_each_problem_with_file_line_and_column(tmp_path: Path) -> None:
    _, problems = check_text(BROKEN, "vendor.yaml")
    got = [str(p) for p in problems]
    expect = [
        "vendor.yaml:4:14: profiles[0].match.topic: write the pattern with {name} levels and "
        "{*}, not MQTT + and #",
        "vendor.yaml:5:13: profiles[0].domain: unknown domain 'trafic' (did you mean 'traffic'?)",
        "vendor.yaml:7:7: profiles[0].metrics.vehicle_cnt: unknown metric 'vehicle_cnt' "
        "(did you mean 'vehicle_count'?)",
        "vendor.yaml:8:37: profiles[0].metrics.speed_kmh.unit: 'furlong/fortnight' is not a "
        "unit of speed_kmh (km/h)",
        "vendor.yaml:8:63: profiles[0].metrics.speed_kmh.scale: scale 0 would make every value 0",
        "vendor.yaml:9:35: profiles[0].timestamp.format: format is one of iso8601, epoch_s, "
        "epoch_ms, epoch_us, epoch_ns or a strptime pattern",
        "vendor.yaml:10:21: profiles[0].unknown_fields: 'drop' is not one of ignore, dead_letter",
        "vendor.yaml:11:5: profiles[1]: a profile needs a name",
        "vendor.yaml:11:12: profiles[1].match: a profile must match a topic pattern or a "
        "device type (match.topic, match.device_type)",
        "vendor.yaml:12:26: profiles[1].metrics.speed_kmh.field: field '/a//b' has an empty step",
    ]
    assert got == expect
    (tmp_path / "vendor.yaml").write_text(BROKEN)
    r = CliRunner().invoke(app, ["devices", "check", str(tmp_path / "vendor.yaml")])
    assert r.exit_code == 1
    assert f"{tmp_path / 'vendor.yaml'}:5:13: profiles[0].domain" in r.output
    assert "Traceback" not in r.output and "FAILED: 10 error(s) in 1 file(s)" in r.output
    r = CliRunner().invoke(app, ["devices", "check"])
    assert r.exit_code == 0 and "SUCCESS: 3 file(s), 4 profile(s) ok" in r.output


def test_hot_reload_swaps_good_sets_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text((SAMPLES / "acme-flat" / "profile.yaml").read_text())
    w = ProfileWatcher(str(tmp_path))
    assert w.poll() == (False, None) and [p.name for p in w.profiles.profiles] == ["acme-tl2"]
    f.write_text(f.read_text().replace("acme-tl2", "acme-tl3"))
    reloaded, err = w.poll()
    assert reloaded and err is None and w.profiles.profiles[0].name == "acme-tl3"
    f.write_text(f.read_text().replace("domain: traffic", "domain: trafic"))
    reloaded, err = w.poll()
    assert not reloaded and "p.yaml:7:13" in str(err)
    assert w.profiles.profiles[0].name == "acme-tl3"  # the last good set stays
    shutil.copy(SAMPLES / "loopx-sentinel" / "profile.yaml", tmp_path / "q.yaml")
    f.write_text((SAMPLES / "acme-flat" / "profile.yaml").read_text())
    reloaded, _ = w.poll()
    assert reloaded and len(w.profiles) == 3
    assert w.profiles.subscriptions() == ["vendor/acme/+/+", "loopx/+/+", "loopx-strict/+/+"]


@pytest.mark.servers
def test_three_vendor_shapes_through_the_pipeline(stack, run_id, components, tmp_path: Path):
    """mosquitto → ingest (profiles, hot reload) → Kafka → worker → InfluxDB, exactly."""
    prof = tmp_path / "profiles"
    prof.mkdir()
    for shape in ("acme-flat", "metro-nested"):
        shutil.copy(SAMPLES / shape / "profile.yaml", prof / f"{shape}.yaml")
    env = component_env(stack, run_id, URBANBRAIN_INGEST_PROFILES_PATH=str(prof))
    ingest = Component("ingest", ["ingest"], env, tmp_path / "ingest.log").start()
    worker = Component("streams", ["streams", "worker", "-l", "info"], env,
                       tmp_path / "streams.log").start()
    components += [ingest, worker]
    ingest.wait_for_log("MQTT subscribed", timeout=30)
    worker.wait_for_log("Ready", timeout=60)
    # the third shape arrives while the bridge runs: hot reload, and a new subscription
    shutil.copy(SAMPLES / "loopx-sentinel" / "profile.yaml", prof / "loopx.yaml")
    ingest.wait_for_log("device profiles reloaded: 4 profiles", timeout=30)
    time.sleep(0.5)

    d = f"d{run_id}"
    t = (int(time.time() * 1000) - 10 * 60_000) // 1000 * 1000
    iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t / 1000))
    # vendor topics lie outside city/: production grants them per device in the ACL; the
    # test's injector account stands for such a grant
    pub = Publisher(stack.mqtt.port, auth=(INJECTOR, INJECTOR_PASSWORD))
    pub.publish(f"vendor/acme/{d}/A-17", {"dev": f"A-17-{run_id}", "t": t // 1000, "cnt": 12,
                                          "spd_mms": 13890, "occ_pm": 1500, "batt_mv": 3600})
    pub.publish(f"metro/{d}/air/node-3", {
        "device": {"id": f"aq-{run_id}", "type": "AQM-3"},
        "observed": {"at": iso, "values": {"pm": {"pm2_5": 12.5, "pm10": 20.25},
                                           "no2_ppb": 21, "temp_dC": 63}},
        "meta": {"fw": "1.2.0"}})
    pub.publish(f"loopx/{d}/lx-{run_id}", {"begin_ms": t, "nVehContrib": 0, "speed": -1,
                                          "occupancy": 0.0, "flow": 0.0})
    pub.publish(f"loopx/{d}/lx-{run_id}", {"begin_ms": t + 60_000, "nVehContrib": 5,
                                          "speed": 900, "occupancy": 6.5, "flow": 300})
    pub.close()

    influx = Influx.reader(stack, f"test_{run_id}")

    def rows(meas: str) -> list[dict]:
        try:
            return influx.rows(f"SELECT * FROM \"{meas}\" WHERE district = '{d}' GROUP BY sensor")
        except Exception:  # noqa: BLE001 - not written yet
            return []

    wait_until(lambda: len(rows("traffic")) >= 3 and rows("environment"), 60, what="points")
    time.sleep(1.0)  # anything extra would show now
    traffic = {(r["sensor"], r["time"]): r for r in rows("traffic")}
    fields = ("vehicle_count", "speed_kmh", "occupancy_pct", "flow_vph")
    assert {k: {f: r.get(f) for f in fields} for k, r in traffic.items()} == {
        (f"acme-A-17-{run_id}", t): {"vehicle_count": 12.0, "speed_kmh": 50.004000000000005,
                                     "occupancy_pct": None, "flow_vph": None},
        (f"lx-{run_id}", t): {"vehicle_count": 0.0, "speed_kmh": None, "occupancy_pct": 0.0,
                              "flow_vph": 0.0},
        (f"lx-{run_id}", t + 60_000): {"vehicle_count": 5.0, "speed_kmh": None,
                                       "occupancy_pct": 6.5, "flow_vph": 300.0},
    }
    assert {r["kind"] for r in traffic.values()} == {"loop"}
    [env_row] = rows("environment")
    assert (env_row["sensor"], env_row["time"], env_row["kind"]) == (f"aq-{run_id}", t,
                                                                      "air_quality")
    assert {f: env_row[f] for f in ("pm25_ugm3", "pm10_ugm3", "no2_ugm3", "temperature_c")} == {
        "pm25_ugm3": 12.5, "pm10_ugm3": 20.25, "no2_ugm3": 39.5139263803681,
        "temperature_c": 6.300000000000001}

    def dead() -> list[dict]:
        recs = [orjson.loads(v) for _, v in read_topic(stack.env()["URBANBRAIN_KAFKA_BOOTSTRAP"],
                                                       "readings.deadletter")]
        return [r for r in recs if f"/{d}/" in r["topic"]]

    letters = wait_until(lambda: len(dead()) >= 3 and dead(), 30, what="dead letters")
    assert sorted((r["reason"], r.get("metric"), r.get("field"), r.get("profile"))
                  for r in letters) == [
        ("out_of_range", "occupancy_pct", "occ_pm", "acme-tl2"),
        ("out_of_range", "speed_kmh", "speed", "loopx-e1"),
        ("unknown_field", None, "batt_mv", "acme-tl2"),
    ]


def test_a_list_of_readings_loses_only_its_bad_element() -> None:
    ps = loads("""
profiles:
  - name: gw
    match: {topic: "gw/{district}/{_}"}
    domain: traffic
    kind: loop
    each: /items
    id: {field: id}
    timestamp: {field: ts, format: epoch_ms}
    metrics: {vehicle_count: n, speed_kmh: {field: v, unit: m/s}}
""")
    items = [{"id": "a", "ts": NOW - 30_000, "n": 3, "v": 10}, {"ts": NOW - 30_000, "n": 1},
             {"id": "b", "ts": NOW - 30_000, "n": 2, "v": "fast"}]
    readings, dead = Normaliser(Settings(), profiles=ps).process(
        "gw/c/1", orjson.dumps({"items": items}), NOW)
    assert [(r["sensor_id"], r["metrics"]) for r in readings] == [
        ("a", {"vehicle_count": 3.0, "speed_kmh": 36.0}), ("b", {"vehicle_count": 2.0})]
    assert [(d["reason"], d.get("metric"), d["message"]) for d in dead] == [
        ("schema", None, "profile gw: no device id at id"),
        ("schema", "speed_kmh", "v is str, not a number")]
