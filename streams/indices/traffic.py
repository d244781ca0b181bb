"""Traffic indices from loop-detector window aggregates, vectorised over numpy arrays.

Sources: the fundamental relation q = k · v_s of traffic flow theory (flow = density × space-
mean speed, e.g. Mannering & Washburn, *Principles of Highway Engineering and Traffic
Analysis*, ch. 5; HCM 6th ed., ch. 4); Highway Capacity Manual 6th ed. (TRB, 2016), Exhibit
16-8: urban street level of service from travel speed as a percentage of base free-flow speed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from ._common import FloatArray, StrArray, as_float

DEFAULT_FREE_FLOW_KMH: dict[str, float] = {
    "motorway": 100.0,
    "arterial": 60.0,
    "collector": 50.0,
    "local": 30.0,
}
"""Default free-flow speed per road class (km/h), used where a sensor has no own value."""


def flow_vph(counts: ArrayLike, interval_s: ArrayLike) -> FloatArray:
    """Hourly flow rate (veh/h) from a vehicle count over an interval of ``interval_s`` seconds.

    Why: loops report counts per interval of varying length; rules and LOS compare rates.
    NaN for a non-positive interval.
    """
    n, t = as_float(counts), as_float(interval_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(t > 0, n * 3600.0 / t, np.nan)


def harmonic_mean_speed(
    speeds_kmh: ArrayLike, weights: ArrayLike | None = None, axis: int = -1
) -> FloatArray:
    """Space-mean speed: the (count-weighted) harmonic mean of speeds along ``axis``.

    Why: averaging spot speeds arithmetically over-weights fast vehicles (time-mean speed);
    the harmonic mean is the speed of the traffic stream over space, the v in q = k·v.
    With ``weights`` (vehicle counts per interval) it combines interval mean speeds:
    sum(n) / sum(n / v). Non-positive or NaN speeds and their weights are ignored; NaN if
    nothing remains.
    """
    v = as_float(speeds_kmh)
    w = np.ones_like(v) if weights is None else np.broadcast_to(as_float(weights), v.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(v) & (v > 0) & np.isfinite(w) & (w > 0)
        num = np.where(ok, w, 0.0).sum(axis=axis)
        den = np.where(ok, w / np.where(ok, v, 1.0), 0.0).sum(axis=axis)
        return np.where(den > 0, num / den, np.nan)


space_mean_speed = harmonic_mean_speed
"""Alias: the space-mean speed of spot speeds is their harmonic mean."""


def occupancy_pct(occupied_s: ArrayLike, interval_s: ArrayLike) -> FloatArray:
    """Share of the interval during which the loop was occupied, in % (clipped to 0-100).

    Why: occupancy is the detector's proxy for density that stays meaningful in stopped
    traffic, where flow/speed breaks down.
    """
    o, t = as_float(occupied_s), as_float(interval_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(t > 0, np.clip(100.0 * o / t, 0.0, 100.0), np.nan)


def density_vpkm(flow: ArrayLike, speed_kmh: ArrayLike) -> FloatArray:
    """Density k = q / v_s (veh/km) from flow (veh/h) and space-mean speed (km/h).

    NaN where the speed is not positive (stopped traffic: use occupancy instead).
    """
    q, v = as_float(flow), as_float(speed_kmh)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(v > 0, q / v, np.nan)


def free_flow_speed(
    road_class: ArrayLike, overrides: Mapping[str, float] | None = None
) -> FloatArray:
    """Free-flow speed (km/h) per road class; NaN for an unknown class.

    ``overrides`` replaces or adds classes on top of :data:`DEFAULT_FREE_FLOW_KMH`.
    """
    table = {**DEFAULT_FREE_FLOW_KMH, **(overrides or {})}
    rc = np.asarray(road_class, dtype=object)
    lookup = np.vectorize(lambda c: table.get(str(c).strip().lower(), np.nan), otypes=[float])
    return lookup(rc) if rc.size else np.zeros(rc.shape)


def _ffs(
    free_flow_kmh: ArrayLike | None,
    road_class: ArrayLike | None,
    overrides: Mapping[str, float] | None,
) -> FloatArray:
    """Per-sensor free-flow speed where known (registry), else the road class default."""
    by_class = as_float(None) if road_class is None else free_flow_speed(road_class, overrides)
    own = as_float(free_flow_kmh)
    own, by_class = np.broadcast_arrays(own, by_class)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(own) & (own > 0), own, by_class)


def congestion_index(
    speed_kmh: ArrayLike,
    *,
    free_flow_kmh: ArrayLike | None = None,
    road_class: ArrayLike | None = None,
    overrides: Mapping[str, float] | None = None,
) -> FloatArray:
    """Congestion index max(0, 1 - v / v_ff): 0 free flowing, 1 standstill.

    ``free_flow_kmh`` (the registry's per-sensor value) wins where finite and positive;
    elsewhere the road class default (optionally ``overrides``) applies. NaN if either the
    speed or the free-flow speed is unknown.
    """
    v = as_float(speed_kmh)
    ff = _ffs(free_flow_kmh, road_class, overrides)
    with np.errstate(invalid="ignore", divide="ignore"):
        ci = np.maximum(0.0, 1.0 - v / ff)
        return np.where(np.isfinite(v) & (v >= 0) & (ff > 0), ci, np.nan)


LOS_THRESHOLDS_PCT: tuple[tuple[str, float], ...] = (
    ("A", 85.0),
    ("B", 67.0),
    ("C", 50.0),
    ("D", 40.0),
    ("E", 30.0),
)
"""HCM 6th ed. Exhibit 16-8: LOS is the best letter whose threshold the speed, as % of base
free-flow speed, strictly exceeds; at or below 30 % it is F."""


def level_of_service(
    speed_kmh: ArrayLike,
    *,
    free_flow_kmh: ArrayLike | None = None,
    road_class: ArrayLike | None = None,
    overrides: Mapping[str, float] | None = None,
    volume_to_capacity: ArrayLike | None = None,
) -> StrArray:
    """Urban street LOS A-F from travel speed as % of base free-flow speed (HCM Exh. 16-8).

    A > 85 %, B > 67 %, C > 50 %, D > 40 %, E > 30 %, else F; with ``volume_to_capacity``
    a ratio above 1.0 is F whatever the speed, as the exhibit says. '' where unknown.
    """
    v = as_float(speed_kmh)
    ff = _ffs(free_flow_kmh, road_class, overrides)
    v, ff = np.broadcast_arrays(v, ff)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = (100.0 * v) / ff  # multiply first: 100*51/60 is exactly 85, 51/60*100 is not
        out = np.full(v.shape, "F", dtype="<U1")
        for letter, threshold in reversed(LOS_THRESHOLDS_PCT):
            out = np.where(pct > threshold, letter, out)
        if volume_to_capacity is not None:
            out = np.where(np.broadcast_to(as_float(volume_to_capacity), v.shape) > 1.0, "F", out)
        known = np.isfinite(pct) & (v >= 0) & (ff > 0)
    return np.where(known, out, "")
