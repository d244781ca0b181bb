"""AQI cost: the index functions on large arrays, and what an environment window costs the
streams (IndexCalculator + line protocol), per China edition.

Why: issue 19 put HJ 633-2026 (with GB/T 8170 rounding) beside HJ 633-2012 and four text
fields (health advice) on every China ``aqi`` point; this says what that costs on a batch.

    .venv/bin/python bench/bench_aqi.py [--n 200000] [--sensors 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from urbanbrain.streams import indices as ix
from urbanbrain.streams.aggregates import Stats
from urbanbrain.streams.derive import IndexCalculator
from urbanbrain.streams.indices.aqi_cn import EFFECTIVE_2026_MS
from urbanbrain.streams.sinks.lines import window_lines


def best(fn, repeat: int = 5) -> float:
    """Best wall time of ``repeat`` runs (s): the machine is shared, the minimum is stable."""
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--sensors", type=int, default=2_000)
    a = ap.parse_args()
    rng = np.random.default_rng(19)
    n = a.n
    means = {"pm25": rng.gamma(2, 30, n), "pm10": rng.gamma(2, 50, n),
             "o3": rng.gamma(2, 60, n), "no2": rng.gamma(2, 30, n),
             "co": rng.gamma(2, 0.5, n), "so2": rng.gamma(2, 10, n)}
    print(f"aqi_cn_report on {n:,} stations (real-time columns)")
    for ed in ("2012", "2026"):
        cols = ix.realtime_columns(means, edition=ed)
        t = best(lambda: ix.aqi_cn_report(cols, edition=ed))
        r = ix.aqi_cn_report(cols, edition=ed)
        t2 = best(lambda: (ix.advice_cn(r.aqi, edition=ed),
                           ix.sensitive_groups_cn(r.sub_indices, edition=ed)))
        print(f"  HJ 633-{ed}: report {t * 1e3:7.1f} ms ({n / t / 1e6:5.2f} M/s), "
              f"advice + sensitive groups {t2 * 1e3:7.1f} ms")

    s = a.sensors
    rows = {}
    for i in range(s):
        m = {}
        for k, unit in (("pm25", "pm25_ugm3"), ("pm10", "pm10_ugm3"), ("o3", "o3_ugm3"),
                        ("no2", "no2_ugm3"), ("co", "co_mgm3")):
            v = float(means[k][i])
            m[unit] = Stats(count=6, sum=6 * v, sumsq=6 * v * v, min=v, max=v, last_ts=0, last=v)
        rows[f"aq-{i:05d}"] = m
    meta = {k: ("d1", "station") for k in rows}
    calc = IndexCalculator(None)
    print(f"one environment window of {s:,} sensors (IndexCalculator + line protocol)")
    for ed, start in (("2012", EFFECTIVE_2026_MS - 60_000), ("2026", EFFECTIVE_2026_MS)):
        t = best(lambda: calc.compute("environment", rows, 60.0, start))
        pts = calc.compute("environment", rows, 60.0, start)
        t2 = best(lambda: window_lines("environment", "1m", start, {}, meta, pts))
        lines, _ = window_lines("environment", "1m", start, {}, meta, pts)
        cn = [ln for ln in lines if "standard=cn" in ln]
        size = sum(len(ln.encode()) for ln in cn) / max(len(cn), 1)
        print(f"  HJ 633-{ed}: indices {t * 1e3:6.1f} ms, lines {t2 * 1e3:6.1f} ms "
              f"({s / (t + t2):,.0f} sensors/s); China line {size:,.0f} bytes on average")


if __name__ == "__main__":
    main()
