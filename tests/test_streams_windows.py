"""Window semantics of the streams room, without servers: panes, hopping windows, lateness,
replay idempotency and recovery from the changelog entries."""

from __future__ import annotations

import time

import pytest

from urbanbrain.streams.aggregates import by_sensor
from urbanbrain.streams.derive import IndexCalculator
from urbanbrain.streams.processor import WindowStage
from urbanbrain.streams.rollup_stage import RollupStage
from urbanbrain.streams.settings import StreamsSettings
from urbanbrain.streams.state import DictStore
from urbanbrain.streams.windows import PartitionWindows

T0 = 1_700_000_040_000 // 60_000 * 60_000  # a minute boundary
MIN = 60_000


def rd(sensor: str, ts: int, **metrics: float) -> dict:
    return {"sensor_id": sensor, "domain": "traffic", "kind": "loop", "district": "d1",
            "ts": ts, "recv": ts, "metrics": metrics}


def windows(pw_or_res_list) -> dict[tuple[str, int], dict]:
    out = {}
    for res in pw_or_res_list:
        for w in res.windows:
            out[(w.size, w.start)] = by_sensor(w.frame)
    return out


def feed(pw: PartitionWindows, batches: list[list[dict]], first_offset: int = 0) -> list:
    return [pw.process([(first_offset + i, b)]) for i, b in enumerate(batches)]


def test_out_of_order_within_lateness_and_late_readings():
    pw = PartitionWindows("readings.traffic", 0, lateness_ms=2 * MIN)
    batches = [
        [rd("a", T0 + 1_000, speed_kmh=10.0), rd("a", T0 + 30_000, speed_kmh=30.0)],
        [rd("a", T0 + MIN + 5_000, speed_kmh=50.0)],
        # out of order: back into the first minute, within the 2-min lateness
        [rd("a", T0 + 20_000, speed_kmh=20.0)],
        # watermark = T0+3m+1s - 2m = T0+1m+1s → pane [T0, T0+1m) closes
        [rd("a", T0 + 3 * MIN + 1_000, speed_kmh=70.0)],
        # too late for the closed pane: dead-lettered, never counted
        [rd("a", T0 + 59_000, speed_kmh=999.0), rd("a", T0 + MIN + 6_000, speed_kmh=60.0)],
        # watermark passes T0+3m → panes 1 and 2 close
        [rd("a", T0 + 5 * MIN, speed_kmh=80.0)],
    ]
    results = feed(pw, batches)
    late = [r for res in results for r in res.late]
    assert [r["metrics"]["speed_kmh"] for r in late] == [999.0]
    w = windows(results)
    first = w[("1m", T0)]["a"]["speed_kmh"]
    assert (first.count, first.sum, first.min, first.max, first.last) == (3, 60.0, 10.0, 30.0, 30.0)
    second = w[("1m", T0 + MIN)]["a"]["speed_kmh"]
    assert (second.count, second.mean, second.last) == (2, 55.0, 60.0)
    assert ("1m", T0 + 2 * MIN) not in w  # empty pane: no sensor window
    hop = w[("5m", T0 - 3 * MIN)]["a"]["speed_kmh"]  # [T0-3m, T0+2m)
    assert (hop.count, hop.sum, hop.min, hop.max) == (5, 170.0, 10.0, 60.0)
    assert pw.emitted_until == T0 + 3 * MIN


def test_replayed_records_are_idempotent_and_recovery_continues_exactly():
    def stream() -> list[list[dict]]:
        out = []
        for i in range(40):  # 40 records, 10 s apart, 2 sensors
            ts = T0 + i * 10_000
            out.append([rd("a", ts, vehicle_count=float(i)), rd("b", ts + 1, vehicle_count=1.0)])
        out.append([rd("a", T0 + 20 * MIN, vehicle_count=0.0)])
        return out

    ref = PartitionWindows("readings.traffic", 1, lateness_ms=MIN)
    expected = windows(feed(ref, stream()))

    # a worker processes 25 records, writes them to its table, dies; the next replays 20..
    s = StreamsSettings(streams_lateness_s=60)
    store = DictStore()
    st = WindowStage(s, store, IndexCalculator(None))
    got = []
    for off, b in enumerate(stream()[:25]):
        res = st.process("readings.traffic", 1, [(off, b)])
        st.render("readings.traffic", 1, res)
        st.finish(1, res)
        got.append(res)
    st2 = WindowStage(s, store, IndexCalculator(None))
    for off, b in list(enumerate(stream()))[20:]:
        res = st2.process("readings.traffic", 1, [(off, b)])
        st2.finish(1, res)
        got.append(res)
    assert windows(got) == expected
    assert sum(len(r.late) for r in got) == 0
    # spent panes were deleted from the table: only the open tail and the mark remain
    assert len(store.data) < 10


def test_indices_and_rollups_from_windows():
    s = StreamsSettings(streams_lateness_s=0, kafka_partitions=2, streams_rollup_grace_s=0)
    st = WindowStage(s, DictStore(), IndexCalculator(None, default_road_class="arterial"))
    recs = [(0, [rd("a", T0 + 1, speed_kmh=30.0, vehicle_count=10.0, occupancy_pct=20.0),
                 rd("b", T0 + 2, speed_kmh=60.0, vehicle_count=5.0)]),
            (1, [rd("a", T0 + MIN + 1, speed_kmh=1.0)])]
    res = st.process("readings.traffic", 0, recs)
    out = st.render("readings.traffic", 0, res)
    ti = {ln.split(",sensor=")[1].split(",")[0]: ln for ln in out.lines
          if ln.startswith("traffic_index") and "window=1m" in ln}
    assert "congestion_index=0.5" in ti["a"] and 'los="D"' in ti["a"]  # 50 % is not > 50 % → D
    assert "flow_vph=600.0" in ti["a"]  # 10 vehicles in 1 min
    assert "congestion_index=0.0" in ti["b"] and 'los="A"' in ti["b"]
    ru = RollupStage(DictStore(), expected_sources=2, grace_s=0, retention_ms=3600_000)
    for p in out.partials:
        ru.add(0, p)
    (domain, start, points), = ru.due(now=0.0)
    district = dict((m, f) for m, _, f in points)["district_1m"]
    assert district["vehicle_count_sum"] == 15.0 and district["sensors"] == 2.0
    assert district["congestion_index_mean"] == pytest.approx(0.25)
    assert district["flow_vph_total"] == 900.0


def test_a_catch_up_batch_in_runs_gives_the_windows_of_one_batch():
    """The worker takes a partition's records through the stages in runs of at most
    streams_yield_readings readings, so the event loop breathes between them; the windows
    must be those of the records taken whole."""
    from urbanbrain.streams.worker import runs

    records = []
    for i in range(60):  # 60 records of 20 readings, 3 s apart per record
        ts = T0 + i * 3_000
        records.append((i, [rd(f"s{j}", ts + j, vehicle_count=float(i + j)) for j in range(20)]))
    records.append((60, [rd("s0", T0 + 30 * MIN, vehicle_count=0.0)]))  # closes every pane

    parts = list(runs(records, 50))
    assert [r for p in parts for r in p] == records  # each record once, in order
    assert len(parts) == 30 and all(sum(len(b) for _, b in p) <= 50 for p in parts)
    assert [len(p) for p in runs([(0, [{}] * 80), (1, [{}])], 50)] == [1, 1]  # big one alone

    whole = PartitionWindows("readings.traffic", 0, lateness_ms=MIN)
    expected = windows([whole.process(records)])
    in_runs = PartitionWindows("readings.traffic", 0, lateness_ms=MIN)
    got = windows([in_runs.process(p) for p in parts])
    assert got == expected and len(expected) >= 10


@pytest.mark.parametrize("which,sizes", [("all", {"1m", "5m"}), ("1m", {"1m"}), ("off", set())])
def test_which_windows_go_to_the_aggregates_topic(which: str, sizes: set[str]) -> None:
    """streams_aggregates chooses the Kafka records only; InfluxDB gets every window."""
    s = StreamsSettings(streams_lateness_s=0, streams_aggregates=which)
    st = WindowStage(s, DictStore(), IndexCalculator(None))
    recs = [(i, [rd("a", T0 + i * MIN + 1, vehicle_count=float(i))]) for i in range(8)]
    out = st.render("readings.traffic", 0, st.process("readings.traffic", 0, recs))
    assert {r["window"] for r in out.records} == sizes
    assert {"agg_sensor_1m", "agg_sensor_5m"} <= {ln.split(",", 1)[0] for ln in out.lines}


def test_aligned_hops_store_one_sensor_point_per_window_length_and_every_index_point():
    """streams_sensor_hops=aligned: agg_sensor_5m only for hops that start on a multiple
    of 5 min (what the dashboards' 5-min buckets read); every 1-min window, every hop's
    index points and every aggregates record stay."""
    def render(which: str):
        s = StreamsSettings(streams_lateness_s=0, streams_sensor_hops=which)
        st = WindowStage(s, DictStore(), IndexCalculator(None, default_road_class="arterial"))
        recs = [(i, [rd("a", T0 + i * MIN + 1, speed_kmh=40.0 + i, vehicle_count=5.0,
                        occupancy_pct=10.0)]) for i in range(16)]
        return st.render("readings.traffic", 0, st.process("readings.traffic", 0, recs))

    def times(out, prefix: str, window: str | None = None) -> list[int]:
        return sorted(int(ln.rsplit(" ", 1)[1]) for ln in out.lines if ln.startswith(prefix)
                      and (window is None or f"window={window}" in ln))

    every, aligned = render("all"), render("aligned")
    hops = times(every, "agg_sensor_5m,")
    assert len(hops) >= 8  # one a minute
    assert times(aligned, "agg_sensor_5m,") == [t for t in hops if t % (5 * MIN) == 0] != []
    assert times(aligned, "agg_sensor_1m,") == times(every, "agg_sensor_1m,")
    assert (times(aligned, "traffic_index,", "5m") == times(every, "traffic_index,", "5m")
            and len(times(every, "traffic_index,", "5m")) == len(hops))
    assert len(aligned.records) == len(every.records)
    assert len(aligned.lines) < len(every.lines)


def test_a_sink_writes_in_the_background_and_forgets_a_failed_batch() -> None:
    import asyncio

    from urbanbrain.streams.sinks.base import BatchingSink

    class Slow(BatchingSink[str]):
        def __init__(self) -> None:
            super().__init__()
            self.got: list[list[str]] = []

        async def write(self, batch: list[str]) -> list[tuple[str, str]]:
            await asyncio.sleep(0.01)
            self.got.append(batch)
            return [(x, "refused") for x in batch if x.startswith("bad")]

    async def go() -> None:
        s = Slow()
        s.add(["a", "bad b"])
        s.start()
        with pytest.raises(RuntimeError):
            s.add(["c"])
            s.start()  # one write in flight at a time
        before = int(time.time() * 1000)
        assert await s.done() == [("bad b", "refused")]  # the write in flight, then "c"
        assert s.got == [["a", "bad b"], ["c"]]
        # when the last write completed, not when done() was asked
        assert s.finished_ms is not None and before <= s.finished_ms <= time.time() * 1000
        finished = s.finished_ms
        await asyncio.sleep(0.05)
        assert s.finished_ms == finished
        s.discard()  # what the failed batch added is gone; the sink works on
        s.add(["d"])
        assert await s.done() == [] and s.got[-1] == ["d"]
        s.add(["e"])
        s.start()
        assert s.finished_ms is None  # a write in flight: nothing stored yet
        s.discard()  # an in-flight write of a failed batch is cancelled
        await asyncio.sleep(0.02)
        assert s.got[-1] == ["d"] and await s.done() == []

    asyncio.run(go())


def test_forward_records_promise_no_more_than_the_readings_still_to_come() -> None:
    """A forward cut into records: the district agent may fold the first records and move
    its clock before it reads the rest, so an earlier record's watermark must not pass
    the oldest reading of the records after it (the live week's late district readings:
    records of one forward all carried its final watermark)."""
    from urbanbrain.streams.alert_stage import Forward
    from urbanbrain.streams.worker import forward_records

    def r(ts: int) -> dict:
        return {"sensor_id": "tl-1", "ts": ts, "metrics": {"speed_kmh": 30.0}}

    f = Forward("readings.traffic|0", 900_000, [r(t) for t in (60_000, 120_000, 600_000,
                                                             180_000, 700_000)])
    parts = forward_records(f, 2)
    assert [len(p.readings) for p in parts] == [2, 2, 1]
    assert [p.wm for p in parts] == [180_000, 700_000, 900_000]
    for i, p in enumerate(parts):  # nothing after a record is older than its promise
        later = [x["ts"] for q in parts[i + 1:] for x in q.readings]
        assert all(p.wm <= t for t in later)
    assert [p.wm for p in forward_records(Forward("s|0", 900_000, []), 2)] == [900_000]
    assert forward_records(Forward("s|0", None, [], warm=True), 2) == []
    assert [p.wm for p in forward_records(Forward("s|0", None, [r(1), r(2), r(3)]), 2)] \
        == [None, None]


def test_window_lines_text_weighted_mean_and_refused_windows() -> None:
    """The exact line of a closed window (the dashboards' queries read these fields), a
    speed over no vehicle (no mean field, not an error) and a window with a non-finite
    value (refused with a reason, the other sensors' lines still written)."""
    from urbanbrain.streams.aggregates import Stats
    from urbanbrain.streams.sinks.lines import window_lines

    rows = {
        "tl 1": {"vehicle_count": Stats(2, 7.0, 25.0, 3.0, 4.0, T0 + 5, 4.0),
                 "speed_kmh": Stats(2, 90.0, 4100.0, 40.0, 50.0, T0 + 5, 50.0,
                                    wsum=170.0, wn=7.0, nw=0)},
        "tl-2": {"speed_kmh": Stats(1, 30.0, 900.0, 30.0, 30.0, T0, 30.0,
                                    wsum=0.0, wn=0.0, nw=0)},
        "tl-3": {"speed_kmh": Stats(1, 30.0, 900.0, float("inf"), 30.0, T0, 30.0)},
    }
    meta = {"tl 1": ("north,a", "loop"), "tl-2": ("north", "loop")}
    lines, bad = window_lines("traffic", "1m", T0, rows, meta, [])
    assert lines == [
        "agg_sensor_1m,district=north\\,a,domain=traffic,kind=loop,sensor=tl\\ 1 "
        "speed_kmh_count=2.0,speed_kmh_mean=24.285714285714285,speed_kmh_min=40.0,"
        "speed_kmh_max=50.0,speed_kmh_last=50.0,vehicle_count_count=2.0,"
        "vehicle_count_mean=3.5,vehicle_count_min=3.0,vehicle_count_max=4.0,"
        f"vehicle_count_last=4.0,vehicle_count_sum=7.0 {T0}",
        "agg_sensor_1m,district=north,domain=traffic,kind=loop,sensor=tl-2 "
        f"speed_kmh_count=1.0,speed_kmh_min=30.0,speed_kmh_max=30.0,speed_kmh_last=30.0 {T0}",
    ]
    assert [s for s, _ in bad] == ["tl-3"] and "non-finite" in bad[0][1]
