"""Freshness histograms (urbanbrain/latency.py): what a worker writes to ``pipeline`` and
a reader turns back into quantiles, with two histograms side by side on one point."""

from __future__ import annotations

import numpy as np

from urbanbrain import latency


def test_two_histograms_share_a_point_and_read_back_apart() -> None:
    event = latency.LatencyHistogram()
    acked = latency.LatencyHistogram(prefix="acked")
    event.observe([1_000, 1_800, 1_950], 2_000)  # ages 1000, 200, 50 ms
    acked.observe([1_990] * 4, 2_000)  # ages 10 ms
    point = {**event.fields(), **acked.fields(), **event.interval_quantiles(),
             **acked.interval_quantiles()}
    assert set(acked.fields()).isdisjoint(event.fields())
    got_event = latency.from_fields(point)
    got_acked = latency.from_fields(point, prefix="acked")
    assert got_event[-1] == 3 and got_acked[-1] == 4
    # cumulative: everything of the acked one is in its first bucket (<= 10 ms)
    assert np.all(got_acked == 4)
    assert latency.quantiles(got_event, latency.BOUNDS_MS, (0.5,))[0] <= 200
    assert point["acked_p99_ms"] <= 10 < point["lat_p99_ms"]
