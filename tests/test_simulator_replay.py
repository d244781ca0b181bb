"""Recording and replay: exact round trip through files and through a real mosquitto."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from conftest import role_settings, make_stack
from urbanbrain.localstack import LocalStack
from urbanbrain.simulators.city import City
from urbanbrain.simulators.engine import Simulation
from urbanbrain.simulators.faults import FaultConfig
from urbanbrain.simulators.incidents import Schedule
from urbanbrain.simulators.record import (
    FrameTable, MqttRecorder, frame_readings, read_readings, read_table, write_jsonl, write_table,
)
from urbanbrain.simulators.replay import replay

T0 = 1767600000000


@pytest.fixture(scope="module")
def mqtt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = make_stack(tmp_path_factory.mktemp("sim-mqtt")).start(kafka=False, influx=False)
    try:
        yield stack
    finally:
        stack.stop()


def _run(n_ticks: int = 5, size: str = "tiny") -> tuple[City, list[dict], pd.DataFrame]:
    city = City.generate(31, size)
    sim = Simulation(city, 31, start_ms=T0, schedule=Schedule(city, 31),
                     faults=FaultConfig(skew_per_sensor_day=5.0, spike_prob=0.01))
    table = FrameTable(city)
    readings = []
    for f in sim.frames(n_ticks):
        table.add(f)
        readings += list(frame_readings(city, f))
    return city, readings, table.to_frame()


def _key(readings: list[dict]) -> list[tuple]:
    return sorted((r["sensor_id"], r["ts"], tuple(r["metrics"].items())) for r in readings)


@pytest.mark.parametrize("suffix", ["jsonl", "parquet", "csv"])
def test_files_round_trip_timestamps_and_values_exactly(tmp_path: Path, suffix: str) -> None:
    _, readings, df = _run()
    path = write_table(df, tmp_path / f"rec.{suffix}")
    back = read_table(path)
    assert back["ts"].tolist() == df["ts"].tolist()
    assert back["value"].tolist() == df["value"].tolist()  # exact float equality
    assert back["sensor_id"].astype(str).tolist() == df["sensor_id"].astype(str).tolist()
    assert _key(read_readings(path)) == _key(readings)
    assert {r["district"] for r in read_readings(path)} == {r["district"] for r in readings}


def test_jsonl_of_readings_round_trips(tmp_path: Path) -> None:
    _, readings, _ = _run()
    write_jsonl(readings, tmp_path / "r.jsonl")
    assert read_readings(tmp_path / "r.jsonl") == readings


@pytest.mark.servers
@pytest.mark.parametrize("fmt", ["json", "senml", "fiware"])
def test_replay_to_mosquitto_equals_the_recording(mqtt: LocalStack, tmp_path: Path,
                                                  fmt: str) -> None:
    _, readings, df = _run(n_ticks=3)
    path = write_table(df, tmp_path / "rec.parquet")
    rec = MqttRecorder(role_settings(mqtt, "ingest"))  # the account that reads city/#
    try:
        progress = replay(role_settings(mqtt, "simulator"), path, speed=0, fmt=fmt, qos=1)
        assert progress.readings == len(readings)
        rec.wait_for(len(readings), timeout_s=20)
    finally:
        rec.stop()
    assert rec.undecodable == 0
    assert _key(rec.readings) == _key(readings)
    out = rec.save(tmp_path / "live.jsonl")
    assert _key(read_readings(out)) == _key(readings)


@pytest.mark.servers
def test_replay_keeps_event_times_and_paces_by_speed(mqtt: LocalStack) -> None:
    # 3 ticks one minute apart at 120x: ~1 s of wall time, timestamps untouched
    _, readings, _ = _run(n_ticks=3)
    arrivals: list[float] = []
    rec = MqttRecorder(role_settings(mqtt, "ingest"))
    orig = rec.client.on_message

    def on_message(c, u, msg):  # noqa: ANN001
        arrivals.append(time.monotonic())
        orig(c, u, msg)

    rec.client.on_message = on_message
    try:
        t0 = time.monotonic()
        replay(role_settings(mqtt, "simulator"), readings, speed=120.0, fmt="senml",
               stop_event=threading.Event())
        elapsed = time.monotonic() - t0
        rec.wait_for(len(readings), timeout_s=10)
    finally:
        rec.stop()
    assert 0.9 <= elapsed < 5.0
    assert _key(rec.readings) == _key(readings)
