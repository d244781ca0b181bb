"""Property: no payload makes a decoder (or the normaliser) fail any other way than a Reject.

For every decoder in ``all_decoders()`` and for ``pick``: ``decode`` returns readings whose
metrics are canonical names with finite float values, or raises ``Reject`` with a
``Reason``. For ``Normaliser.process``: every payload ends as readings or at least one dead
letter with a reason, and no dead letter is the normaliser's catch-all for a decoder crash.

Four strategies × 2,500 examples = 10,000 examples: random JSON-ish documents, mutations of
every sample payload the decoders ship, raw bytes, and documents built from the formats'
own vocabulary (SenML labels, FIWARE entity types and attributes) to reach deep paths.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, currently_in_test_context, given, settings
from hypothesis import event as _event
from hypothesis import strategies as st

from urbanbrain.ingest.decoders import all_decoders, pick
from urbanbrain.ingest.decoders.base import DecodedReading
from urbanbrain.ingest.decoders.fiware.models import MODELS
from urbanbrain.ingest.decoders.senml import LABELS, NAME_ALIASES
from urbanbrain.ingest.normalise import Normaliser
from urbanbrain.ingest.rejects import Reason, Reject
from urbanbrain.metrics import METRICS
from urbanbrain.settings import Settings

DECODERS = all_decoders()
OWN = {"senml", "fiware"}  # decoders of this test's author: checked on lat/lon as well
NOW = int(time.time() * 1000)  # the normaliser's "received"; SenML relative times use the clock
SETTINGS = Settings()
REASONS = {r.value for r in Reason}
DECODERS_DIR = Path(__file__).resolve().parents[1] / "ingest" / "decoders"
SAMPLE_FILES = sorted(
    p for p in DECODERS_DIR.rglob("*") if p.suffix in (".json", ".jsonld") and p.is_file()
)
SAMPLE_BYTES = [p.read_bytes() for p in SAMPLE_FILES]
SAMPLES = [json.loads(b) for b in SAMPLE_BYTES]
FUZZ = settings(
    max_examples=2500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

GOOD_TOPICS = st.sampled_from([
    "city/d01/traffic/loop/tl-0007", "city/d01/traffic/pack/gw-1", "city/d02/environment/aq/aq-1",
    "city/d03/water/main/wm-1", "city/d04/power/feeder/pf-1", "city/d01/power/pack/gw-2",
    "city/d02/environment/pack/gw-3", "city/d03/water/pack/gw-4",
])
BAD_TOPICS = st.sampled_from([
    "city/d01/traffic/loop/", "city/x", "", "city/d01/traffic/loop/tl 7", "city/+/#",
    "city/d01/sewage/loop/s-1",
]) | st.text(max_size=40)
TOPICS = st.integers(0, 6).flatmap(lambda i: BAD_TOPICS if i == 3 else GOOD_TOPICS)


def event(label: str) -> None:
    """hypothesis.event, and a no-op outside a property (the plain sample test below)."""
    if currently_in_test_context():
        _event(label)

# --- values ---------------------------------------------------------------------------------
WORDS = sorted(
    set(LABELS) | set(MODELS) | set(METRICS) | set(NAME_ALIASES)
    | {f.attrs[0] for m in MODELS.values() for f in m.fields}
    | {"id", "type", "value", "object", "unitCode", "observedAt", "metadata", "@value", "@type",
       "@context", "data", "subscriptionId", "features", "properties", "geometry", "location",
       "coordinates", "Point", "Property", "Relationship", "Feature", "FeatureCollection",
       "Notification", "refDevice", "dateObserved", "dateObservedTo", "measurand", "itemType",
       "L1", "L2", "L3", "L12", "L23", "L31", "metrics", "sensor_id", "ts", "lat", "lon"}
)
STRINGS = st.sampled_from([
    "Cel", "K", "degF", "%", "%RH", "/", "/100", "%EL", "lat", "lon", "V", "A", "W", "Hz", "Pa",
    "bar", "l/s", "m3/h", "ppb", "ug/m3", "count", "GQ", "GP", "59", "61", "KMH", "P1", "MTR",
    "G51", "XYZ", "urn:ngsi-ld:Device:dev-1", "urn:ngsi-ld:TrafficFlowObserved:x", "tl-0007:",
    "2016-12-07T11:15:00Z", "2016-03-15T11:00:00/2016-03-15T12:00:00", "9999-12-31T23:59:59",
    "0001-01-01T00:00:00Z", "NaN", "inf", "-1e999", "1e308", "", " ", "\x00", "a\\b", "é:x",
    "\ud7ff", "😀", "yacht", "people", "NO2, 8.0, GQ, x", "cl, nan, M1, y", "x" * 300,
]) | st.sampled_from(WORDS) | st.text(max_size=12)
HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**308, 10**309, -(10**400), 2**28,
                             2**28 - 1, -(2**28)])
NUMBERS = (
    st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -0.0, 1e308, -1e308, 5e-324, 1.276020076001e9, 1e11, 1e12, 0.5])
    | HUGE_INTS
)
SCALARS = st.none() | st.booleans() | NUMBERS | STRINGS
KEYS = st.sampled_from(WORDS) | st.text(max_size=6)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=25,
)


def deep(depth: int, leaf: Any, as_list: bool) -> Any:
    out = leaf
    for _ in range(depth):
        out = [out] if as_list else {"value": out}
    return out


DEEP = st.builds(deep, st.integers(1, 900), SCALARS, st.booleans())

# --- structured: built from the formats' vocabulary ---------------------------------------
def mostly(valid: st.SearchStrategy, odds: int = 12) -> st.SearchStrategy:
    """``odds - 1`` draws in ``odds`` from ``valid``, the rest anything: deep paths, and edges."""
    # the odd one out sits mid-range: hypothesis favours the bounds of an integer range
    return st.integers(0, odds - 1).flatmap(lambda i: SCALARS if i == odds // 2 else valid)


UNITS = st.sampled_from(["Cel", "K", "degF", "%", "%RH", "/", "/100", "%EL", "EL", "lat", "lon",
                         "V", "kV", "A", "W", "kW", "MW", "Hz", "Pa", "kPa", "bar", "l/s", "m3/s",
                         "m3/h", "1/h", "ppb", "ppm", "ug/m3", "count", "km/h", "m/s", "dB", "pH",
                         "NTU", "mm/h", "furlong"])
FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False) | st.integers(-1000, 1000)
_SENML_FIELDS = [  # (label, values, percent of records that carry it)
    ("bn", mostly(st.sampled_from(["tl-0007:", "aq-1:", "wm-1:", "pf-1:", "gw:7:x-1:", "",
                                   "urn:dev:ow:10e2073a01080063:", "2001:db8::2/", "bad name:"])),
     30),
    ("bt", mostly(st.sampled_from([0, NOW / 1000, NOW / 1000 - 86400 * 30, 1.7e9, 2**28])), 25),
    ("bu", mostly(UNITS), 20),
    ("bv", mostly(FINITE), 10),
    ("bver", mostly(st.integers(-1, 12)), 8),
    ("u", mostly(UNITS), 60),
    ("t", mostly(st.integers(-120, 120) | FINITE), 40),
    ("s", mostly(FINITE), 5),
    ("ut", mostly(FINITE), 5),
]
SENML_NAMES = st.sampled_from(sorted(METRICS) + sorted(NAME_ALIASES)
                              + ["lat", "lon", "latitude", "gizmo", "urn:dev:ow:1"])


@st.composite
def senml_record(draw: st.DrawFn) -> dict:
    rec: dict = {}
    if draw(st.integers(0, 9)):
        rec["n"] = draw(mostly(SENML_NAMES))
    for label, values, percent in _SENML_FIELDS:
        if draw(st.integers(0, 99)) < percent:
            rec[label] = draw(values)
    which = draw(st.sampled_from(["v"] * 8 + ["vs", "vb", "vd", "none", "two", "ext"]))
    if which in ("v", "two"):
        rec["v"] = draw(mostly(FINITE | NUMBERS))
    if which in ("vs", "two"):
        rec["vs"] = draw(st.text(max_size=5))
    if which == "vb":
        rec["vb"] = draw(st.booleans())
    if which == "vd":
        rec["vd"] = draw(st.text(max_size=5))
    if which == "ext":
        rec[draw(st.sampled_from(["x_", "ext", "bfoo"]))] = draw(SCALARS)
    return rec


SENML_RECORD = senml_record()
SENML_PACK = st.lists(SENML_RECORD, min_size=1, max_size=8)


@st.composite
def fiware_entity(draw: st.DrawFn) -> dict:
    etype = draw(st.sampled_from(sorted(MODELS)) | STRINGS)
    model = MODELS.get(etype) if isinstance(etype, str) else None
    attrs = [a for f in model.fields for a in f.attrs] if model else []
    names = mostly(st.sampled_from(attrs + ["dateObserved", "dateObservedTo", "refDevice",
                                            "location", "measurand", "itemType"]))
    codes = mostly(st.sampled_from(["GQ", "GP", "59", "61", "CEL", "KEL", "FAH", "P1", "C62",
                                    "KMH", "MTS", "KNT", "MTR", "G51", "MQH", "WTT", "VLT", "HTZ",
                                    "AMP", "M1", "2N", "XYZ"]))
    when = mostly(st.sampled_from(["2026-11-23T08:00:00Z", "2026-11-22T23:00:00",
                                   "2016-03-15T11:00:00/2016-03-15T12:00:00", "garbage"]))
    phases = st.dictionaries(st.sampled_from(["L1", "L2", "L3", "L12", "L23", "L31", "N"]),
                             mostly(FINITE), max_size=4)
    plain = mostly(FINITE | phases)
    value = st.one_of(
        plain,
        st.fixed_dictionaries(
            {"type": st.sampled_from(["Property", "Relationship", "GeoProperty"]),
             "value": st.one_of(plain, st.fixed_dictionaries({"value": plain,
                                                              "unitCode": codes}))},
            optional={"unitCode": codes, "observedAt": when, "object": SCALARS},
        ),
        st.fixed_dictionaries({"value": plain},
                              optional={"metadata": st.fixed_dictionaries(
                                  {"unitCode": st.fixed_dictionaries({"value": codes})})}),
        st.fixed_dictionaries({"type": st.just("Point"),
                               "coordinates": st.lists(mostly(FINITE), max_size=3)}),
        when,
        st.lists(mostly(st.sampled_from(["cl, 0.4, M1, x", "pH, 7, Q30, y", "NO3, 1, M1, z"])),
                 max_size=3),
    )
    ent = {}
    if model:
        for fld in draw(st.lists(st.sampled_from(model.fields), min_size=1, max_size=4)):
            ent[draw(st.sampled_from(fld.attrs))] = draw(value)
    ent.update(draw(st.dictionaries(names, value, max_size=4)))
    ent["type"] = etype
    if draw(st.booleans()):
        ent["id"] = draw(mostly(st.sampled_from(["urn:ngsi-ld:X:tl-0007", "aq-1", "wm-1",
                                                 "urn:ngsi-ld:Device:pf-1"])))
    wrap = draw(st.sampled_from(["none", "list", "v2", "ld", "feature"]))
    if wrap == "list":
        return [ent]
    if wrap == "v2":
        return {"subscriptionId": "s", "data": [ent]}
    if wrap == "ld":
        return {"id": "n", "type": "Notification", "data": [ent]}
    if wrap == "feature":
        return {"type": "Feature", "id": "f", "properties": ent, "geometry": ent.get("location")}
    return ent


STRUCTURED = SENML_PACK | fiware_entity() | st.fixed_dictionaries(
    {"metrics": st.dictionaries(st.sampled_from(sorted(METRICS)) | KEYS, SCALARS, max_size=4)},
    optional={"sensor_id": SCALARS, "ts": SCALARS, "lat": NUMBERS, "lon": NUMBERS},
)


# --- mutations of the shipped samples -------------------------------------------------------
def _paths(doc: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every node, iteratively (documents may be deep)."""
    out: list[tuple[Any, Any]] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in list(items):
            out.append((node, k))
            if isinstance(v, (dict, list)):
                stack.append(v)
    return out


@st.composite
def mutated_sample(draw: st.DrawFn) -> Any:
    doc = json.loads(json.dumps(draw(st.sampled_from(SAMPLES))))  # a private deep copy
    for _ in range(draw(st.integers(1, 6))):
        paths = _paths(doc) if isinstance(doc, (dict, list)) else []
        if not paths:
            break
        node, key = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["drop", "replace", "retype", "nest", "add", "number"]))
        if op == "drop":
            del node[key]
        elif op == "replace":
            node[key] = draw(JSONISH | DEEP)
        elif op == "retype":
            v = node[key]
            node[key] = (str(v) if not isinstance(v, str) else
                         draw(st.sampled_from([[v], {"value": v}, None, True, 0])))
        elif op == "nest":
            node[key] = draw(st.sampled_from([[node[key]], {"value": node[key]},
                                              {"@value": node[key]}]))
        elif op == "add" and isinstance(node, dict):
            node[draw(KEYS)] = draw(JSONISH)
        else:
            node[key] = draw(NUMBERS)
    return doc


# --- raw bytes ------------------------------------------------------------------------------
@st.composite
def mangled_bytes(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLE_BYTES)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i : i + draw(st.integers(1, 40))]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


RAW = (
    st.binary(max_size=400)
    | mangled_bytes()
    | st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass"))
    | st.integers(1, 1200).map(lambda n: b"[" * n + b"]" * n)
)


# --- the properties -------------------------------------------------------------------------
def check_decoded(out: Any, decoder: str) -> None:
    assert isinstance(out, list)
    for r in out:
        assert isinstance(r, DecodedReading)
        assert r.metrics, f"{decoder} returned a reading without metrics"
        for name, value in r.metrics.items():
            assert name in METRICS, f"{decoder}: {name!r} is not canonical"
            assert type(value) is float and math.isfinite(value), (decoder, name, value)
        assert r.ts is None or (type(r.ts) is int), (decoder, r.ts)
        assert r.sensor_id is None or isinstance(r.sensor_id, str)
        if decoder in OWN:
            for c in (r.lat, r.lon):
                assert c is None or (type(c) is float and math.isfinite(c)), (decoder, c)


def call(decoder: Any, doc: Any, topic: str) -> None:
    try:
        out = decoder.decode(doc, topic)
    except Reject as rej:
        assert isinstance(rej.reason, Reason) and isinstance(rej.message, str)
        event(f"{decoder.name}: {rej.reason.value}")
        return
    event(f"{decoder.name}: readings")
    check_decoded(out, decoder.name)


def _has_int_beyond_double(doc: Any) -> bool:
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, int) and not isinstance(node, bool) and abs(node) > 1.7e308:
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def check_document(doc: Any, topic: str) -> None:
    for dec in DECODERS:
        call(dec, doc, topic)
    try:
        chosen = pick(DECODERS, doc)
    except Reject as rej:
        assert rej.reason is Reason.UNKNOWN_FORMAT
        return
    call(chosen, doc, topic)


def check_payload(payload: bytes, topic: str) -> None:
    norm = Normaliser(SETTINGS)
    readings, dead = norm.process(topic, payload, NOW)
    assert readings or dead, "a payload vanished without a reading or a dead letter"
    outcome = f"{len(readings)} readings" if readings else (dead[0]["reason"] if dead else "-")
    event(f"normaliser: {outcome}")
    for d in dead:
        assert d["reason"] in REASONS
        assert isinstance(d["message"], str) and d["message"]
        assert not d["message"].startswith("internal decoder error"), d["message"]
    for r in readings:
        assert r["metrics"]
        for name, value in r["metrics"].items():
            m = METRICS[name]
            assert type(value) is float and m.low <= value <= m.high
        assert type(r["ts"]) is int


def to_bytes(doc: Any) -> bytes:
    try:
        return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")
    except (RecursionError, ValueError):
        return b"[]"


@FUZZ
@given(doc=JSONISH | DEEP, topic=TOPICS)
def test_random_documents(doc: Any, topic: str) -> None:
    check_document(doc, topic)
    check_payload(to_bytes(doc), topic)


@FUZZ
@given(doc=mutated_sample(), topic=TOPICS)
def test_mutated_samples(doc: Any, topic: str) -> None:
    check_document(doc, topic)
    check_payload(to_bytes(doc), topic)


@FUZZ
@given(payload=RAW, topic=TOPICS)
def test_raw_bytes(payload: bytes, topic: str) -> None:
    check_document(payload, topic)  # a decoder handed bytes must refuse them politely
    check_payload(payload, topic)
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return
    check_document(doc, topic)


@FUZZ
@given(doc=STRUCTURED, topic=TOPICS)
def test_structured_documents(doc: Any, topic: str) -> None:
    check_document(doc, topic)
    check_payload(to_bytes(doc), topic)


def test_every_sample_decodes_or_is_refused_with_a_reason() -> None:
    assert len(SAMPLES) >= 25
    for doc in SAMPLES:
        check_document(doc, "city/d01/traffic/pack/gw-1")


def test_json_reading_huge_int() -> None:
    dec = next(d for d in DECODERS if d.name == "json")
    with pytest.raises(Reject) as exc:
        dec.decode({"metrics": {"speed_kmh": 10**400}}, "city/d/traffic/loop/tl-1")
    assert exc.value.reason is Reason.OUT_OF_RANGE


def test_json_reading_huge_int_timestamp() -> None:
    """Found by the fuzz test: an int timestamp beyond the double range is a bad timestamp."""
    dec = next(d for d in DECODERS if d.name == "json")
    with pytest.raises(Reject) as exc:
        dec.decode({"ts": 10**400, "metrics": {"speed_kmh": 1}}, "city/d/traffic/loop/tl-1")
    assert exc.value.reason is Reason.BAD_TIMESTAMP
