"""Sensor positions for the Geomap: the device registry as InfluxDB points.

Raw readings carry no coordinates (lat/lon are not tags: unbounded, and they would split
series), so the City overview's map reads measurement ``sensors``: one point per sensor
with tags sensor, district, domain, kind and fields lat, lon. Call :func:`write_registry_points`
at startup and whenever the registry file changes; rewriting is idempotent (same series,
same timestamp for an unchanged file gives the same point).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from urbanbrain.errors import (
    EX_UNAVAILABLE, ActionableError, ConfigError, DataError, unreachable_message,
)
from urbanbrain.lineprotocol import LineProtocolError, line
from urbanbrain.registry import Registry, Sensor

MEASUREMENT = "sensors"
POLICY = "longterm"  # urbanbrain.retention.MEASUREMENT_POLICY["sensors"]


def registry_points(sensors: Registry | Iterable[Sensor], ts_ms: int | None = None) -> list[str]:
    """Line protocol (precision ms) for every sensor with coordinates.

    Sensors without lat/lon, or with an id line protocol cannot carry, are skipped: the
    map cannot place them anyway, and one bad row must not hide the others.
    """
    ts = int(time.time() * 1000) if ts_ms is None else ts_ms
    items = sensors.values() if isinstance(sensors, Registry) else sensors
    out = []
    for s in items:
        if s.lat is None or s.lon is None:
            continue
        try:
            out.append(line(MEASUREMENT, {"sensor": s.sensor_id, "district": s.district,
                                          "domain": s.domain, "kind": s.kind},
                            {"lat": float(s.lat), "lon": float(s.lon)}, ts))
        except LineProtocolError:
            continue
    return out


def points_from_csv(path: str | Path, ts_ms: int | None = None) -> list[str]:
    """:func:`registry_points` of a registry CSV; the timestamp defaults to the file's mtime."""
    p = Path(path)
    ts = int(p.stat().st_mtime * 1000) if ts_ms is None else ts_ms
    return registry_points(Registry.load(p), ts)


def write_registry_points(path: str | Path, influx_url: str, db: str, *,
                          username: str | None = None, password: str | None = None,
                          ts_ms: int | None = None, timeout: float = 10.0) -> int:
    """Write the registry's points with InfluxDB's v1 ``/write`` (1.x, 2.x DBRP, 3.x).

    Returns the number of points written. Raises :class:`~urbanbrain.errors.ConfigError`
    when InfluxDB refuses the user or has no such database, ``OSError`` (an
    :class:`~urbanbrain.errors.ActionableError` too) when it cannot be reached or refuses
    the points, :class:`~urbanbrain.errors.DataError` for a CSV that is not a registry.
    """
    try:
        lines = points_from_csv(path, ts_ms)
    except ValueError as exc:  # a CSV without the registry's columns
        raise DataError(f"{exc}: give the device registry CSV (urbanbrain simulate city "
                        "writes one)") from None
    if not lines:
        return 0
    # the long-term policy: a registry file older than the raw policy's 30 days still shows
    params = {"db": db, "precision": "ms", "rp": POLICY}
    if username:
        params.update(u=username, p=password or "")
    req = urllib.request.Request(
        f"{influx_url.rstrip('/')}/write?{urllib.parse.urlencode(params)}",
        data="\n".join(lines).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if resp.status not in (200, 204):
                raise WriteRefused(f"InfluxDB /write answered {resp.status}")
    except urllib.error.HTTPError as exc:
        body = exc.read()[:300].decode(errors="replace").strip()
        if exc.code in (401, 403) or (exc.code == 404 and "database not found" in body):
            raise ConfigError(
                f"InfluxDB at {influx_url} refused to write to database '{db}' as "
                f"{username or 'no user'} ({exc.code} {body}): the registry points need a "
                "writer: set URBANBRAIN_INFLUX_USERNAME/PASSWORD (and URBANBRAIN_INFLUX_DB)"
            ) from exc
        raise WriteRefused(f"InfluxDB /write answered {exc.code}: {body}") from exc
    except urllib.error.URLError as exc:
        raise WriteRefused(unreachable_message(
            "InfluxDB", influx_url, exc, "start it, or set URBANBRAIN_INFLUX_URL"),
            exit_code=EX_UNAVAILABLE) from exc
    return len(lines)


class WriteRefused(ActionableError, OSError):
    """InfluxDB did not take the points (or could not be reached)."""
