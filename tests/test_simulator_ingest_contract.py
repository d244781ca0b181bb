"""Contract check: every simulator format decodes through ingest's real decoders exactly."""

from __future__ import annotations

import math

import orjson
import pytest

from urbanbrain.simulators.city import City
from urbanbrain.simulators.engine import Simulation
from urbanbrain.simulators.faults import FaultConfig
from urbanbrain.simulators.formats import make_encoder
from urbanbrain.simulators.incidents import Schedule
from urbanbrain.simulators.record import frame_readings

import urbanbrain.ingest.decoders as decoders  # noqa: E402
import urbanbrain.ingest.decoders.base as base  # noqa: E402


@pytest.mark.parametrize("fmt", ["json", "senml", "fiware"])
def test_ingest_decodes_what_the_simulator_sends(fmt: str) -> None:
    city = City.generate(12, "small")
    sim = Simulation(city, 12, start_ms=1767600000000, schedule=Schedule.none(city),
                     faults=FaultConfig(skew_per_sensor_day=20.0, dropout_per_sensor_day=20.0))
    frame = list(sim.frames(30))[-1]
    expected = {(r["sensor_id"], r["ts"]): r["metrics"] for r in frame_readings(city, frame)}
    decs = decoders.all_decoders()
    got: dict[tuple[str, int], dict[str, float]] = {}
    for topic, payload, _ in make_encoder(fmt, city).encode(frame):
        doc = orjson.loads(payload)
        for r in base.pick(decs, doc).decode(doc, topic):
            got[(r.sensor_id, r.ts)] = r.metrics
    assert set(got) == set(expected)
    for key, metrics in expected.items():
        assert set(got[key]) >= set(metrics), key
        for m, v in metrics.items():
            assert math.isclose(got[key][m], v, rel_tol=1e-12, abs_tol=1e-9), (key, m)
