"""Freshness: how old a reading is (event time → now) when a stage is done with it.

A cumulative histogram with fixed bucket bounds, Prometheus-style, because percentiles
cannot be averaged: a worker writes the *cumulative* bucket counts to ``pipeline`` and a
reader subtracts two snapshots to get the distribution of any interval, across restarts
(counts restart at zero; :func:`delta` treats a drop as a reset) and across workers (sum
the deltas), then interpolates quantiles like PromQL's ``histogram_quantile``.

Observing is one ``np.searchsorted`` + ``np.bincount`` per batch, not per reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: upper bounds in milliseconds; the last bucket (+Inf) catches the rest
BOUNDS_MS: tuple[int, ...] = (
    10, 25, 50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000,
    15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000,
)


def field_name(bound: int | None, prefix: str = "lat") -> str:
    return f"{prefix}_le_inf" if bound is None else f"{prefix}_le_{bound}"


class LatencyHistogram:
    """Cumulative counts of ``now_ms - event_ms`` per bucket. ``prefix`` names its
    ``pipeline`` fields, so that one point can carry several histograms."""

    def __init__(self, bounds_ms: Sequence[int] = BOUNDS_MS, prefix: str = "lat") -> None:
        self.prefix = prefix
        self.bounds = np.asarray(bounds_ms, dtype=np.int64)
        self.counts = np.zeros(len(bounds_ms) + 1, dtype=np.int64)
        self._last = self.counts.copy()

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def observe(self, event_ms: np.ndarray | Sequence[int], now_ms: int) -> None:
        """Add readings whose event times are ``event_ms``; negative ages count as 0."""
        ages = now_ms - np.asarray(event_ms, dtype=np.int64)
        if ages.size == 0:
            return
        idx = np.searchsorted(self.bounds, ages, side="left")
        self.counts += np.bincount(idx, minlength=self.counts.size)

    def fields(self) -> dict[str, int]:
        """Cumulative bucket counts as ``pipeline`` fields (``lat_le_<ms>``, ``lat_le_inf``)."""
        cum = np.cumsum(self.counts)
        out = {field_name(int(b), self.prefix): int(c) for b, c in zip(self.bounds, cum[:-1])}
        out[field_name(None, self.prefix)] = int(cum[-1])
        return out

    def interval_quantiles(self, qs: Sequence[float] = (0.5, 0.95, 0.99)) -> dict[str, float]:
        """Quantiles of what was observed since the previous call (for dashboards)."""
        d = self.counts - self._last
        self._last = self.counts.copy()
        return {f"{self.prefix}_p{round(q * 100)}_ms": v for q, v in
                zip(qs, quantiles(np.cumsum(d), self.bounds, qs)) if v is not None}


def quantiles(cumulative: np.ndarray | Sequence[int], bounds_ms: Sequence[int],
              qs: Sequence[float]) -> list[float | None]:
    """``histogram_quantile``: linear interpolation inside the bucket holding rank q·n.

    ``cumulative`` has one more entry than ``bounds_ms`` (the +Inf bucket); a quantile
    landing there is reported as the largest finite bound (a floor, like Prometheus)."""
    cum = np.asarray(cumulative, dtype=np.float64)
    n = cum[-1] if cum.size else 0.0
    out: list[float | None] = []
    for q in qs:
        if n <= 0:
            out.append(None)
            continue
        rank = q * n
        i = int(np.searchsorted(cum, rank, side="left"))
        if i >= len(bounds_ms):
            out.append(float(bounds_ms[-1]))
            continue
        lo_b = 0.0 if i == 0 else float(bounds_ms[i - 1])
        lo_c = 0.0 if i == 0 else cum[i - 1]
        in_bucket = cum[i] - lo_c
        frac = 0.0 if in_bucket <= 0 else (rank - lo_c) / in_bucket
        out.append(lo_b + (float(bounds_ms[i]) - lo_b) * frac)
    return out


def from_fields(fields: Mapping[str, object], bounds_ms: Sequence[int] = BOUNDS_MS,
                prefix: str = "lat") -> np.ndarray:
    """Cumulative counts back from ``pipeline`` fields (missing buckets count 0)."""
    names = [field_name(int(b), prefix) for b in bounds_ms] + [field_name(None, prefix)]
    return np.asarray([float(fields.get(n) or 0) for n in names], dtype=np.float64)


def delta(after: np.ndarray, before: np.ndarray | None) -> np.ndarray:
    """Counts between two cumulative snapshots; a counter that went down was reset."""
    if before is None or bool(np.any(after < before)):
        return after
    return after - before
