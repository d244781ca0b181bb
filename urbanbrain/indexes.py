"""Derived indices, declared once: what rules may ask for, where the worker gets it, when.

An index is not a reading: ingest refuses it from a device (it is not in the metric
catalogue, :mod:`urbanbrain.metrics`). The streams worker derives it from a closed event-time
window (``streams/derive.py``), stores it as a field of an InfluxDB measurement, and hands it
to the rule engine as an *index sample* of the sensor. The rule checker
(``rules/names.py``), the worker, the backtest (which drives the worker's own code) and the
dashboards read this table; nothing else declares an index.

**Visibility.** A window ``[start, end)`` closes when its partition's watermark (max event
time minus the allowed lateness ``L``, ``URBANBRAIN_STREAMS_LATENESS_S``) passes ``end``.
Its index sample is stamped ``end + L``: the event time from which rules see it. A rule
evaluated at event time ``t`` therefore sees exactly the windows that ended at or before
``t - L``, whatever the arrival order, so live and backtest agree. An index sample is
stored under its own metric name, never under a raw metric's: a window mean of PM2.5 is
not mixed into the raw PM2.5 samples of the same rule window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Index:
    name: str  # the metric name rules use (``metric: aqi_us``)
    domain: str
    unit: str
    description: str
    window: str  # the window it is derived from: "1m" (tumbling) or "5m" (hopping by 1 min)
    measurement: str  # InfluxDB measurement of the stored index
    field: str  # field of that measurement
    tags: Mapping[str, str] = field(default_factory=dict)  # tags that identify the series


INDEXES: dict[str, Index] = {i.name: i for i in (
    Index("aqi_us", "environment", "AQI", "US EPA Air Quality Index (TAD 2024), 0-500, of "
          "the 5-minute window means", "5m", "aqi", "aqi", {"standard": "us"}),
    Index("aqi_cn", "environment", "AQI", "China AQI (HJ 633-2026 from 2026-03-01, "
          "HJ 633-2012 before), 0-500, of the 5-minute window means", "5m", "aqi", "aqi",
          {"standard": "cn"}),
    Index("congestion_index", "traffic", "ratio", "1 - speed / free-flow speed of the "
          "1-minute window (0 = free flow, 1 = standstill)", "1m", "traffic_index",
          "congestion_index"),
    Index("speed_ratio", "traffic", "ratio", "speed / free-flow speed of the 1-minute "
          "window", "1m", "traffic_index", "speed_ratio"),
    Index("los_code", "traffic", "1-6", "level of service A-F as 1-6, of the 1-minute "
          "window", "1m", "traffic_index", "los_code"),
    Index("voltage_deviation_pct", "power", "%", "deviation of the 1-minute mean voltage "
          "from nominal", "1m", "power_index", "voltage_deviation_pct"),
    Index("frequency_deviation_hz", "power", "Hz", "deviation of the 1-minute mean "
          "frequency from nominal", "1m", "power_index", "frequency_deviation_hz"),
)}


def by_source(measurement: str, window: str) -> list[Index]:
    """The indices a window of this size stores in ``measurement``."""
    return [i for i in INDEXES.values() if i.measurement == measurement and i.window == window]
