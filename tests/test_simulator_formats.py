"""Payload encoders: valid JSON of the data contract, and lossless back to the readings."""

from __future__ import annotations

import re

import orjson
import pytest

from urbanbrain.metrics import METRICS
from urbanbrain.simulators.city import City
from urbanbrain.simulators.engine import Simulation
from urbanbrain.simulators.faults import FaultConfig
from urbanbrain.simulators.formats import SENML_UNITS, make_encoder
from urbanbrain.simulators.incidents import Schedule
from urbanbrain.simulators.record import decode_payload, frame_readings

T0 = 1767600000000
TOPIC = re.compile(r"^city/[a-z-]+/(traffic|environment|water|power)/[a-z_]+/[a-z]{2}-\d{4}$")
PACK_TOPIC = re.compile(r"^city/[a-z-]+/(traffic|environment|water|power)/pack/gw-[a-z0-9-]+$")


@pytest.fixture(scope="module")
def setup():  # noqa: ANN201
    city = City.generate(12, "small")
    # heavy faults: skewed clocks and silent sensors must survive encoding too
    sim = Simulation(city, 12, start_ms=T0, schedule=Schedule.none(city),
                     faults=FaultConfig(skew_per_sensor_day=20.0, dropout_per_sensor_day=20.0))
    frames = list(sim.frames(30))
    frame = frames[-1]
    assert (frame.ts != frame.t_ms).any() and not frame.present.all()
    return city, frame


def _expected(city, frame):  # noqa: ANN001, ANN202
    return sorted((r["sensor_id"], r["ts"], r["metrics"]) for r in frame_readings(city, frame))


def test_plain_json_follows_the_contract(setup) -> None:  # noqa: ANN001
    city, frame = setup
    msgs = make_encoder("json", city).encode(frame)
    assert len(msgs) == frame.n_readings
    for topic, payload, n in msgs:
        doc = orjson.loads(payload)
        assert TOPIC.match(topic) and topic.endswith("/" + doc["sensor_id"]) and n == 1
        assert set(doc) == {"sensor_id", "ts", "metrics"} and isinstance(doc["ts"], int)
        s = city.by_id[doc["sensor_id"]]
        assert topic == f"city/{s.district}/{s.domain}/{s.kind}/{s.sensor_id}"
        assert list(doc["metrics"]) == list(s.metrics)
        assert all(isinstance(v, float) and METRICS[k].low <= v <= METRICS[k].high
                   for k, v in doc["metrics"].items())


def test_senml_packs_follow_rfc8428_and_the_contract(setup) -> None:  # noqa: ANN001
    city, frame = setup
    msgs = make_encoder("senml", city, pack_size=20).encode(frame)
    assert sum(n for _, _, n in msgs) == frame.n_readings
    for topic, payload, n in msgs:
        assert PACK_TOPIC.match(topic)
        recs = orjson.loads(payload)
        assert isinstance(recs, list) and "bn" in recs[0] and "bt" in recs[0]
        bn, bt, sensors = "", 0.0, set()
        for rec in recs:
            bn, bt = rec.get("bn", bn), rec.get("bt", bt)
            sid, _, metric = (bn + rec["n"]).rpartition(":")
            sensors.add(sid)
            assert metric in METRICS and city.by_id[sid].domain == topic.split("/")[2]
            if "u" in rec:
                assert rec["u"] == SENML_UNITS[metric]
            assert isinstance(rec["v"], float) and 1.7e9 < bt < 1.9e9  # seconds, not ms
        assert len(sensors) == n <= 20
    # units never contradict the canonical unit of the metric
    canonical = {"count": "veh", "km/h": "km/h", "Cel": "°C", "%RH": "%", "m/s": "m/s",
                 "kPa": "kPa", "l/s": "L/s", "Hz": "Hz"}
    for metric, unit in SENML_UNITS.items():
        assert canonical[unit] == METRICS[metric].unit


def test_fiware_entities_use_smart_data_models_fields(setup) -> None:  # noqa: ANN001
    city, frame = setup
    msgs = make_encoder("fiware", city).encode(frame)
    seen = {}
    for topic, payload, _ in msgs:
        e = orjson.loads(payload)
        sid = topic.rsplit("/", 1)[1]
        assert e["refDevice"] == f"urn:ngsi-ld:Device:{sid}"
        assert e["id"] == f"urn:ngsi-ld:{e['type']}:{sid}"
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", e["dateObserved"])
        assert e["location"]["type"] == "Point"
        seen[e["type"]] = e
    assert set(seen) == {"TrafficFlowObserved", "AirQualityObserved", "NoiseLevelObserved",
                         "WeatherObserved", "WaterQualityObserved", "ThreePhaseAcMeasurement"}
    t = seen["TrafficFlowObserved"]
    assert {"intensity", "occupancy", "averageVehicleSpeed", "dateObservedFrom",
            "dateObservedTo"} <= set(t)
    assert 0.0 <= t["occupancy"] <= 1.0
    assert {"pm25", "pm10", "no2", "o3", "co"} <= set(seen["AirQualityObserved"])
    assert "LAeq" in seen["NoiseLevelObserved"]
    assert 0.0 <= seen["WeatherObserved"]["relativeHumidity"] <= 1.0
    assert {"totalActivePower", "frequency", "phaseToPhaseVoltage"} <= set(
        seen["ThreePhaseAcMeasurement"])


@pytest.mark.parametrize("fmt", ["json", "senml", "fiware"])
def test_every_format_decodes_back_to_the_same_readings(setup, fmt: str) -> None:  # noqa: ANN001
    city, frame = setup
    got = []
    for topic, payload, _ in make_encoder(fmt, city).encode(frame):
        got += [(r["sensor_id"], r["ts"], r["metrics"]) for r in decode_payload(topic, payload)]
    assert sorted(got) == _expected(city, frame)


def test_malformed_payloads_are_not_json(setup) -> None:  # noqa: ANN001
    city, frame = setup
    sim_faults = Simulation(city, 1, start_ms=T0, schedule=Schedule.none(city),
                            faults=FaultConfig(malformed_prob=0.2)).faults
    for fmt in ("json", "senml", "fiware"):
        msgs = make_encoder(fmt, city).encode(frame)
        before = sim_faults.stats.malformed_messages
        out = sim_faults.mangle(msgs)
        bad = 0
        for _, payload, _ in out:
            try:
                orjson.loads(payload)
            except orjson.JSONDecodeError:
                bad += 1
        assert bad == sim_faults.stats.malformed_messages - before > 0
