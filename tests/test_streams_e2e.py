"""Windows, indices and roll-ups of the Faust worker on real servers (tansu, influxd).

Input is produced straight to Kafka with explicit event times, one reading per record, so the
expected result follows from a small independent reference of the window rules: per source
partition, watermark = max event time so far - lateness; a reading whose 1-min pane already
ended at or before the watermark is late (dead-lettered); a pane is written once the watermark
passes its end.
"""

from __future__ import annotations

import time

import orjson
import pytest
from conftest import component_env
from harness import Component, Influx, read_topic, wait_until

from urbanbrain.reading import Partitioner, decode_batch
from urbanbrain.retention import policy_of
from urbanbrain.streams import indices as ix
from urbanbrain.streams.loadgen import produce_sync

pytestmark = pytest.mark.servers
MIN = 60_000
LATENESS = 120_000
OFFSETS_S = [5, 35, 65, 20, 95, 130, 250, 50, 125, 700]  # 20: out of order; 50: late


def make_readings(run_id: str, t0: int) -> list[dict]:
    sensors = [("traffic", "loop", f"tr-{run_id}-a"), ("traffic", "loop", f"tr-{run_id}-b"),
               ("environment", "air", f"en-{run_id}-a"), ("water", "main", f"wa-{run_id}-a"),
               ("power", "substation", f"pw-{run_id}-a")]
    out = []
    for step, off in enumerate(OFFSETS_S):
        for k, (domain, kind, sid) in enumerate(sensors):
            m = {
                "traffic": {"speed_kmh": 20.0 + 3 * step + k, "vehicle_count": float(step + 1),
                            "occupancy_pct": 10.0 + step},
                "environment": {"pm25_ugm3": 10.0 + step, "no2_ugm3": 30.0 + step,
                                "o3_ugm3": 50.0 + step},
                "water": {"pressure_kpa": 400.0 + step, "flow_ls": 30.0 + step / 2},
                "power": {"voltage_kv": 11.0 + 0.01 * step, "frequency_hz": 50.0 + 0.01 * step,
                          "load_mw": 20.0 + step},
            }[domain]
            out.append({"sensor_id": sid, "domain": domain, "kind": kind,
                        "district": f"d{run_id}", "ts": t0 + off * 1000, "recv": t0,
                        "metrics": m})
    return out


def reference(readings: list[dict], partitions: int):
    """(kept readings, late readings, emitted_until per (domain, partition))."""
    part = Partitioner(partitions)
    state: dict[tuple[str, int], list] = {}
    kept, late = [], []
    for r in readings:
        key = (r["domain"], part(r["sensor_id"]))
        eu, mx = state.get(key, [None, None])
        if eu is not None and r["ts"] // MIN * MIN + MIN <= eu:
            late.append(r)
            continue
        kept.append(r)
        mx = r["ts"] if mx is None else max(mx, r["ts"])
        until = (mx - LATENESS) // MIN * MIN
        state[key] = [until if eu is None else max(eu, until), mx]
    return kept, late, {k: v[0] for k, v in state.items()}


def window_stats(kept, eu, partitions, sensor, metric, start, end):
    part = Partitioner(partitions)
    rs = sorted((r for r in kept if r["sensor_id"] == sensor and start <= r["ts"] < end),
                key=lambda r: r["ts"])
    if not rs or end > eu[(rs[0]["domain"], part(sensor))]:
        return None
    v = [r["metrics"][metric] for r in rs]
    mean = sum(v) / len(v)
    if metric == "speed_kmh":  # the mean speed of the window's vehicles
        w = [r["metrics"]["vehicle_count"] for r in rs]
        mean = sum(a * b for a, b in zip(w, v)) / sum(w)
    return {"count": len(v), "mean": mean, "min": min(v), "max": max(v),
            "last": v[-1], "sum": sum(v)}


def test_windows_indices_rollups_exact(private_stack, run_id, components, tmp_path):
    env = component_env(private_stack, run_id, URBANBRAIN_STREAMS_LATENESS_S="120",
                        URBANBRAIN_STREAMS_ROLLUP_GRACE_S="1",
                        URBANBRAIN_STREAMS_SENSOR_HOPS="all")  # every hop's exact stats
    worker = Component("streams", ["streams", "worker", "-l", "info"], env,
                       tmp_path / "streams.log").start()
    components.append(worker)
    worker.wait_for_log("ASSIGNMENT", timeout=60)
    worker.wait_for_log("Ready", timeout=60)

    # Servers of its own: the windows close on the event time of every source in a
    # partition, so other tests' readings in shared topics would hold them back (or, six
    # hours ahead as these are, make the others' late).
    t0 = (int(time.time() * 1000) + 6 * 3_600_000) // MIN * MIN
    readings = make_readings(run_id, t0)
    parts = Partitioner(4)
    bootstrap = private_stack.env()["URBANBRAIN_KAFKA_BOOTSTRAP"]
    produce_sync(bootstrap, [(f"readings.{r['domain']}", parts(r["sensor_id"]), [r])
                             for r in readings])
    kept, late, eu = reference(readings, 4)
    assert late and len(kept) + len(late) == len(readings)

    influx = Influx.reader(private_stack, f"test_{run_id}")
    district = f"d{run_id}"

    def q(meas: str, where: str = "") -> list[dict]:
        try:
            return influx.rows(f'SELECT * FROM "{policy_of(meas)}"."{meas}" WHERE district = \'{district}\' {where}')
        except Exception:  # noqa: BLE001 - measurement not there yet
            return []

    # every reading stored raw, late ones too
    wait_until(lambda: sum(len(q(d)) for d in ("traffic", "environment", "water", "power"))
               >= len(readings), 60, what="raw points")
    # closed panes: [t0, t0+1m) ... up to eu; 1m windows with data
    expected_1m = {}
    for r in kept:
        for p in range(t0, t0 + 10 * MIN, MIN):
            for metric in r["metrics"]:
                st = window_stats(kept, eu, 4, r["sensor_id"], metric, p, p + MIN)
                if st:
                    expected_1m[(r["sensor_id"], p, metric)] = st
    n_windows = len({(s, p) for s, p, _ in expected_1m})
    wait_until(lambda: len(q("agg_sensor_1m")) >= n_windows, 60, what="1-min windows")
    rows = {(row["sensor"], row["time"]): row for row in q("agg_sensor_1m")}
    assert len(rows) == n_windows
    for (sensor, p, metric), st in expected_1m.items():
        row = rows[(sensor, p)]
        for stat in ("count", "mean", "min", "max", "last"):
            assert row[f"{metric}_{stat}"] == pytest.approx(st[stat], rel=1e-12), (sensor, p, metric, stat)
        if metric == "vehicle_count":
            assert row["vehicle_count_sum"] == st["sum"]

    # a 5-min hopping window: [t0-3m, t0+2m) holds panes 0 and 1
    tr_a = f"tr-{run_id}-a"
    hop = {row["time"]: row for row in q("agg_sensor_5m", f"AND sensor = '{tr_a}'")}
    st = window_stats(kept, eu, 4, tr_a, "speed_kmh", t0, t0 + 2 * MIN)
    assert hop[t0 - 3 * MIN]["speed_kmh_count"] == st["count"]
    assert hop[t0 - 3 * MIN]["speed_kmh_mean"] == pytest.approx(st["mean"])

    # traffic index of sensor a, first minute (default road class arterial: 60 km/h)
    ti = {row["time"]: row for row in q("traffic_index", f"AND sensor = '{tr_a}' AND \"window\" = '1m'")}
    sp = window_stats(kept, eu, 4, tr_a, "speed_kmh", t0, t0 + MIN)
    vc = window_stats(kept, eu, 4, tr_a, "vehicle_count", t0, t0 + MIN)
    assert ti[t0]["flow_vph"] == pytest.approx(vc["sum"] * 60)
    assert ti[t0]["congestion_index"] == pytest.approx(max(0.0, 1 - sp["mean"] / 60))
    assert ti[t0]["los"] == str(ix.level_of_service(sp["mean"], free_flow_kmh=60.0))

    # AQI (US and CN) of the air sensor, first minute, from the window means
    en = f"en-{run_id}-a"
    means = {m: window_stats(kept, eu, 4, en, m, t0, t0 + MIN)["mean"]
             for m in ("pm25_ugm3", "no2_ugm3", "o3_ugm3")}
    us = ix.aqi_us_report(pm25_24h_ugm3=means["pm25_ugm3"], no2_1h_ugm3=means["no2_ugm3"],
                          o3_8h_ugm3=means["o3_ugm3"], o3_1h_ugm3=means["o3_ugm3"])
    # China: the real-time report of the HJ 633 edition in force at the window's start
    ed = ix.cn_edition(str(ix.cn_edition_for(t0)))
    cn_means = {"pm25": means["pm25_ugm3"], "no2": means["no2_ugm3"], "o3": means["o3_ugm3"]}
    cn = ix.aqi_cn_report(ix.realtime_columns(cn_means, edition=ed), edition=ed)
    aqi = {(row["standard"], row["window"]): row for row in q("aqi", f"AND time = {t0}ms")}
    assert aqi[("us", "1m")]["aqi"] == float(us.aqi) and aqi[("us", "1m")]["primary"] == str(us.primary)
    assert aqi[("cn", "1m")]["aqi"] == float(cn.aqi) and aqi[("cn", "1m")]["category"] == str(cn.category)
    assert aqi[("cn", "1m")]["edition"] == ed.tag and aqi[("us", "1m")]["edition"] == "epa-2024"
    assert aqi[("cn", "1m")]["advice"] == str(ix.advice_cn(cn.aqi, edition=ed))

    # district roll-up and city summary of traffic, first minute: both loops together
    def district_row():
        rs = [r for r in q("district_1m", f"AND \"domain\" = 'traffic' AND time = {t0}ms")]
        return rs[0] if rs and rs[0].get("sensors") == 2 else None

    d = wait_until(district_row, 30, what="district roll-up")
    both = [r for r in kept if r["domain"] == "traffic" and t0 <= r["ts"] < t0 + MIN]
    assert d["vehicle_count_sum"] == sum(r["metrics"]["vehicle_count"] for r in both)
    assert d["speed_kmh_count"] == len(both)
    assert d["speed_kmh_mean"] == pytest.approx(  # vehicle-weighted over the district
        sum(r["metrics"]["speed_kmh"] * r["metrics"]["vehicle_count"] for r in both)
        / sum(r["metrics"]["vehicle_count"] for r in both))
    city = influx.rows(f"SELECT * FROM windows.city_1m WHERE \"domain\" = 'traffic' AND time = {t0}ms")
    assert city and city[0]["vehicle_count_sum"] == d["vehicle_count_sum"]

    # late readings went to the dead-letter topic, reason "late", each exactly once
    def dead_late():
        recs = [orjson.loads(v) for _, v in read_topic(bootstrap, "readings.deadletter")]
        return [orjson.loads(r["payload"]) for r in recs
                if r["reason"] == "late" and district in (r["payload"] or "")]

    letters = wait_until(lambda: len(dead_late()) >= len(late) and dead_late(), 30, what="late")
    assert sorted((r["sensor_id"], r["ts"]) for r in letters) == \
        sorted((r["sensor_id"], r["ts"]) for r in late)

    # closed windows on the aggregates topic, reading-shaped for the rules engine
    aggs = [a for _, v in read_topic(bootstrap, "aggregates") for a in decode_batch(v)
            if a["district"] == district]
    mine = {(a["sensor_id"], a["window"], a["window_start"]) for a in aggs}
    assert (tr_a, "1m", t0) in mine and (tr_a, "5m", t0 - 3 * MIN) in mine
    a0 = next(a for a in aggs if (a["sensor_id"], a["window"], a["window_start"]) == (tr_a, "1m", t0))
    assert a0["metrics"]["speed_kmh"] == pytest.approx(sp["mean"]) and "congestion_index" in a0["metrics"]

    # the stage's counters in the pipeline measurement
    def pipeline():
        rs = influx.rows('SELECT last("late_total") AS late, last("windows_emitted_total") AS w '
                         "FROM pipeline.pipeline WHERE stage = 'streams'")
        return rs and rs[0]["late"] >= len(late) and rs[0]
    wait_until(pipeline, 15, what="pipeline counters")
