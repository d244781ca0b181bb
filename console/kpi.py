"""KPI tiles and a sensor's recent series, read from InfluxDB as the read-only user.

The console never writes to InfluxDB and logs in as the dashboards' reader (``grafana`` in
compose), so a console bug or a stolen console session can read what Grafana can, nothing
more. InfluxQL over the v1 ``/query`` endpoint, which InfluxDB 1.x, 2.x (DBRP) and 3.x all
serve, as the dashboards do.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from urbanbrain.retention import RAW, policy_of
from urbanbrain.settings import DOMAINS, Settings

#: Per domain: (field of district_1m/city_1m, label, unit, decimals), the tiles shown.
KPI_FIELDS: dict[str, list[tuple[str, str, str, int]]] = {
    "traffic": [("congestion_index_mean", "congestion", "", 2),
                ("speed_kmh_mean", "mean speed", "km/h", 0),
                ("sensors", "loops reporting", "", 0)],
    "environment": [("aqi_us_max", "worst AQI (US)", "", 0),
                    ("pm25_ugm3_mean", "PM2.5", "µg/m³", 1),
                    ("noise_dba_mean", "noise", "dB(A)", 0)],
    "water": [("pressure_kpa_min", "lowest pressure", "kPa", 0),
              ("flow_ls_total", "flow", "L/s", 0),
              ("sensors", "meters reporting", "", 0)],
    "power": [("load_mw_total", "load", "MW", 1),
              ("frequency_hz_mean", "frequency", "Hz", 2),
              ("sensors", "substations reporting", "", 0)],
}
_SAFE_ID = re.compile(r"^[^\x00-\x1f]{1,200}$")


class InfluxError(RuntimeError):
    pass


def quote_string(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxReader:
    """``/query`` as the settings' (reader) user."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.influx_url.rstrip("/") + "/query"
        self.db = settings.influx_db
        self.auth = None
        if settings.influx_username:
            pw = settings.influx_password.get_secret_value() if settings.influx_password else ""
            self.auth = aiohttp.BasicAuth(settings.influx_username, pw)
        self.token = settings.influx_token.get_secret_value() if settings.influx_token else None
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def query(self, q: str) -> list[dict[str, Any]]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        headers = {"Authorization": f"Token {self.token}"} if self.token else {}
        try:
            async with self._session.get(self.url, params={"q": q, "db": self.db, "epoch": "ms"},
                                         auth=self.auth, headers=headers) as resp:
                if resp.status >= 300:
                    raise InfluxError(f"InfluxDB {resp.status}: {(await resp.text())[:200]}")
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise InfluxError(f"InfluxDB unreachable: {exc!r}") from None
        result = (body.get("results") or [{}])[0]
        if "error" in result:
            if "database not found" in result["error"]:
                return []
            raise InfluxError(result["error"])
        return result.get("series") or []

    async def kpis(self) -> dict[str, Any]:
        """Latest 1-min roll-ups: ``{"city": {domain: {field: v}}, "districts": {district:
        {domain: {field: v}}}, "at": ms}``; empty where nothing was written lately."""
        out: dict[str, Any] = {"city": {}, "districts": {}, "at": None}
        for measurement, key in (("city_1m", None), ("district_1m", "district")):
            group = "domain" + (f', "{key}"' if key else "")
            series = await self.query(f'SELECT last(*) FROM "{policy_of(measurement)}".'
                                      f'"{measurement}" '
                                      f'WHERE time > now() - 15m GROUP BY {group}')
            for s in series:
                tags = s.get("tags") or {}
                domain = tags.get("domain")
                if domain not in KPI_FIELDS:
                    continue
                row = dict(zip(s["columns"], s["values"][0]))
                wanted = {f for f, *_ in KPI_FIELDS[domain]}
                vals = {k[5:]: v for k, v in row.items()
                        if k.startswith("last_") and k[5:] in wanted and v is not None}
                if row.get("time"):
                    out["at"] = max(out["at"] or 0, int(row["time"]))
                if key is None:
                    out["city"][domain] = vals
                else:
                    out["districts"].setdefault(tags.get(key, "?"), {})[domain] = vals
        return out

    async def series(self, sensor_id: str, domain: str, range_: str) -> dict[str, Any]:
        """A sensor's raw readings over ``range_``: ``{"time": [...], metric: [...]}``."""
        if domain not in DOMAINS or not _SAFE_ID.match(sensor_id):
            raise ValueError("unknown domain or bad sensor id")
        if not re.fullmatch(r"\d+[smhd]", range_):
            raise ValueError(f"bad range {range_!r}")
        series = await self.query(
            f'SELECT * FROM "{RAW}"."{domain}" WHERE "sensor" = {quote_string(sensor_id)} '
            f"AND time > now() - {range_} ORDER BY time DESC LIMIT 2000")
        out: dict[str, list[Any]] = {"time": []}
        for s in series:
            cols = s["columns"]
            rows = list(reversed(s["values"]))
            for i, c in enumerate(cols):
                if c in ("district", "kind", "sensor"):
                    continue
                vals = [r[i] for r in rows]
                if c == "time":
                    out["time"] = vals
                elif any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                    out[c] = vals
        return out
