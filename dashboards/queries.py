"""Panel queries outside Grafana: find them, expand Grafana's variables, run them on InfluxDB.

Used by ``urbanbrain dashboards snapshot`` and by the test that runs every panel query
against real data. Expansion follows Grafana's InfluxDB datasource: ``$timeFilter`` becomes
``time > now() - <range>``, ``${__from}``/``${__to}`` the range's ends in epoch ms,
``$__interval`` the panel's interval (never below its ``interval`` setting; ``auto``: the
range over about a thousand points, as Grafana picks it for a full-width panel), and a
template variable its value, regex-escaped for ``=~ /^$var$/`` matches. Variables are
resolved in the dashboard's time range (the resolution variables of resolution.py depend
on it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from urbanbrain.errors import EX_DATAERR
from urbanbrain.influxql import InfluxQL, InfluxUnreachable, QueryError

__all__ = ["InfluxQL", "InfluxUnreachable", "PanelQuery", "QueryError", "auto_interval",
           "expand", "panel_queries", "resolve_variables", "seconds", "variables_used"]

_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}|\[\[(\w+)\]\]")


def seconds(duration: str) -> float:
    """Seconds of a Grafana/InfluxQL duration (``30s``, ``6h``, ``1h30m``)."""
    from urbanbrain.durations import parse_seconds

    return parse_seconds(duration, bare_seconds=False)


#: Grafana's rounding of an automatic interval (kbn.roundInterval, simplified)
_NICE = ("1s", "5s", "10s", "30s", "1m", "5m", "10m", "30m", "1h", "3h", "12h", "1d", "7d")


def auto_interval(time_range: str, points: int = 1000) -> str:
    """The ``$__interval`` Grafana gives a panel about ``points`` pixels wide."""
    raw = seconds(time_range) / points
    return next((n for n in _NICE if seconds(n) >= raw), _NICE[-1])


def variables_used(text: str) -> set[str]:
    return {a or b or c for a, b, c in _VAR.findall(text)}


def expand(query: str, values: Mapping[str, str | list[str]], *, time_range: str = "2h",
           interval: str = "1m", min_interval: str = "", now_ms: int | None = None) -> str:
    """``query`` with Grafana's macros and the template variables ``values`` substituted.

    A list value becomes ``(a|b)`` as Grafana does for multi-value regex variables; the
    value ``.*`` (All) is left unescaped.
    """
    if interval == "auto":
        interval = auto_interval(time_range)
    if min_interval and seconds(min_interval) > seconds(interval):
        interval = min_interval
    to = int(time.time() * 1000) if now_ms is None else now_ms
    builtins = {"timeFilter": f"time > now() - {time_range}", "__interval": interval,
                "interval": interval, "__to": str(to),
                "__from": str(to - int(seconds(time_range) * 1000))}

    def one(name: str) -> str:
        if name in builtins:
            return builtins[name]
        if name not in values:
            raise KeyError(f"template variable ${name} has no value")
        v = values[name]
        if isinstance(v, list):
            return "(" + "|".join(re.escape(x) for x in v) + ")" if len(v) != 1 else \
                re.escape(v[0])
        return v if v == ".*" else re.escape(v)

    return _VAR.sub(lambda m: one(m[1] or m[2] or m[3]), query)


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # uid
    panel: str  # title
    panel_type: str
    ref: str
    query: str
    min_interval: str


def panel_queries(dashboard: Mapping) -> Iterator[PanelQuery]:
    for p in dashboard.get("panels", []):
        for t in p.get("targets", []):
            yield PanelQuery(dashboard["uid"], p["title"], p["type"], t["refId"], t["query"],
                             p.get("interval", ""))


def resolve_variables(dashboard: Mapping, client: InfluxQL,
                      chosen: Mapping[str, str] | None = None, *,
                      pick_first: bool = False, time_range: str = "6h") -> dict[str, str]:
    """Values for the dashboard's template variables, in definition order.

    ``chosen`` wins; otherwise a variable is All (``.*``) when it allows it and
    ``pick_first`` is false, else the first value its query returns (each query sees the
    variables resolved before it, like Grafana's chained variables).
    """
    values: dict[str, str] = {}
    for var in dashboard.get("templating", {}).get("list", []):
        name = var["name"]
        if chosen and name in chosen:
            values[name] = chosen[name]
            continue
        if var.get("includeAll") and not pick_first:
            values[name] = ".*"
            continue
        options = client.tag_values(expand(var["query"], values, time_range=time_range))
        if not options:
            raise QueryError(f"{dashboard['uid']}: variable ${name} has no values "
                             f"({var['query']}): no data in database '{client.db}' yet, or "
                             f"pass --var {name}=VALUE", exit_code=EX_DATAERR)
        saved = (var.get("current") or {}).get("value")
        values[name] = saved if (not pick_first and isinstance(saved, str)
                                 and saved in options) else options[0]
    return values
