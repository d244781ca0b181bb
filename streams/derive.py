"""Domain indices of closed windows, per sensor, computed on whole windows with numpy.

Inputs are the window statistics of :mod:`.aggregates`; the formulas are in
:mod:`urbanbrain.streams.indices`. Choices made here (documented in README.md):

* traffic: flow = the window's vehicle count scaled to veh/h (or the mean reported
  ``flow_vph`` where a sensor reports flow rather than counts); speed = the time-mean speed
  of the window's vehicles: interval mean speeds weighted by their vehicle counts (the
  plain mean only for a sensor that reports speeds without counts; no speed when no vehicle
  passed); congestion and LOS from that speed; free-flow speed from the registry
  (``free_flow_kmh``, else its ``road_class``), else the configured default road class.
* AQI: the window means stand in for every averaging period of the standards (24 h PM,
  8 h O3/CO, 1 h NO2/SO2/O3): a *streaming, instantaneous* index, comparable between
  sensors and over time, but not the official daily AQI. The China AQI is the real-time
  report of the HJ 633 edition in force at the window's start (HJ 633-2026 from
  2026-03-01 00:00 UTC+8, HJ 633-2012 before), or of the edition the configuration pins;
  each ``aqi`` point carries its edition as the tag ``edition`` and, for China, the
  edition's health advice (Chinese and our English rendering) as fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from urbanbrain.indexes import by_source
from urbanbrain.registry import Registry

from . import indices as ix
from .aggregates import Stats

#: ``edition`` tag of the US points: the May 2024 TAD (EPA-454/B-24-002), see indices/README.
US_AQI_EDITION = "epa-2024"
LOS_CODE = {"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0, "E": 5.0, "F": 6.0}
_NO_TAGS: Mapping[str, str] = MappingProxyType({})  # the points without extra tags share it
#: (district, kind) of a sensor the partition has no metadata for
NO_META = ("", "")
_POWER_FIELDS = ("voltage_deviation_pct", "voltage_deviation_max_pct", "frequency_deviation_hz",
                 "frequency_deviation_max_hz", "load_mw_mean", "load_mw_max", "load_factor")


class IndexPoint(NamedTuple):
    """One index point: measurement, extra tags, fields (None fields are left out).
    A named tuple: one is built per sensor and window size every minute."""

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
    """A finite Python float or None; takes the items of ``ndarray.tolist()`` (a numpy
    scalar per call cost ~1 us more, and this runs for every field of every sensor)."""
    return float(x) if math.isfinite(x) else None


def _cols(*arrays: np.ndarray) -> list[list]:
    """Arrays as Python lists, for the per-sensor loops that build points."""
    return [np.asarray(a).tolist() for a in arrays]


class IndexCalculator:
    """Per-domain index computation with the registry and nominal values it needs."""

    def __init__(self, registry: Registry | None, *, default_road_class: str = "arterial",
                 nominal_kv: float = 11.0, nominal_hz: float = 50.0,
                 aqi_cn_edition: str = "auto") -> None:
        self.registry = registry or Registry()
        self.default_road_class = default_road_class
        self.nominal_kv, self.nominal_hz = nominal_kv, nominal_hz
        self.aqi_cn_edition = aqi_cn_edition
        ix.cn_edition_for(None, aqi_cn_edition)  # refuse an unknown edition at startup

    def compute(self, domain: str, rows: Mapping[str, Mapping[str, Stats]],
                window_s: float, start_ms: int | None = None) -> list[IndexPoint]:
        """Index points of one closed window; ``start_ms`` (its event-time start) picks the
        edition of time-dependent standards (HJ 633), the one in force when it is None."""
        fn = getattr(self, f"_{domain}", None)
        sensors = sorted(rows)
        return fn(rows, sensors, window_s, start_ms) if fn is not None and sensors else []

    # -- traffic ---------------------------------------------------------------------------
    def _traffic(self, rows, sensors, window_s, start_ms=None) -> list[IndexPoint]:
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
        for s, fl, sp, oc, f, c, r, lv in zip(sensors, *_cols(flow, speed, occ, ff, ci, ratio,
                                                              los)):
            lv = str(lv)
            fields = {
                "flow_vph": _f(fl), "speed_kmh": _f(sp), "occupancy_pct": _f(oc),
                "free_flow_kmh": _f(f), "congestion_index": _f(c), "speed_ratio": _f(r),
                "los": lv or None, "los_code": LOS_CODE.get(lv),
            }
            out.append(IndexPoint("traffic_index", s, _NO_TAGS, fields))
        return out

    # -- environment -----------------------------------------------------------------------
    def _environment(self, rows, sensors, window_s, start_ms=None) -> list[IndexPoint]:
        m = {k: _mean(rows, sensors, k) for k in
             ("pm25_ugm3", "pm10_ugm3", "o3_ugm3", "no2_ugm3", "so2_ugm3", "co_mgm3")}
        if not any(np.isfinite(v).any() for v in m.values()):
            return []
        us = ix.aqi_us_report(
            pm25_24h_ugm3=m["pm25_ugm3"], pm10_24h_ugm3=m["pm10_ugm3"],
            o3_8h_ugm3=m["o3_ugm3"], o3_1h_ugm3=m["o3_ugm3"], co_8h_mgm3=m["co_mgm3"],
            so2_1h_ugm3=m["so2_ugm3"], no2_1h_ugm3=m["no2_ugm3"],
        )
        ed = ix.cn_edition(str(ix.cn_edition_for(start_ms, self.aqi_cn_edition)))
        cn = ix.aqi_cn_report(ix.realtime_columns({
            "pm25": m["pm25_ugm3"], "pm10": m["pm10_ugm3"], "o3": m["o3_ugm3"],
            "co": m["co_mgm3"], "so2": m["so2_ugm3"], "no2": m["no2_ugm3"],
        }, edition=ed), edition=ed, lang="en")
        n = (len(sensors),)
        # China: the edition's public message (Table 1 advice, Table 2 sensitive groups)
        cn_text = {
            "advice": ix.advice_cn(cn.aqi, edition=ed, lang="zh"),
            "advice_en": ix.advice_cn(cn.aqi, edition=ed, lang="en"),
            "sensitive_groups": ix.sensitive_groups_cn(cn.sub_indices, edition=ed, lang="zh"),
            "sensitive_groups_en": ix.sensitive_groups_cn(cn.sub_indices, edition=ed,
                                                          lang="en"),
        }
        text_keys = list(cn_text)
        text_rows = list(zip(*_cols(*(np.broadcast_to(v, n) for v in cn_text.values()))))
        out = []
        for std, tag, rep in (("us", US_AQI_EDITION, us), ("cn", ed.tag, cn)):
            tags = {"standard": std, "edition": tag}
            cols = _cols(*(np.broadcast_to(c, n) for c in
                           (rep.aqi, rep.category, rep.primary, rep.color)))
            for i, (s, aqi, cat, prim, col) in enumerate(zip(sensors, *cols)):
                if not math.isfinite(aqi):
                    continue
                fields: dict[str, float | str | None] = {
                    "aqi": float(aqi), "category": str(cat), "primary": str(prim),
                    "color": str(col),
                }
                if std == "cn":
                    fields.update(zip(text_keys, map(str, text_rows[i])))
                out.append(IndexPoint("aqi", s, tags, fields))
        return out

    # -- water -----------------------------------------------------------------------------
    def _water(self, rows, sensors, window_s, start_ms=None) -> list[IndexPoint]:
        out = []
        for s in sensors:
            p, q = rows[s].get("pressure_kpa"), rows[s].get("flow_ls")
            if p is None and q is None:
                continue
            out.append(IndexPoint("water_index", s, _NO_TAGS, {
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

    def _power(self, rows, sensors, window_s, start_ms=None) -> list[IndexPoint]:
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
        for s, *vals in zip(sensors, *_cols(vdev, vext, fdev, fext, load, peak, lf)):
            fields = dict(zip(_POWER_FIELDS, map(_f, vals)))
            if any(v is not None for v in fields.values()):
                out.append(IndexPoint("power_index", s, _NO_TAGS, fields))
        return out


def index_samples(domain: str, size: str, visible_ms: int, points: list[IndexPoint],
                  meta: Mapping[str, tuple[str, str]]) -> list[dict]:
    """The catalogue's indices (urbanbrain/indexes.py) among a window's points, as
    reading-shaped samples for the rule engine, stamped with the event time from which
    rules see them (window end + allowed lateness)."""
    out: list[dict] = []
    declared: dict[str, list[tuple[str, str, tuple]]] = {}
    for p in points:
        idx = declared.get(p.measurement)
        if idx is None:
            idx = declared[p.measurement] = [(i.name, i.field, tuple(i.tags.items()))
                                             for i in by_source(p.measurement, size)]
        metrics = {}
        tags, fields = p.tags, p.fields
        for name, fld, want in idx:
            if want and not all(tags.get(k) == v for k, v in want):
                continue
            v = fields.get(fld)
            if isinstance(v, (float, int)) and not isinstance(v, bool) and math.isfinite(v):
                metrics[name] = float(v)
        if metrics:
            district, kind = meta.get(p.sensor, NO_META)
            out.append({"sensor_id": p.sensor, "ts": visible_ms, "domain": domain,
                        "kind": kind, "district": district, "metrics": metrics,
                        "sample": True})
    return out


#: Numeric index fields rolled up per district (mean/min/max) — and their measurement.
ROLLUP_INDEX_FIELDS: dict[str, tuple[str, ...]] = {
    "traffic_index": ("congestion_index", "flow_vph"),
    "aqi": ("aqi",),
    "power_index": ("voltage_deviation_pct", "frequency_deviation_hz"),
}
