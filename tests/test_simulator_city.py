"""The city model: deterministic from (seed, size), registry CSV in the contract's columns."""

from __future__ import annotations

import csv
import json

from urbanbrain.metrics import METRICS
from urbanbrain.simulators.city import KINDS, City

CONTRACT_COLUMNS = ["sensor_id", "domain", "kind", "district", "lat", "lon", "metrics",
                    "road_class", "free_flow_kmh", "neighbours", "nominal_kv"]


def test_same_seed_same_city_other_seed_other_city() -> None:
    a, b, c = City.generate(7, "small"), City.generate(7, "small"), City.generate(8, "small")
    def key(city: City) -> list[tuple]:
        return [(s.sensor_id, s.district, s.lat, s.lon, s.upstream) for s in city.sensors]

    assert key(a) == key(b)
    assert key(a) != key(c)
    assert [d.polygon for d in a.districts] == [d.polygon for d in b.districts]


def test_sizes_and_every_district_has_every_service() -> None:
    for size, n in (("tiny", 120), ("medium", 1200), (3000, 3000)):
        city = City.generate(1, size)
        assert len(city.sensors) == n
        for d in city.district_ids:
            kinds = {s.kind for s in city.in_district(d)}
            assert {"air_quality", "noise", "water_main", "substation", "loop"} <= kinds, d
    ids = [s.sensor_id for s in City.generate(1, "large").sensors]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 7 and i[2] == "-" for i in ids)  # tl-0001, aq-0001, ...


def test_sensor_metrics_are_canonical_and_match_domain() -> None:
    city = City.generate(3, "small")
    for s in city.sensors:
        assert s.metrics == KINDS[s.kind][2]
        for m in s.metrics:
            assert METRICS[m].domain == s.domain


def test_loops_have_road_neighbours_in_driving_order() -> None:
    city = City.generate(5, "small")
    loops = city.of_kind("loop")
    assert {s.road_class for s in loops} == {"arterial", "local"}
    for s in loops:
        assert s.free_flow_kmh > 0
        if s.upstream:
            up = city.by_id[s.upstream]
            assert up.downstream == s.sensor_id and up.road_id == s.road_id
        assert s.neighbours == [x for x in (s.upstream, s.downstream) if x]
    chain = city.upstream_chain(loops[10].sensor_id, 3)
    assert all(city.by_id[x].road_id == loops[10].road_id for x in chain)


def test_registry_csv_has_the_contract_columns(tmp_path) -> None:  # noqa: ANN001
    city = City.generate(11, "small")
    path = city.write_registry(tmp_path / "registry.csv")
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == CONTRACT_COLUMNS
    by_id = {r[0]: dict(zip(CONTRACT_COLUMNS, r)) for r in rows[1:]}
    assert len(by_id) == len(city.sensors)
    loop = next(r for r in by_id.values() if r["domain"] == "traffic" and ";" in r["neighbours"])
    assert loop["road_class"] in ("arterial", "local") and float(loop["free_flow_kmh"]) > 0
    assert all(n in by_id for n in loop["neighbours"].split(";"))
    assert loop["metrics"] == "vehicle_count;occupancy_pct;speed_kmh;flow_vph"
    other = next(r for r in by_id.values() if r["domain"] == "water")
    assert other["road_class"] == other["free_flow_kmh"] == other["neighbours"] == ""
    assert other["nominal_kv"] == ""
    # each substation's own nominal voltage, the one the simulator drives it at
    subs = [r for r in by_id.values() if r["domain"] == "power"]
    assert subs and all(float(r["nominal_kv"]) == city.by_id[r["sensor_id"]].params["nominal_kv"]
                        for r in subs)
    assert {float(r["nominal_kv"]) for r in subs} <= {10.0, 20.0}
    lat0, lon0 = city.centre
    assert all(abs(float(r["lat"]) - lat0) < 0.3 and abs(float(r["lon"]) - lon0) < 0.4
               for r in by_id.values())


def test_geojson_exports(tmp_path) -> None:  # noqa: ANN001
    city = City.generate(2, "tiny")
    paths = city.write_geojson(tmp_path)
    docs = {p.stem: json.loads(p.read_text()) for p in paths}
    assert len(docs["districts"]["features"]) == len(city.districts)
    ring = docs["districts"]["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1]
    assert len(docs["sensors"]["features"]) == len(city.sensors)
    f = docs["sensors"]["features"][0]
    assert f["geometry"]["type"] == "Point" and f["properties"]["sensor_id"] == f["id"]
