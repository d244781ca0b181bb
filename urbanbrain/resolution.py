"""Which data answers a time range: raw, 1-min/5-min windows or hourly.

A storage fact (what each retention tier holds, :mod:`urbanbrain.retention`) that the
dashboards, the console and ``dashboards snapshot`` read, so it lives in the core.

Grafana's InfluxQL datasource cannot rewrite a query by itself, so the choice is made the
way InfluxDB users have long done it: a small table in InfluxDB, measurement ``resolution``
in the ``longterm`` policy, one point per *tier*, and hidden dashboard variables that read
one field of the row whose range contains the dashboard's (``${__to} - ${__from}``, ms).
A variable refreshes on every time-range change (``refresh: 2``), so zooming out from 6 h
to 30 d switches a panel from raw points to hourly roll-ups without anybody choosing.

=========  ===============  =============================  ===================  ===============
tier       range            sensor panels (raw metrics)    index panels         district/city
=========  ===============  =============================  ===================  ===============
``fine``   ≤ 1 d            ``raw.<domain>`` (10 s)        ``windows``, 1m/5m   ``windows`` 1m
``mid``    ≤ 14 d           ``windows.agg_sensor_5m``      ``windows``, 5m      ``longterm`` 1h
``coarse`` > 14 d           ``longterm.agg_sensor_1h``     ``longterm``, 1h     ``longterm`` 1h
=========  ===============  =============================  ===================  ===============

So a 30-day panel never reads raw points, and a 90-day one reads hourly points only. Panels
that show a value "now" (stat panels, "now" tables) read the 1-min/5-min windows at every
range: the latest value must not lag an hour behind because the range is long.

`urbanbrain influx init` writes the table (:func:`resolution_lines`); the same rows serve
Grafana (provisioned or pushed) and ``urbanbrain dashboards snapshot``, which expands
``${__from}``/``${__to}`` and runs the variable queries like Grafana does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from urbanbrain.lineprotocol import line

MEASUREMENT = "resolution"
POLICY = "longterm"  # urbanbrain.retention.LONGTERM (kept literal: no import cycle)

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Tier:
    name: str
    #: the tier answers ranges R (ms) with above_ms < R <= upto_ms
    above_ms: int
    upto_ms: int
    values: Mapping[str, str]


def _sensor(rp: str, meas: str | None, sfx: str) -> dict[str, str]:
    return {"rp_s": rp, "sfx": sfx,
            **{f"m_{d}": meas or d for d in ("traffic", "environment", "water", "power")}}


TIERS: tuple[Tier, ...] = (
    Tier("fine", -1, DAY_MS, {
        **_sensor("raw", None, ""),
        "rp_w": "windows", "w1": "1m", "w5": "5m", "rp_r": "windows", "r": "1m"}),
    Tier("mid", DAY_MS, 14 * DAY_MS, {
        **_sensor("windows", "agg_sensor_5m", "_mean"),
        "rp_w": "windows", "w1": "5m", "w5": "5m", "rp_r": "longterm", "r": "1h"}),
    Tier("coarse", 14 * DAY_MS, 10**15, {
        **_sensor("longterm", "agg_sensor_1h", "_mean"),
        "rp_w": "longterm", "w1": "1h", "w5": "1h", "rp_r": "longterm", "r": "1h"}),
)

#: What each variable means, for the variable's label (Grafana shows it when unhidden).
VARIABLES: dict[str, str] = {
    "rp_s": "policy of per-sensor metrics",
    "m_traffic": "traffic sensor measurement", "m_environment": "environment sensor measurement",
    "m_water": "water sensor measurement", "m_power": "power sensor measurement",
    "sfx": "field suffix (_mean on windows)",
    "rp_w": "policy of index windows", "w1": "window (1-min panels)",
    "w5": "window (5-min panels)", "rp_r": "policy of district/city roll-ups",
    "r": "roll-up size",
}

RANGE_MS = "${__to} - ${__from}"


def variable_query(name: str) -> str:
    """InfluxQL of a resolution variable: one field of the row whose range holds ours."""
    return (f'SELECT "{name}" FROM "{POLICY}"."{MEASUREMENT}" WHERE "above_ms" < {RANGE_MS} '
            f'AND "upto_ms" >= {RANGE_MS}')


def resolution_lines() -> list[str]:
    """The table's points, stamped at the epoch (the longterm policy keeps them for ever and
    any query without a time condition sees them); rewriting them is idempotent."""
    return [line(MEASUREMENT, {"tier": t.name},
                 {"above_ms": t.above_ms, "upto_ms": t.upto_ms, **t.values}, 0)
            for t in TIERS]


def tier_for(range_ms: int) -> Tier:
    """The tier of a range, as the variable queries choose it (tests and docs)."""
    for t in TIERS:
        if t.above_ms < range_ms <= t.upto_ms:
            return t
    raise ValueError(f"no tier for a range of {range_ms} ms")
