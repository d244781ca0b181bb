"""Hourly windows folded from the closed minutes (streams/hourly.py), without servers: exact
statistics of the hour, event-time closing, replay after a crash, and the hourly district
roll-ups. The worker runs this same WindowStage (streams/app.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from urbanbrain.streams.derive import IndexCalculator
from urbanbrain.streams.hourly import SHARDS, Accumulator, shard_of
from urbanbrain.streams.processor import WindowStage
from urbanbrain.streams.rollup_stage import RollupStage, points_to_lines
from urbanbrain.streams.settings import StreamsSettings
from urbanbrain.streams.state import DictStore

HOUR = 3_600_000
H0 = 1_700_000_000_000 // HOUR * HOUR  # an hour boundary
TOPIC = "readings.traffic"


def readings(partition_sensors: list[str], start: int, end: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for ts in range(start, end, 10_000):
        for i, s in enumerate(partition_sensors):
            out.append({"sensor_id": s, "domain": "traffic", "kind": "loop",
                        "district": f"d{i % 2}", "ts": ts + i, "recv": ts,
                        "metrics": {"speed_kmh": round(rng.uniform(5, 80), 1),
                                    "vehicle_count": float(rng.randint(0, 9))}})
    return out


def records(rs: list[dict], per: int = 12) -> list[tuple[int, list[dict]]]:
    return [(i, rs[j:j + per]) for i, j in enumerate(range(0, len(rs), per))]


def parse(text: str) -> tuple[str, dict[str, str], dict[str, str], int]:
    head, fields, ts = text.split(" ")
    meas, *tags = head.split(",")
    return (meas, dict(t.split("=") for t in tags), dict(f.split("=", 1) for f in fields.split(",")),
            int(ts))


def run(stage: WindowStage, recs, partition: int = 0, finish: bool = True):
    hourly, partials = [], []
    for off, batch in recs:
        res = stage.process(TOPIC, partition, [(off, batch)])
        out = stage.render(TOPIC, partition, res)
        hourly += out.hourly_lines
        partials += [p for p in out.partials if p.get("size") == "1h"]
        if finish:
            stage.finish(partition, res)
    return hourly, partials


def settings() -> StreamsSettings:
    return StreamsSettings(streams_lateness_s=60, kafka_partitions=2, streams_rollup_grace_s=0)


def test_an_hour_is_exactly_the_readings_of_its_hour_and_closes_on_event_time():
    rs = readings(["a", "b", "c"], H0 - 20 * 60_000, H0 + 2 * HOUR + 10 * 60_000)
    stage = WindowStage(settings(), DictStore(), IndexCalculator(None))
    lines, partials = run(stage, records(rs))
    agg = {(t["sensor"], ts): f for m, t, f, ts in map(parse, lines) if m == "agg_sensor_1h"}
    # three hours started; the last one has not closed (the watermark is 10 min into it)
    assert sorted({ts for _, ts in agg}) == [H0 - HOUR, H0, H0 + HOUR]
    for sensor in "abc":
        mine = [r for r in rs if r["sensor_id"] == sensor and H0 <= r["ts"] < H0 + HOUR]
        speeds = np.array([r["metrics"]["speed_kmh"] for r in mine])
        f = agg[(sensor, H0)]
        assert float(f["speed_kmh_count"]) == len(mine) == 360
        vehicles = np.array([r["metrics"]["vehicle_count"] for r in mine])
        # a loop's mean speed is vehicle-weighted (streams/aggregates.py), over the hour too
        assert float(f["speed_kmh_mean"]) == pytest.approx((speeds * vehicles).sum()
                                                           / vehicles.sum())
        assert float(f["speed_kmh_min"]) == speeds.min()
        assert float(f["speed_kmh_max"]) == speeds.max()
        assert float(f["speed_kmh_last"]) == speeds[-1]
        assert float(f["vehicle_count_sum"]) == sum(r["metrics"]["vehicle_count"] for r in mine)
    # the hour's indices: same measurement and tags as the minutes', window=1h
    ti = {(t["sensor"], ts): (t, f) for m, t, f, ts in map(parse, lines) if m == "traffic_index"}
    tags, f = ti[("a", H0)]
    assert tags["window"] == "1h" and tags["district"] == "d0"
    vehicles = sum(r["metrics"]["vehicle_count"] for r in rs
                   if r["sensor_id"] == "a" and H0 <= r["ts"] < H0 + HOUR)
    assert float(f["flow_vph"]) == pytest.approx(vehicles)  # a full hour: vehicles per hour
    # the first hour holds only the 20 minutes the partition saw: flow over those minutes
    first = [r for r in rs if r["sensor_id"] == "a" and r["ts"] < H0]
    _, f0 = ti[("a", H0 - HOUR)]
    assert float(f0["flow_vph"]) == pytest.approx(
        sum(r["metrics"]["vehicle_count"] for r in first) * 3)
    assert [p["start"] for p in partials] == [H0 - HOUR, H0, H0 + HOUR]
    # closed hours leave no accumulator behind; the open one is in the table, one entry
    # per shard its sensors fall in
    keys = sorted(k for k in stage.store.data if "|h|" in k)
    assert keys == sorted(f"{TOPIC}|0|h|{H0 + 2 * HOUR}|{k}"
                          for k in {shard_of(s) for s in ("a", "b", "c")})


def test_a_crash_replays_to_the_same_hour():
    rs = readings(["a", "b"], H0, H0 + HOUR + 5 * 60_000, seed=3)
    recs = records(rs, per=10)
    ref_lines, _ = run(WindowStage(settings(), DictStore(), IndexCalculator(None)), recs)
    ref = {(m, tuple(sorted(t.items())), ts): f for m, t, f, ts in map(parse, ref_lines)}
    assert any(m == "agg_sensor_1h" for m, _, _ in ref)

    # worker 1 processes 60 % of the records (half an hour folded), then, for the record that
    # closes the hour, writes the accumulator but dies before its outputs and marks
    store = DictStore()
    w1 = WindowStage(settings(), store, IndexCalculator(None))
    cut = len(recs) * 6 // 10
    run(w1, recs[:cut])
    closing = next(i for i, (_, b) in enumerate(recs) if b[0]["ts"] >= H0 + HOUR + 61_000)
    run(w1, recs[cut:closing + 1], finish=False)
    # worker 2 takes over from the table and replays from an offset before the cut
    w2 = WindowStage(settings(), store, IndexCalculator(None))
    lines, _ = run(w2, recs[cut - 5:])
    got = {(m, tuple(sorted(t.items())), ts): f for m, t, f, ts in map(parse, lines)}
    assert got == ref
    assert w2.hourly.stats.replayed_minutes > 0
    assert not [k for k in store.data if k.startswith(f"{TOPIC}|0|h|{H0}")]


def test_a_big_partition_writes_its_hour_in_bounded_entries():
    """An hour of a partition with many sensors: no changelog entry holds the whole
    partition (one did, and at 16,700 loops it outgrew Kafka's request limit and crashed
    the worker); the hour's statistics are those of one entry."""
    sensors = [f"tl-{i:05d}" for i in range(800)]
    rs = readings(sensors, H0, H0 + 3 * 60_000, seed=5)
    store = DictStore()
    stage = WindowStage(settings(), store, IndexCalculator(None))
    run(stage, records(rs, per=400))
    entries = {k: v for k, v in store.data.items() if f"|h|{H0}|" in k}
    assert len(entries) == SHARDS  # 800 sensors fill every shard
    total = sum(len(v) for v in entries.values())
    assert max(len(v) for v in entries.values()) < 2.5 * total / SHARDS
    # the shards hold every sensor exactly once, with the minutes closed so far
    accs = [Accumulator.decode(v) for v in entries.values()]
    held = [s for a in accs for s in set(a.frame["sensor"].tolist())]
    assert sorted(held) == sensors
    assert H0 in accs[0].panes and all(a.panes == accs[0].panes for a in accs)


def test_an_hour_of_the_unsharded_layout_is_recovered_and_deleted():
    """A table written before the hour was sharded (one entry per partition and hour):
    a worker of this version takes it over mid-hour and closes the same hour as one that
    ran throughout, and leaves no entry of either layout behind."""
    sensors = ["a", "b", "c", "d", "e"]
    rs = readings(sensors, H0, H0 + HOUR + 5 * 60_000, seed=7)
    recs = records(rs, per=10)
    ref_lines, _ = run(WindowStage(settings(), DictStore(), IndexCalculator(None)), recs)
    ref = {(m, tuple(sorted(t.items())), ts): f for m, t, f, ts in map(parse, ref_lines)}

    store = DictStore()
    w1 = WindowStage(settings(), store, IndexCalculator(None))
    cut = len(recs) // 2
    run(w1, recs[:cut])
    # rewrite the open hour's shards as the old single entry
    prefix = f"{TOPIC}|0|h|"
    shards = [k for k in store.data if k.startswith(f"{prefix}{H0}|")]
    accs = [Accumulator.decode(store.data.pop(k)) for k in shards]
    from urbanbrain.streams.aggregates import merge
    old = Accumulator(merge([a.frame for a in accs]), set().union(*(a.panes for a in accs)),
                      {s: m for a in accs for s, m in a.meta.items()})
    store.put(0, f"{prefix}{H0}", old.encode())

    w2 = WindowStage(settings(), store, IndexCalculator(None))
    lines, _ = run(w2, recs[cut - 3:])
    got = {(m, tuple(sorted(t.items())), ts): f for m, t, f, ts in map(parse, lines)}
    hour = {k: v for k, v in ref.items() if k[2] == H0}
    assert hour and {k: v for k, v in got.items() if k[2] == H0} == hour
    assert not [k for k in store.data if k.startswith(f"{prefix}{H0}")]


def test_hourly_district_and_city_rollups_from_two_partitions():
    st = settings()
    ru = RollupStage(DictStore(), expected_sources=2, grace_s=0, retention_ms=2 * HOUR)
    per_partition = []
    for partition, sensors in ((0, ["a", "b"]), (1, ["c", "d"])):
        rs = readings(sensors, H0, H0 + HOUR + 5 * 60_000, seed=partition)
        stage = WindowStage(st, DictStore(), IndexCalculator(None))
        minute_partials = []
        for off, batch in records(rs):
            res = stage.process(TOPIC, partition, [(off, batch)])
            out = stage.render(TOPIC, partition, res)
            minute_partials += out.partials
            stage.finish(partition, res)
        for p in minute_partials:
            ru.add(partition, p)
        per_partition.append(rs)
    lines = points_to_lines(ru.due(now=0.0))
    by_meas: dict[str, list] = {}
    for m, t, f, ts in map(parse, lines):
        by_meas.setdefault(m, []).append((t, f, ts))
    # the hour at H0 and the minute at H0 are two roll-ups, never one
    assert {ts for _, _, ts in by_meas["district_1h"]} == {H0}
    assert H0 in {ts for _, _, ts in by_meas["district_1m"]}
    everything = [r for rs in per_partition for r in rs if H0 <= r["ts"] < H0 + HOUR]
    (city_tags, city, _), = by_meas["city_1h"]
    assert city_tags == {"domain": "traffic"}
    assert float(city["speed_kmh_count"]) == len(everything) == 4 * 360
    assert float(city["sensors"]) == 4.0 and float(city["districts"]) == 2.0
    # vehicle-weighted over the whole city, as district_1m/city_1m are
    assert float(city["speed_kmh_mean"]) == pytest.approx(
        sum(r["metrics"]["speed_kmh"] * r["metrics"]["vehicle_count"] for r in everything)
        / sum(r["metrics"]["vehicle_count"] for r in everything))
    d0 = next(f for t, f, _ in by_meas["district_1h"] if t["district"] == "d0")
    assert float(d0["vehicle_count_sum"]) == sum(
        r["metrics"]["vehicle_count"] for r in everything if r["district"] == "d0")
