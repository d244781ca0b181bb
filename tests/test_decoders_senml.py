"""SenML decoder: the RFC 8428 §5.1 examples verbatim, resolution rules, mapping, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import urbanbrain.ingest.decoders.senml as senml_pkg
from urbanbrain.ingest.decoders import all_decoders, pick
from urbanbrain.ingest.decoders.senml import SenMLDecoder
from urbanbrain.ingest.rejects import Reason, Reject

SAMPLES = Path(senml_pkg.__file__).parent / "samples"
NOW = 1_763_884_800_000  # 2025-11-23T08:00:00Z
TOPIC = "city/d01/power/pack/gw-7"
DEC = SenMLDecoder()


def sample(name: str) -> list:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def decode(doc, topic: str = TOPIC):
    return DEC.decode(doc, topic, now_ms=NOW)


def rejected(doc, topic: str = TOPIC) -> Reason:
    with pytest.raises(Reject) as exc:
        decode(doc, topic)
    return exc.value.reason


# --- RFC 8428 §5.1, the examples exactly as the RFC prints them -------------------------

RFC_5_1_1 = """
   [
     {"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}
   ]
"""

RFC_5_1_2_A = """
[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
  {"n":"current","u":"A","v":1.2}
]
"""

RFC_5_1_2_B = """
   [
     {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
      "bu":"A","bver":5,
      "n":"voltage","u":"V","v":120.1},
     {"n":"current","t":-5,"v":1.2},
     {"n":"current","t":-4,"v":1.3},
     {"n":"current","t":-3,"v":1.4},
     {"n":"current","t":-2,"v":1.5},
     {"n":"current","t":-1,"v":1.6},
     {"n":"current","v":1.7}
   ]
"""

RFC_5_1_5 = """
  [
    {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
    {"n":"label","vs":"Machine Room"},
    {"n":"open","vb":false},
    {"n":"nfv-reader","vd":"aGkgCg"}
  ]
"""

RFC_5_1_6 = """
   [
     {"bn":"2001:db8::2/","bt":1.320078429e+09,
      "n":"temperature","u":"Cel","v":25.2},
     {"n":"humidity","u":"%RH","v":30},
     {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
     {"n":"humidity","u":"%RH","v":67}
   ]
"""


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (RFC_5_1_1, "rfc8428-5.1.1-single-datapoint.json"),
        (RFC_5_1_2_A, "rfc8428-5.1.2-multiple-datapoints.json"),
        (RFC_5_1_2_B, "rfc8428-5.1.2-multiple-datapoints-timed.json"),
        (RFC_5_1_5, "rfc8428-5.1.5-multiple-data-types.json"),
        (RFC_5_1_6, "rfc8428-5.1.6-collection-of-resources.json"),
    ],
)
def test_samples_hold_the_rfc_text(text: str, name: str) -> None:
    assert json.loads(text) == sample(name)


def test_5_1_1_single_datapoint() -> None:
    (r,) = decode(json.loads(RFC_5_1_1))
    assert r.sensor_id == "urn:dev:ow:10e2073a01080063"  # the name is the device
    assert r.metrics == {"temperature_c": 23.1}
    assert r.ts == NOW  # no time: "roughly now"


def test_5_1_2_multiple_datapoints_now() -> None:
    (r,) = decode(json.loads(RFC_5_1_2_A))
    assert r.sensor_id == "urn:dev:ow:10e2073a01080063"
    assert r.metrics == {"voltage_kv": pytest.approx(0.1201), "current_a": 1.2}
    assert r.ts == NOW


def test_5_1_2_multiple_datapoints_with_base_time_and_unit() -> None:
    out = decode(json.loads(RFC_5_1_2_B))
    t0 = 1_276_020_076_001  # Tue Jun 8 18:01:16.001 UTC 2010
    assert [r.ts for r in out] == [t0 - 5000, t0 - 4000, t0 - 3000, t0 - 2000, t0 - 1000, t0]
    assert {r.sensor_id for r in out} == {"urn:dev:ow:10e2073a0108006"}  # sic, RFC's name
    assert [r.metrics["current_a"] for r in out] == [1.2, 1.3, 1.4, 1.5, 1.6, 1.7]  # bu = A
    assert out[-1].metrics["voltage_kv"] == pytest.approx(0.1201)  # u = V overrides bu
    assert all("voltage_kv" not in r.metrics for r in out[:-1])


def test_5_1_3_multiple_measurements() -> None:
    out = decode(sample("rfc8428-5.1.3-multiple-measurements.json"))
    t0 = 1_320_067_464_000  # Mon Oct 31 13:24:24 UTC 2011
    assert [(r.ts, r.metrics) for r in out] == [
        (t0, {"humidity_pct": 20.0}),
        (t0 + 60_000, {"humidity_pct": 20.3}),
        (t0 + 120_000, {"humidity_pct": 20.7}),
        (t0 + 180_000, {"humidity_pct": 21.2}),
    ]  # the battery record at +150 s (%EL) is housekeeping, not a reading
    assert [(r.lat, r.lon) for r in out] == [
        (60.07965, 24.30621), (60.07965, 24.30622), (60.07966, 24.30623), (60.07967, 24.30628),
    ]
    assert {r.sensor_id for r in out} == {"urn:dev:ow:10e2073a01080063"}


def test_5_1_4_resolved_data_equals_5_1_3() -> None:
    a = decode(sample("rfc8428-5.1.3-multiple-measurements.json"))
    b = decode(sample("rfc8428-5.1.4-resolved-data.json"))
    assert [(r.sensor_id, r.ts, r.metrics, r.lat, r.lon) for r in a] == [
        (r.sensor_id, r.ts, r.metrics, r.lat, r.lon) for r in b
    ]


def test_5_1_5_multiple_data_types() -> None:
    (r,) = decode(json.loads(RFC_5_1_5))
    assert r.sensor_id == "urn:dev:ow:10e2073a01080063"
    assert r.metrics == {"temperature_c": 23.1}  # vs/vb/vd records skipped


def test_5_1_6_collection_of_resources() -> None:
    out = decode(json.loads(RFC_5_1_6))
    ts = 1_320_078_429_000
    assert [(r.sensor_id, r.ts, r.metrics) for r in out] == [
        ("2001:db8::2", ts, {"temperature_c": 25.2, "humidity_pct": 30.0}),
        ("2001:db8::1", ts, {"temperature_c": 12.3, "humidity_pct": 67.0}),
    ]


def test_urbanbrain_gateway_pack() -> None:
    out = decode(sample("urbanbrain-gateway-pack.json"))
    assert [(r.sensor_id, r.ts, r.metrics) for r in out] == [
        ("tl-0007", 1_763_884_800_000,
         {"vehicle_count": 23.0, "occupancy_pct": 11.5, "speed_kmh": 47.2}),
        ("aq-0012", 1_763_884_800_000,
         {"pm25_ugm3": 12.5, "no2_ugm3": 38.1, "temperature_c": 7.4, "humidity_pct": 81.0}),
        ("tl-0007", 1_763_884_860_000, {"vehicle_count": 19.0}),
    ]


# --- resolution rules --------------------------------------------------------------------

def test_base_value_and_base_unit_apply_until_replaced() -> None:
    out = decode([
        {"bn": "p-1:", "bt": 1.7e9, "bu": "K", "bv": 273.15, "n": "temp", "v": 20},
        {"n": "temp", "t": 1, "v": 21},
        {"bu": "Cel", "bv": 0, "n": "temp", "t": 2, "v": 22},
    ])
    assert [round(r.metrics["temperature_c"], 9) for r in out] == [20.0, 21.0, 22.0]
    assert [r.ts for r in out] == [1_700_000_000_000, 1_700_000_001_000, 1_700_000_002_000]


def test_relative_times_use_now() -> None:
    out = decode([{"bn": "tl-1:", "n": "speed_kmh", "t": -30, "v": 40},
                  {"n": "speed_kmh", "t": -0.5, "v": 41}])
    assert [r.ts for r in out] == [NOW - 30_000, NOW - 500]


def test_default_now_is_the_wall_clock() -> None:
    import time

    before = int(time.time() * 1000)
    (r,) = DEC.decode([{"n": "tl-1:speed_kmh", "v": 40}], TOPIC)
    assert before <= r.ts <= int(time.time() * 1000)


def test_name_without_colon_takes_the_topic_sensor() -> None:
    (r,) = decode([{"n": "speed_kmh", "v": 40}], "city/d01/traffic/loop/tl-0042")
    assert r.sensor_id == "tl-0042"
    assert r.metrics == {"speed_kmh": 40.0}


def test_sensor_id_is_everything_before_the_last_colon() -> None:
    (r,) = decode([{"bn": "gw:7:tl-9:", "n": "vehicle_count", "v": 3}])
    assert r.sensor_id == "gw:7:tl-9"


def test_many_sensors_and_times_group_into_readings() -> None:
    doc = [{"bn": "a:", "bt": 1.7e9, "n": "speed_kmh", "v": 1},
           {"bn": "b:", "n": "speed_kmh", "v": 2},
           {"bn": "a:", "n": "vehicle_count", "v": 3},
           {"bn": "a:", "n": "speed_kmh", "t": 60, "v": 4}]
    out = decode(doc)
    got = {(r.sensor_id, r.ts): r.metrics for r in out}
    assert got == {
        ("a", 1_700_000_000_000): {"speed_kmh": 1.0, "vehicle_count": 3.0},
        ("b", 1_700_000_000_000): {"speed_kmh": 2.0},
        ("a", 1_700_000_060_000): {"speed_kmh": 4.0},
    }


# --- mapping -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("n", "u", "v", "metric", "expected"),
    [
        ("temp", "K", 300.0, "temperature_c", 26.85),
        ("temperature", "degF", 212.0, "temperature_c", 100.0),
        ("humidity", "%RH", 55.0, "humidity_pct", 55.0),
        ("pressure", "Pa", 350_000.0, "pressure_kpa", 350.0),
        ("pressure", "kPa", 350.0, "pressure_kpa", 350.0),
        ("pressure", "bar", 3.5, "pressure_kpa", 350.0),
        ("speed", "m/s", 12.5, "speed_kmh", 45.0),
        ("speed", "km/h", 45.0, "speed_kmh", 45.0),
        ("current", "A", 12.0, "current_a", 12.0),
        ("voltage", "V", 11_000.0, "voltage_kv", 11.0),
        ("power", "W", 2_500_000.0, "load_mw", 2.5),
        ("power", "kW", 2500.0, "load_mw", 2.5),
        ("frequency", "Hz", 50.01, "frequency_hz", 50.01),
        ("flow", "m3/s", 0.25, "flow_ls", 250.0),
        ("flow", "l/s", 250.0, "flow_ls", 250.0),
        ("flow", "m3/h", 900.0, "flow_ls", 250.0),
        ("flow", "1/h", 900.0, "flow_vph", 900.0),
        ("count", "count", 17.0, "vehicle_count", 17.0),
        ("occupancy", "/", 0.25, "occupancy_pct", 25.0),
        ("occupancy", "%", 0.25, "occupancy_pct", 25.0),  # SenML % is a ratio
        ("occupancy", "/100", 25.0, "occupancy_pct", 25.0),
        ("no2", "ppb", 100.0, "no2_ugm3", 188.16),
        ("pm25", "ug/m3", 12.0, "pm25_ugm3", 12.0),
        ("co", "ppm", 1.0, "co_mgm3", 1.1456),
        ("noise", "dB", 61.0, "noise_dba", 61.0),
        ("ph", "pH", 7.2, "ph", 7.2),
        ("Temperature", "Cel", 5.0, "temperature_c", 5.0),  # names are case-insensitive
    ],
)
def test_common_names_and_units(n: str, u: str, v: float, metric: str, expected: float) -> None:
    (r,) = decode([{"bn": "dev-1:", "n": n, "u": u, "v": v}])
    assert r.sensor_id == "dev-1"
    assert r.metrics == {metric: pytest.approx(expected, rel=1e-4)}


def test_common_name_without_unit_uses_the_senml_unit_of_the_quantity() -> None:
    (r,) = decode([{"bn": "dev-1:", "n": "voltage", "v": 230}, {"n": "speed", "v": 10}])
    assert r.metrics == {"voltage_kv": pytest.approx(0.23), "speed_kmh": pytest.approx(36.0)}


def test_canonical_names_pass_through_with_their_own_unit() -> None:
    (r,) = decode([{"bn": "x:", "n": "pressure_kpa", "v": 420},
                   {"n": "temperature_c", "u": "Cel", "v": 4},
                   {"n": "occupancy_pct", "u": "/100", "v": 30}])
    assert r.metrics == {"pressure_kpa": 420.0, "temperature_c": 4.0, "occupancy_pct": 30.0}


@pytest.mark.parametrize(
    ("n", "u"),
    [("temperature_c", "K"), ("speed_kmh", "m/s"), ("occupancy_pct", "%"), ("load_mw", "W")],
)
def test_canonical_name_with_a_contradicting_unit_is_refused(n: str, u: str) -> None:
    assert rejected([{"n": f"x:{n}", "u": u, "v": 1}]) is Reason.UNKNOWN_METRIC


def test_unknown_metric_and_unknown_unit() -> None:
    assert rejected([{"n": "x:rpm", "u": "1/min", "v": 1}]) is Reason.UNKNOWN_METRIC
    assert rejected([{"n": "x:temp", "u": "furlong", "v": 1}]) is Reason.UNKNOWN_METRIC
    assert rejected([{"n": "x:gizmo", "v": 1}]) is Reason.UNKNOWN_METRIC
    assert rejected([{"n": "x:temp", "u": "Pa", "v": 1}]) is Reason.UNKNOWN_METRIC
    # one unknown record refuses the whole pack
    assert rejected([{"n": "x:speed_kmh", "v": 1}, {"n": "x:gizmo", "v": 1}]) is (
        Reason.UNKNOWN_METRIC
    )


def test_only_non_numeric_records_is_schema() -> None:
    assert rejected([{"n": "x:label", "vs": "Machine Room"}, {"n": "x:open", "vb": True}]) is (
        Reason.SCHEMA
    )
    assert rejected([{"bn": "x:"}]) is Reason.SCHEMA
    assert rejected([{"n": "x:lat", "u": "lat", "v": 60.1}]) is Reason.SCHEMA


# --- refusals ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"n": "x:speed_kmh", "v": 1}, Reason.SCHEMA),  # not an array
        ([], Reason.SCHEMA),
        (["x"], Reason.SCHEMA),
        ([{"n": "x:speed_kmh", "v": "1"}], Reason.SCHEMA),
        ([{"n": "x:speed_kmh", "v": True}], Reason.SCHEMA),
        ([{"n": 5, "v": 1}], Reason.SCHEMA),
        ([{"n": "x:speed_kmh", "v": 1, "vs": "a"}], Reason.SCHEMA),  # two values
        ([{"n": "x:speed_kmh", "v": 1, "foo_": 1}], Reason.SCHEMA),  # must-understand
        ([{"bver": 11, "n": "x:speed_kmh", "v": 1}], Reason.SCHEMA),  # newer than RFC 8428
        ([{"bver": 0, "n": "x:speed_kmh", "v": 1}], Reason.SCHEMA),
        ([{"bver": 10, "n": "x:speed_kmh", "v": 1}, {"bver": 5, "n": "x:speed_kmh", "t": 1,
                                                     "v": 1}], Reason.SCHEMA),
        ([{"v": 1}], Reason.SCHEMA),  # no name at all
        ([{"n": "x:speed_kmh", "v": 1}, {"n": "x:speed_kmh", "v": 2}], Reason.SCHEMA),
        ([{"n": "bad name:speed_kmh", "v": 1}], Reason.INVALID_ID),
        ([{"n": "-x:speed_kmh", "v": 1}], Reason.INVALID_ID),
        ([{"n": "é:speed_kmh", "v": 1}], Reason.INVALID_ID),
        ([{"n": "x:speed_kmh", "v": float("nan")}], Reason.NOT_FINITE),
        ([{"n": "x:speed_kmh", "v": float("inf")}], Reason.NOT_FINITE),
        ([{"n": "x:speed_kmh", "v": 10**400}], Reason.NOT_FINITE),
        ([{"bv": 1e308, "n": "x:speed_kmh", "v": 1e308}], Reason.NOT_FINITE),
        ([{"n": "x:power", "u": "MW", "v": 1e308}, {"n": "x:load", "u": "GW", "v": 1}],
         Reason.SCHEMA),  # load and power are one metric: twice at one time
        ([{"n": "x:power", "u": "GW", "v": 1e307}], Reason.NOT_FINITE),
        ([{"n": "x:speed_kmh", "t": 1e300, "v": 1}], Reason.BAD_TIMESTAMP),
        ([{"n": "x:speed_kmh", "t": -1e12, "v": 1}], Reason.BAD_TIMESTAMP),
        ([{"n": "x:speed_kmh", "t": float("nan"), "v": 1}], Reason.BAD_TIMESTAMP),
        ([{"n": "x:lat", "u": "lat", "v": 91}, {"n": "x:speed_kmh", "v": 1}],
         Reason.OUT_OF_RANGE),
    ],
)
def test_refusals(doc, reason: Reason) -> None:
    assert rejected(doc) is reason


def test_sniff() -> None:
    assert DEC.sniff(sample("rfc8428-5.1.3-multiple-measurements.json"))
    assert DEC.sniff([{"n": "x", "v": 1}])
    assert not DEC.sniff([])
    assert not DEC.sniff([{"id": "x", "type": "Foo"}])
    assert not DEC.sniff({"n": "x", "v": 1})
    assert not DEC.sniff("[]")


def test_pick_routes_senml_to_this_decoder() -> None:
    decs = all_decoders()
    assert [d.name for d in decs] == ["json", "senml", "fiware"]
    assert pick(decs, sample("rfc8428-5.1.1-single-datapoint.json")).name == "senml"
    assert pick(decs, {"sensor_id": "a", "metrics": {"speed_kmh": 1}}).name == "json"
