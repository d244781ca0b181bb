"""Domain indices of closed windows, per sensor, computed on whole windows with numpy.

Inputs are the window statistics of :mod:`.aggregates`; the formulas are in
:mod:`urbanbrain.streams.indices`. Choices made here (documented in README.md):

* traffic: flow = the window's vehicle count scaled to veh/h (or the mean reported
  ``flow_vph`` where a sensor reports flow rather than counts); speed = window mean of the
  interval mean speeds; free-flow speed from the registry (``free_flow_kmh``, else its
  ``road_class``), else the configured default road class.
* AQI: the window means stand in for every averaging period of the standards (24 h PM,
  8 h O3/CO, 1 h NO2/SO2/O3): a *streaming, instantaneous* index, comparable between
  sensors and over time, but not the official daily AQI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from urbanbrain.registry import Registry

from . import indices as ix
from .aggregates import Stats

LOS_CODE = {"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0, "E": 5.0, "F": 6.0}


@dataclass(frozen=True, slots=True)
class IndexPoint:
    """One index point: measurement, extra tags, fields (None fields are left out)."""

    measurement: str
    sensor: str
    tags: Mapping[str, str]
    fields: Mapping[str, float | str | None]


def _mean(rows: Mapping[str, Mapping[str, Stats]], sensors: list[str], metric: str) -> np.ndarray:
    return np.array([
        rows[s][metric].mean if metric in rows[s] else np.nan for s in sensors
    ], dtype=np.float64)


def _attr(rows: Mapping[str, Mapping[str, Stats]], sensors: list[str], metric: str,
          attr: str) -> np.ndarray:
    return np.array([
        getattr(rows[s][metric], attr) if metric in rows[s] else np.nan for s in sensors
    ], dtype=np.float64)


def _f(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


class IndexCalculator:
    """Per-domain index computation with the registry and nominal values it needs."""

    def __init__(self, registry: Registry | None, *, default_road_class: str = "arterial",
                 nominal_kv: float = 11.0, nominal_hz: float = 50.0) -> None:
        self.registry = registry or Registry()
        self.default_road_class = default_road_class
        self.nominal_kv, self.nominal_hz = nominal_kv, nominal_hz

    def compute(self, domain: str, rows: Mapping[str, Mapping[str, Stats]],
                window_s: float) -> list[IndexPoint]:
        fn = getattr(self, f"_{domain}", None)
        sensors = sorted(rows)
        return fn(rows, sensors, window_s) if fn is not None and sensors else []

    # -- traffic ---------------------------------------------------------------------------
    def _traffic(self, rows, sensors, window_s) -> list[IndexPoint]:
        counts = _attr(rows, sensors, "vehicle_count", "sum")
        flow = np.where(np.isfinite(counts), ix.flow_vph(counts, window_s),
                        _mean(rows, sensors, "flow_vph"))
        speed = _mean(rows, sensors, "speed_kmh")
        occ = _mean(rows, sensors, "occupancy_pct")
        reg = [self.registry.get(s) for s in sensors]
        ff_own = np.array([s.free_flow_kmh if s and s.free_flow_kmh else np.nan for s in reg])
        road = np.array([(s.road_class if s and s.road_class else self.default_road_class)
                         for s in reg], dtype=object)
        ff = np.where(np.isfinite(ff_own), ff_own, ix.free_flow_speed(road))
        ci = ix.congestion_index(speed, free_flow_kmh=ff)
        los = ix.level_of_service(speed, free_flow_kmh=ff)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(ff > 0, speed / ff, np.nan)
        out = []
        for i, s in enumerate(sensors):
            fields = {
                "flow_vph": _f(flow[i]), "speed_kmh": _f(speed[i]), "occupancy_pct": _f(occ[i]),
                "free_flow_kmh": _f(ff[i]), "congestion_index": _f(ci[i]),
                "speed_ratio": _f(ratio[i]), "los": str(los[i]) or None,
                "los_code": LOS_CODE.get(str(los[i])),
            }
            out.append(IndexPoint("traffic_index", s, {}, fields))
        return out

    # -- environment -----------------------------------------------------------------------
    def _environment(self, rows, sensors, window_s) -> list[IndexPoint]:
        m = {k: _mean(rows, sensors, k) for k in
             ("pm25_ugm3", "pm10_ugm3", "o3_ugm3", "no2_ugm3", "so2_ugm3", "co_mgm3")}
        if not any(np.isfinite(v).any() for v in m.values()):
            return []
        us = ix.aqi_us_report(
            pm25_24h_ugm3=m["pm25_ugm3"], pm10_24h_ugm3=m["pm10_ugm3"],
            o3_8h_ugm3=m["o3_ugm3"], o3_1h_ugm3=m["o3_ugm3"], co_8h_mgm3=m["co_mgm3"],
            so2_1h_ugm3=m["so2_ugm3"], no2_1h_ugm3=m["no2_ugm3"],
        )
        cn = ix.aqi_cn_report({
            "pm25_24h": m["pm25_ugm3"], "pm10_24h": m["pm10_ugm3"], "o3_1h": m["o3_ugm3"],
            "o3_8h": m["o3_ugm3"], "co_1h": m["co_mgm3"], "so2_1h": m["so2_ugm3"],
            "no2_1h": m["no2_ugm3"],
        }, lang="en")
        out = []
        for std, rep in (("us", us), ("cn", cn)):
            aqi = np.broadcast_to(rep.aqi, (len(sensors),))
            prim = np.broadcast_to(rep.primary, (len(sensors),))
            cat = np.broadcast_to(rep.category, (len(sensors),))
            col = np.broadcast_to(rep.color, (len(sensors),))
            for i, s in enumerate(sensors):
                if not np.isfinite(aqi[i]):
                    continue
                out.append(IndexPoint("aqi", s, {"standard": std}, {
                    "aqi": float(aqi[i]), "category": str(cat[i]), "primary": str(prim[i]),
                    "color": str(col[i]),
                }))
        return out

    # -- water -----------------------------------------------------------------------------
    def _water(self, rows, sensors, window_s) -> list[IndexPoint]:
        out = []
        for s in sensors:
            p, q = rows[s].get("pressure_kpa"), rows[s].get("flow_ls")
            if p is None and q is None:
                continue
            out.append(IndexPoint("water_index", s, {}, {
                "pressure_mean_kpa": p.mean if p else None,
                "pressure_min_kpa": p.min if p else None,
                "pressure_max_kpa": p.max if p else None,
                "pressure_std_kpa": p.std if p else None,
                "flow_mean_ls": q.mean if q else None,
                "flow_max_ls": q.max if q else None,
                # L/s × window seconds / 1000 = m³ through the meter in the window
                "volume_m3": q.mean * window_s / 1000.0 if q else None,
            }))
        return out

    # -- power -----------------------------------------------------------------------------
    def _nominal_kv(self, sensors: list[str]) -> np.ndarray:
        """Each substation's nominal voltage: the registry's ``nominal_kv`` (a 10 kV and a
        20 kV substation are both healthy at their own level), else the configured one."""
        reg = [self.registry.get(s) for s in sensors]
        return np.array([s.nominal_kv if s is not None and s.nominal_kv else self.nominal_kv
                         for s in reg], dtype=np.float64)

    def _power(self, rows, sensors, window_s) -> list[IndexPoint]:
        vn = self._nominal_kv(sensors)
        vmean = _mean(rows, sensors, "voltage_kv")
        vdev = ix.voltage_deviation_pct(vmean, vn, voltage_pu=_mean(rows, sensors, "voltage_pu"))
        vext = np.fmax(np.abs(ix.voltage_deviation_pct(_attr(rows, sensors, "voltage_kv", "min"), vn)),
                       np.abs(ix.voltage_deviation_pct(_attr(rows, sensors, "voltage_kv", "max"), vn)))
        fdev = ix.frequency_deviation_hz(_mean(rows, sensors, "frequency_hz"), self.nominal_hz)
        fext = np.fmax(np.abs(ix.frequency_deviation_hz(_attr(rows, sensors, "frequency_hz", "min"), self.nominal_hz)),
                       np.abs(ix.frequency_deviation_hz(_attr(rows, sensors, "frequency_hz", "max"), self.nominal_hz)))
        load, peak = _mean(rows, sensors, "load_mw"), _attr(rows, sensors, "load_mw", "max")
        with np.errstate(invalid="ignore", divide="ignore"):
            lf = np.where(peak > 0, load / peak, np.nan)
        out = []
        for i, s in enumerate(sensors):
            fields = {
                "voltage_deviation_pct": _f(vdev[i]), "voltage_deviation_max_pct": _f(vext[i]),
                "frequency_deviation_hz": _f(fdev[i]), "frequency_deviation_max_hz": _f(fext[i]),
                "load_mw_mean": _f(load[i]), "load_mw_max": _f(peak[i]), "load_factor": _f(lf[i]),
            }
            if any(v is not None for v in fields.values()):
                out.append(IndexPoint("power_index", s, {}, fields))
        return out


#: Numeric index fields rolled up per district (mean/min/max) — and their measurement.
ROLLUP_INDEX_FIELDS: dict[str, tuple[str, ...]] = {
    "traffic_index": ("congestion_index", "flow_vph"),
    "aqi": ("aqi",),
    "power_index": ("voltage_deviation_pct", "frequency_deviation_hz"),
}
