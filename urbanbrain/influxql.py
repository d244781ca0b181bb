"""The InfluxQL reader: a minimal v1 ``/query`` client, the reading side of
:mod:`urbanbrain.influx` (which writes).

Grafana's InfluxQL datasource speaks this protocol; the console, ``dashboards snapshot``,
``up``'s summary, the live scorer and the tests read through it, so what they see is what a
panel sees. Synchronous and dependency-free (urllib): its callers are commands and tests,
not the hot path.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from urbanbrain.errors import (
    EX_CONFIG, EX_DATAERR, EX_UNAVAILABLE, ActionableError, unreachable_message,
)
from urbanbrain.resolution import MEASUREMENT


class QueryError(ActionableError, RuntimeError):
    """A query failed; the message says which and why (one line on the command line)."""


class InfluxUnreachable(QueryError):
    """InfluxDB did not answer at all (as opposed to refusing a query)."""

    exit_code = EX_UNAVAILABLE


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
        if not [m for m in measurements if m != MEASUREMENT]:
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
