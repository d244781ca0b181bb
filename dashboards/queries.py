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

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from urbanbrain.errors import (
    EX_CONFIG, EX_DATAERR, EX_UNAVAILABLE, ActionableError, unreachable_message,
)

_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}|\[\[(\w+)\]\]")


class QueryError(ActionableError, RuntimeError):
    """A query failed; the message says which and why (one line on the command line)."""


class InfluxUnreachable(QueryError):
    """InfluxDB did not answer at all (as opposed to refusing a query)."""

    exit_code = EX_UNAVAILABLE


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


RESOLUTION_MEASUREMENT = "resolution"  # dashboards/resolution.py MEASUREMENT


class InfluxQL:
    """A minimal v1 ``/query`` client (what Grafana's InfluxQL datasource uses)."""

    def __init__(self, url: str, db: str, user: str | None = None,
                 password: str | None = None, timeout: float = 10.0) -> None:
        self.url, self.db, self.timeout = url.rstrip("/"), db, timeout
        self.auth = (user, password) if user else None

    def query(self, q: str) -> list[dict]:
        """The series of the first statement's result; raises QueryError on an error."""
        params = {"q": q, "db": self.db, "epoch": "ms"}
        if self.auth:
            params.update(u=self.auth[0], p=self.auth[1] or "")
        url = f"{self.url}/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                who = f"user {self.auth[0]!r}" if self.auth else "no credentials"
                raise QueryError(
                    f"InfluxDB at {self.url} refused {who} on database '{self.db}' "
                    f"({exc.code}): check URBANBRAIN_INFLUX_USERNAME/URBANBRAIN_INFLUX_PASSWORD "
                    "(a reader, e.g. grafana) and its grant on the database",
                    exit_code=EX_CONFIG) from exc
            raise QueryError(f"{exc.code} for {q!r}: {exc.read()[:300]!r}") from exc
        except (OSError, ValueError) as exc:  # ValueError: a malformed URL
            raise InfluxUnreachable(unreachable_message(
                "InfluxDB", self.url, exc, "start it (urbanbrain up --keep leaves one running), "
                "or set URBANBRAIN_INFLUX_URL to a running server")) from exc
        result = body.get("results", [{}])[0]
        if "error" in result:
            raise QueryError(f"InfluxQL error for {q!r}: {result['error']}")
        return result.get("series", [])

    def check(self) -> None:
        """Raise one actionable error unless the server answers, our user may read the
        database and it holds data: a command checks this before it starts work (renders
        PNGs of empty panels, say)."""
        from urbanbrain.reach import require_influx

        try:
            require_influx(self.url, timeout=min(self.timeout, 5.0))
        except ActionableError as exc:
            raise InfluxUnreachable(str(exc)) from None
        try:
            names = [row[0] for s in self.query("SHOW DATABASES") for row in s.get("values", [])]
        except QueryError as exc:
            if exc.exit_code != EX_CONFIG:
                raise
            names = None  # a reader may not list databases (1.x: admin only): try one query
        if names is not None and self.db not in names:
            raise QueryError(f"InfluxDB at {self.url} has no database '{self.db}' (it has: "
                             f"{', '.join(names) or 'none'}): set URBANBRAIN_INFLUX_DB",
                             exit_code=EX_CONFIG)
        # `influx init` writes the dashboards' resolution table: that alone is no data
        measurements = [row[0] for s in self.query("SHOW MEASUREMENTS LIMIT 2")
                        for row in s.get("values", [])]
        if not [m for m in measurements if m != RESOLUTION_MEASUREMENT]:
            raise QueryError(f"InfluxDB database '{self.db}' at {self.url} holds no data yet: "
                             "run the pipeline first (urbanbrain up --keep), or set "
                             "URBANBRAIN_INFLUX_DB to the database it writes",
                             exit_code=EX_DATAERR)

    def tag_values(self, q: str) -> list[str]:
        """Values of a ``SHOW TAG VALUES`` query, de-duplicated in order."""
        out: list[str] = []
        for s in self.query(q):
            for row in s.get("values", []):
                if row[-1] not in out:
                    out.append(row[-1])
        return out


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
