"""FIWARE decoder: the Smart Data Models' own examples with exact values, then the rules."""

from __future__ import annotations

import copy
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pytest

import urbanbrain.ingest.decoders.fiware as fiware_pkg
from urbanbrain.ingest.decoders import all_decoders, pick
from urbanbrain.ingest.decoders.fiware import FiwareDecoder
from urbanbrain.ingest.rejects import Reason, Reject

SAMPLES = Path(fiware_pkg.__file__).parent / "samples"
TOPIC = "city/d01/environment/station/topic-sensor"
DEC = FiwareDecoder()


def sample(name: str):
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


def one(doc, topic: str = TOPIC):
    out = DEC.decode(doc, topic)
    assert len(out) == 1
    return out[0]


def rejected(doc, topic: str = TOPIC) -> Reason:
    with pytest.raises(Reject) as exc:
        DEC.decode(doc, topic)
    return exc.value.reason


def test_every_sample_is_covered() -> None:
    covered = {name for name, *_ in EXPECTED} | {"WaterObserved.ngsiv2-keyvalues.json"}
    assert covered == {p.name for p in SAMPLES.iterdir()}


# 197 vehicles in 11:10..11:15 → 2364 veh/h
TFO = {"vehicle_count": 197.0, "occupancy_pct": 76.0, "speed_kmh": 52.6, "flow_vph": 2364.0}
AQ = {"no2_ugm3": 69.0, "so2_ugm3": 11.0, "co_mgm3": 500.0, "temperature_c": 12.2,
      "humidity_pct": 54.0, "wind_speed_ms": 0.64}
MADRID = (40.423852777777775, -3.712247222222222)
NOISE_ID = "Vitoria-NoiseLevelObserved-2016-12-28T11:00:00_2016-12-28T12:00:00"
VITORIA = (42.8491, -2.698)
POWER = {
    "load_mw": 31700.269531 / 1e6,
    "frequency_hz": 50.020672,
    "voltage_kv": (406.769196 + 407.081238 + 407.734558) / 3 / 1000,
    "current_a": (56.126038 + 45.894356 + 50.872452) / 3,  # N (neutral) left out
}
BOATS = {"vehicle_count": 12.0, "occupancy_pct": 15.62, "speed_kmh": 2.7 * 1.852,  # knots
         "flow_vph": 2.0}  # 12 boats in 16:30..22:30

# (sample, sensor_id, ts, domain, metrics, (lat, lon))
EXPECTED = [
    ("TrafficFlowObserved.ngsi-ld-normalized.jsonld", "TrafficFlowObserved-Valladolid-osm-60821110",
     utc("2016-12-07T11:15:00"), "traffic", TFO, (None, None)),  # LineString: registry's job
    ("TrafficFlowObserved.ngsiv2-keyvalues.json", "TrafficFlowObserved-Valladolid-osm-60821110",
     utc("2016-12-07T11:15:00"), "traffic", TFO, (None, None)),
    ("ItemFlowObserved.ngsi-ld-normalized.jsonld", "BFO-NCE-MNCA-SP-001-Dev-02",
     utc("2020-03-20T22:30:00"), "traffic", BOATS, (43.664809, 7.196545)),
    ("ItemFlowObserved.ngsiv2-keyvalues.json", "Device:BFO-NCE-MNCA-SP-001-Dev-02",
     utc("2020-03-20T22:30:00"), "traffic", BOATS, (43.664809, 7.196545)),
    ("AirQualityObserved.ngsi-ld-normalized.jsonld",
     "Madrid-AmbientObserved-28079004-2016-03-15T11:00:00", utc("2016-03-15T12:00:00"),
     "environment", AQ, MADRID),
    ("AirQualityObserved.ngsi-ld-keyvalues.jsonld",
     "Madrid-AmbientObserved-28079004-2016-03-15T11:00:00", utc("2016-03-15T11:00:00"),
     "environment", AQ, MADRID),
    ("AirQualityObserved.ngsiv2-normalized.json",
     "Madrid-AmbientObserved-28079004-2016-03-15T11:00:00", utc("2016-03-15T12:00:00"),
     "environment", AQ, MADRID),
    ("AirQualityObserved.ngsiv2-keyvalues.json",
     "Madrid-AmbientObserved-28079004-2016-03-15T11:00:00", utc("2016-03-15T12:00:00"),
     "environment", AQ, MADRID),
    ("NoiseLevelObserved.ngsi-ld-normalized.jsonld", NOISE_ID, utc("2016-12-28T12:00:00"),
     "environment", {"noise_dba": 67.8}, VITORIA),
    ("NoiseLevelObserved.ngsi-ld-keyvalues.jsonld", NOISE_ID, utc("2016-12-28T12:00:00"),
     "environment", {"noise_dba": 67.8}, VITORIA),
    ("NoiseLevelObserved.geojson-feature.json", NOISE_ID, utc("2016-12-28T12:00:00"),
     "environment", {"noise_dba": 67.8}, VITORIA),
    ("WeatherObserved.ngsi-ld-keyvalues.jsonld", "device-0A3478", utc("2016-11-30T07:00:00"),
     "environment", {"temperature_c": 3.3, "humidity_pct": 100.0, "wind_speed_ms": 2.0,
                     "rain_mmh": 0.0}, (41.640833333, -4.754444444)),
    ("WaterQualityObserved.ngsi-ld-normalized.jsonld", "waterqualityobserved:Sevilla:D1",
     utc("2017-01-31T06:45:00"), "water", {"ph": 7.4}, (37.362882, -5.993307)),
    ("WaterQualityObserved.ngsi-ld-keyvalues.jsonld", "waterqualityobserved:Sevilla:D1",
     utc("2017-01-31T06:45:00"), "water", {"ph": 7.4, "flow_ls": 127.53},  # flow: see README
     (37.362882, -5.993307)),
    ("Junction.epanet-ngsi-ld-normalized.jsonld", "63fe7d79-0d4c-4da9-b7d0-3340efa0656a", None,
     "water", {"pressure_kpa": 20 * 9.80665}, (60.07966, 24.30623)),  # 20 m of head
    ("Pipe.epanet-ngsi-ld-normalized.jsonld", "74azsty-70d4l-4da9-b7d0-3340ef655nnb", None,
     "water", {"flow_ls": 20.0}, (None, None)),
    ("ThreePhaseAcMeasurement.ngsi-ld-normalized.jsonld", "Device:eQL-EDF3GL-2006201705",
     utc("2019-01-24T22:00:00.173"), "power", POWER, (None, None)),  # observedAt
    ("ThreePhaseAcMeasurement.ngsi-ld-keyvalues.jsonld", "Device:eQL-EDF3GL-2006201705", None,
     "power", POWER, (None, None)),
    ("ACMeasurement.ngsiv2-keyvalues.json", "T1-F01-TR05-ACTP", utc("2020-03-17T08:45:00"),
     "power", POWER, (7.196545, 43.66481)),  # upstream wrote [lat, lon]; decoded as written
    ("urbanbrain-TrafficFlowObserved.ngsi-ld-keyvalues.jsonld", "tl-0007",
     utc("2025-11-23T08:00:00"), "traffic",
     {"vehicle_count": 23.0, "occupancy_pct": 11.5, "speed_kmh": 47.2}, (48.8566, 2.3522)),
]


@pytest.mark.parametrize(("name", "sensor", "ts", "domain", "metrics", "where"), EXPECTED)
def test_smart_data_model_examples(name, sensor, ts, domain, metrics, where) -> None:
    doc = sample(name)
    assert DEC.sniff(doc)
    assert pick(all_decoders(), doc).name == "fiware"
    r = one(doc)
    assert r.sensor_id == sensor
    assert r.ts == ts
    assert r.domain == domain
    assert r.metrics == {k: pytest.approx(v, rel=1e-12) for k, v in metrics.items()}
    assert (r.lat, r.lon) == where
    assert r.extra["entity_type"] == name.split(".")[0].removeprefix("urbanbrain-")


def test_noise_keeps_lamax_aside() -> None:
    r = one(sample("NoiseLevelObserved.ngsi-ld-normalized.jsonld"))
    assert r.extra["LAmax"] == 94.5 and r.extra["LAeq_d"] == 65.4
    assert set(r.metrics) == {"noise_dba"}


def test_water_observed_without_unit_is_refused() -> None:
    assert rejected(sample("WaterObserved.ngsiv2-keyvalues.json")) is Reason.UNKNOWN_METRIC


def test_water_observed_with_unit_code() -> None:
    doc = sample("WaterObserved.ngsiv2-keyvalues.json")
    doc["flow"] = {"value": 12, "metadata": {"unitCode": {"value": "MQS"}}}
    r = one(doc)
    assert r.metrics == {"flow_ls": 12_000.0}
    assert r.sensor_id == "Device:T2-NP-018"
    assert r.ts == utc("2020-03-17T08:45:00.209")


def test_what_the_urbanbrain_simulator_sends() -> None:
    """One entity per kind as simulators/formats.py builds them (NGSI-LD key-values)."""
    base = {"refDevice": "urn:ngsi-ld:Device:s-1", "dateObserved": "2026-11-23T08:00:00.000Z"}
    cases = [
        ({"type": "WeatherObserved", "temperature": 7.5, "relativeHumidity": 0.81,
          "windSpeed": 3.2, "precipitation": 1.4},
         {"temperature_c": 7.5, "humidity_pct": 81.0, "wind_speed_ms": 3.2, "rain_mmh": 1.4}),
        ({"type": "WaterQualityObserved", "pressure": 420.0, "flow": 35.5,
          "freeChlorine": 0.4, "turbidity": 0.3},
         {"pressure_kpa": 420.0, "flow_ls": 35.5, "chlorine_mgl": 0.4, "turbidity_ntu": 0.3}),
        ({"type": "ThreePhaseAcMeasurement", "totalActivePower": 12_500_000.0,
          "frequency": 49.98, "phaseToPhaseVoltage": {"L12": 11000.0, "L23": 11000.0,
                                                      "L31": 11000.0}},
         {"load_mw": 12.5, "frequency_hz": 49.98, "voltage_kv": 11.0}),
        ({"type": "AirQualityObserved", "pm25": 12.0, "pm10": 20.0, "no2": 38.0, "o3": 60.0,
          "co": 0.4},
         {"pm25_ugm3": 12.0, "pm10_ugm3": 20.0, "no2_ugm3": 38.0, "o3_ugm3": 60.0,
          "co_mgm3": 0.4}),
    ]
    for attrs, metrics in cases:
        r = one({"id": f"urn:ngsi-ld:{attrs['type']}:s-1", **base, **attrs})
        assert r.sensor_id == "s-1" and r.ts == utc("2026-11-23T08:00:00")
        assert r.metrics == {k: pytest.approx(v) for k, v in metrics.items()}


def test_flow_from_count_and_period() -> None:
    base = {"id": "tl-1", "type": "TrafficFlowObserved", "intensity": 24}
    assert "flow_vph" not in one(base).metrics  # no period, no flow
    interval = {**base, "dateObserved": "2026-11-23T08:00:00Z/2026-11-23T08:01:00Z"}
    assert one(interval).metrics["flow_vph"] == 1440.0
    simulator = {**base, "dateObservedFrom": "2026-11-23T07:59:00.000Z",
                 "dateObservedTo": "2026-11-23T08:00:00.000Z"}
    assert one(simulator).metrics["flow_vph"] == 1440.0
    backwards = {**base, "dateObservedFrom": "2026-11-23T08:00:00Z",
                 "dateObservedTo": "2026-11-23T07:00:00Z"}
    assert "flow_vph" not in one(backwards).metrics


def test_water_quality_nitrite_is_not_air_no2() -> None:
    r = one(sample("WaterQualityObserved.ngsi-ld-keyvalues.jsonld"))  # has "NO2": 0.09
    assert "no2_ugm3" not in r.metrics
    assert r.extra["temperature"] == 24.4  # water temperature kept aside


def test_water_quality_chlorine_and_turbidity_from_attributes_and_measurand() -> None:
    doc = sample("WaterQualityObserved.ngsi-ld-normalized.jsonld")
    doc["turbidity"] = {"type": "Property", "value": 0.8}
    doc["measurand"]["value"].append("cl, 450, H29, free chlorine")  # µg/L
    doc["measurand"]["value"].append("Cl-, 30, M1, chlorides")  # not chlorine
    r = one(doc)
    assert r.metrics == {"ph": 7.4, "turbidity_ntu": 0.8, "chlorine_mgl": pytest.approx(0.45)}
    doc2 = sample("WaterQualityObserved.ngsi-ld-keyvalues.jsonld")
    doc2["freeChlorine"] = 0.3
    assert one(doc2).metrics["chlorine_mgl"] == 0.3


def test_unit_codes_convert() -> None:
    doc = sample("AirQualityObserved.ngsi-ld-normalized.jsonld")
    doc["NO2"]["unitCode"] = "61"  # ppb
    doc["temperature"]["unitCode"] = "KEL"
    doc["relativeHumidity"]["unitCode"] = "P1"  # percent
    doc["relativeHumidity"]["value"] = 54
    doc["pm25"] = {"type": "Property", "value": 0.012, "unitCode": "GP"}
    r = one(doc)
    assert r.metrics["no2_ugm3"] == pytest.approx(69 * 46.0055 / 24.45)
    assert r.metrics["temperature_c"] == pytest.approx(12.2 - 273.15)
    assert r.metrics["humidity_pct"] == 54.0
    assert r.metrics["pm25_ugm3"] == pytest.approx(12.0)


def test_unknown_unit_code_is_refused() -> None:
    doc = sample("AirQualityObserved.ngsi-ld-normalized.jsonld")
    doc["NO2"]["unitCode"] = "XYZ"
    assert rejected(doc) is Reason.UNKNOWN_METRIC


def test_people_flow_is_not_vehicles() -> None:
    doc = sample("ItemFlowObserved.ngsiv2-keyvalues.json")
    doc["itemType"] = "people"
    r = one(doc)
    assert "vehicle_count" not in r.metrics
    assert r.metrics["speed_kmh"] == 2.7  # people: km/h


def test_phase_voltage_fallback_is_line_voltage() -> None:
    doc = sample("ThreePhaseAcMeasurement.ngsi-ld-keyvalues.jsonld")
    del doc["phaseToPhaseVoltage"], doc["totalActivePower"]
    r = one(doc)
    mean_ln = (234.961304 + 234.563477 + 235.354034) / 3
    assert r.metrics["voltage_kv"] == pytest.approx(mean_ln * math.sqrt(3) / 1000)
    assert r.metrics["load_mw"] == pytest.approx((11996.416016 + 9461.501953 + 10242.351562) / 1e6)


def test_notifications_arrays_and_feature_collections() -> None:
    a = sample("TrafficFlowObserved.ngsiv2-keyvalues.json")
    b = sample("NoiseLevelObserved.ngsi-ld-keyvalues.jsonld")
    v2 = {"subscriptionId": "57458eb60962ef754e7c0998", "data": [a, b]}
    ld = {"id": "urn:ngsi-ld:Notification:1", "type": "Notification",
          "subscriptionId": "urn:ngsi-ld:Subscription:1", "notifiedAt": "2025-11-23T08:00:00Z",
          "data": [a, b]}
    fc = {"type": "FeatureCollection",
          "features": [sample("NoiseLevelObserved.geojson-feature.json")]}
    for doc, n in ((v2, 2), (ld, 2), ([a, b], 2), (fc, 1)):
        assert DEC.sniff(doc)
        out = DEC.decode(doc, TOPIC)
        assert len(out) == n
    assert [r.metrics for r in DEC.decode(v2, TOPIC)] == [
        {k: pytest.approx(v) for k, v in TFO.items()}, {"noise_dba": 67.8}]


def test_sensor_id_rules() -> None:
    base = {"type": "NoiseLevelObserved", "LAeq": 60}
    assert one({**base, "id": "urn:ngsi-ld:NoiseLevelObserved:n-1"}).sensor_id == "n-1"
    assert one({**base, "id": "n-2"}).sensor_id == "n-2"
    assert one({**base, "id": "urn:ngsi-ld:Thing:n-3"}).sensor_id == "n-3"
    assert one({**base, "id": "x", "refDevice": "urn:ngsi-ld:Device:dev-9"}).sensor_id == "dev-9"
    assert one({**base, "id": "x", "refDevice": {"type": "Relationship",
                                                  "object": "urn:ngsi-ld:Device:dev-8"}}
               ).sensor_id == "dev-8"
    (r,) = DEC.decode([{**base, "type": "NoiseLevelObserved"}], "city/d/environment/noise/nz-1")
    assert r.sensor_id == "nz-1"  # no id at all: the topic's last level
    assert rejected({**base, "id": "x", "refDevice": 7}) is Reason.SCHEMA


def test_time_rules() -> None:
    base = {"id": "n", "type": "NoiseLevelObserved", "LAeq": 60}
    zoned = {**base, "dateObserved": "2025-01-01T10:00:00+02:00"}
    assert one(zoned).ts == utc("2025-01-01T08:00:00")
    assert one({**base, "dateObserved": "2025-01-01T10:00:00"}).ts == utc("2025-01-01T10:00:00")
    assert one({**base, "dateObserved": "2025-01-01T10:00:00Z/2025-01-01T11:00:00Z"}).ts == utc(
        "2025-01-01T11:00:00"
    )
    assert one(base).ts is None
    normalized = {"id": "n", "type": "NoiseLevelObserved",
                  "LAeq": {"type": "Property", "value": 60, "observedAt": "2025-01-01T10:00:00Z"}}
    assert one(normalized).ts == utc("2025-01-01T10:00:00")
    assert rejected({**base, "dateObserved": "yesterday"}) is Reason.BAD_TIMESTAMP
    assert rejected({**base, "dateObserved": 1735725600}) is Reason.BAD_TIMESTAMP


def test_expanded_type_and_multi_instance_attribute() -> None:
    iri = "https://smartdatamodels.org/dataModel.Environment/NoiseLevelObserved"
    doc = {"id": "n", "type": iri,
           "LAeq": [{"type": "Property", "value": 61, "datasetId": "urn:ngsi-ld:Dataset:b"},
                    {"type": "Property", "value": 60}]}
    r = one(doc)
    assert r.metrics == {"noise_dba": 60.0} and r.extra["entity_type"] == "NoiseLevelObserved"


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"type": "Building"}, Reason.UNKNOWN_METRIC),
        ({"type": 5}, Reason.SCHEMA),
        ({"intensity": "many"}, Reason.SCHEMA),
        ({"intensity": True}, Reason.SCHEMA),
        ({"intensity": float("nan")}, Reason.NOT_FINITE),
        ({"intensity": 10**400}, Reason.NOT_FINITE),
        ({"intensity": "1e999"}, Reason.NOT_FINITE),
        ({"averageVehicleSpeed": {"type": "Property", "value": 5, "unitCode": 9}}, Reason.SCHEMA),
        ({"dateObservedTo": "2016-13-45T99:00:00Z"}, Reason.BAD_TIMESTAMP),
    ],
)
def test_refusals(patch: dict, reason: Reason) -> None:
    doc = {**sample("TrafficFlowObserved.ngsiv2-keyvalues.json"), **patch}
    assert rejected(doc) is reason


def test_null_attribute_counts_as_absent() -> None:
    doc = {**sample("TrafficFlowObserved.ngsiv2-keyvalues.json"), "intensity": None}
    assert "vehicle_count" not in one(doc).metrics


def test_no_mapped_measurement_is_schema() -> None:
    doc = sample("TrafficFlowObserved.ngsiv2-keyvalues.json")
    for k in ("intensity", "occupancy", "averageVehicleSpeed"):
        del doc[k]
    assert rejected(doc) is Reason.SCHEMA
    assert rejected([]) is Reason.SCHEMA
    assert rejected("entity") is Reason.SCHEMA
    assert rejected([5]) is Reason.SCHEMA


def test_bad_location_is_dropped_not_fatal() -> None:
    doc = sample("NoiseLevelObserved.ngsi-ld-keyvalues.jsonld")
    for coords in ([200.0, 10.0], ["a", "b"], [1.0], [float("nan"), 1.0], [10**400, 1]):
        d = copy.deepcopy(doc)
        d["location"]["coordinates"] = coords
        r = one(d)
        assert (r.lat, r.lon) == (None, None)


def test_sniff() -> None:
    assert DEC.sniff({"id": "x", "type": "TrafficFlowObserved"})
    assert not DEC.sniff({"sensor_id": "x", "metrics": {}, "id": "x", "type": "y"})
    assert not DEC.sniff([{"n": "x", "v": 1}])
    assert not DEC.sniff({"type": "TrafficFlowObserved"})
    assert not DEC.sniff(42)


@pytest.mark.parametrize("fmt", ["json", "senml", "fiware"])
def test_simulator_payloads_decode_to_the_simulated_readings(fmt: str) -> None:
    """Contract with simulators/formats.py: every format it emits decodes back exactly."""
    import urbanbrain.simulators.city as sim_city
    from urbanbrain.simulators.engine import Simulation
    from urbanbrain.simulators.formats import make_encoder
    from urbanbrain.simulators.incidents import Schedule
    from urbanbrain.simulators.record import frame_readings

    city = sim_city.City.generate(12, "small")
    sim = Simulation(city, 12, start_ms=1_767_600_000_000, schedule=Schedule.none(city))
    frame = list(sim.frames(3))[-1]
    want = sorted((r["sensor_id"], r["ts"], r["metrics"]) for r in frame_readings(city, frame))
    decoders = all_decoders()
    got = []
    for topic, payload, _ in make_encoder(fmt, city).encode(frame):
        doc = json.loads(payload)
        got += [(r.sensor_id, r.ts, r.metrics) for r in pick(decoders, doc).decode(doc, topic)]
    got.sort(key=lambda g: (g[0], g[1]))
    assert [(s, t, set(m)) for s, t, m in got] == [(s, t, set(m)) for s, t, m in want]
    for (_, _, m_got), (_, _, m_want) in zip(got, want):
        assert m_got == {k: pytest.approx(v, rel=1e-9, abs=1e-9) for k, v in m_want.items()}
