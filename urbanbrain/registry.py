"""The device registry: what each sensor is, where it stands, what it measures.

Ingest enriches readings from it (district, kind, location), rules select on its
attributes, dashboards map it. The simulator writes one for the city it simulates; a real
deployment exports one from its asset database. Format: CSV with the columns below
(one sensor a row, list columns joined with ``;``). ``nominal_kv`` (substations: the
nominal voltage, e.g. 10 or 20 kV) is what voltage deviations are measured against; empty
where it does not apply. Further columns (an asset tag, a maintenance zone) are kept as text
in ``Sensor.extra``: rule selectors may match on them (``where:``).

This is the one parser of the registry CSV: ingest, the worker, the rule engine and the
console all read it through :meth:`Registry.load`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COLUMNS = (
    "sensor_id", "domain", "kind", "district", "lat", "lon", "metrics",
    "road_class", "free_flow_kmh", "neighbours", "nominal_kv",
)


@dataclass(frozen=True, slots=True)
class Sensor:
    sensor_id: str
    domain: str
    kind: str
    district: str
    lat: float | None = None
    lon: float | None = None
    metrics: frozenset[str] = field(default_factory=frozenset)
    road_class: str | None = None
    free_flow_kmh: float | None = None
    neighbours: tuple[str, ...] = ()
    nominal_kv: float | None = None
    #: columns beyond :data:`COLUMNS`, as (name, text) pairs, empty cells left out
    extra: tuple[tuple[str, str], ...] = ()

    def rule_attrs(self) -> dict[str, Any]:
        """Every non-empty column but ``sensor_id``: what rule selectors (``where:``) and
        district conditions (``neighbours``) read; lists as lists."""
        out: dict[str, Any] = {k: v for k in ("domain", "kind", "district")
                               if (v := getattr(self, k))}
        for key in ("lat", "lon", "road_class", "free_flow_kmh", "nominal_kv"):
            v = getattr(self, key)
            if v is not None:
                out[key] = v
        if self.metrics:
            out["metrics"] = sorted(self.metrics)
        if self.neighbours:
            out["neighbours"] = list(self.neighbours)
        out.update(self.extra)
        return out

    def attrs(self) -> dict[str, object]:
        """Attributes rule selectors may match on."""
        return {
            "sensor_id": self.sensor_id, "domain": self.domain, "kind": self.kind,
            "district": self.district, "road_class": self.road_class,
            "free_flow_kmh": self.free_flow_kmh, "nominal_kv": self.nominal_kv,
        }


def _float(value: str | None, column: str, sensor_id: str) -> float | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"sensor {sensor_id!r}: {column} {value!r} is not a number") from None


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(";") if v.strip()]


def _sensor(sid: str, row: dict[str | None, str | None]) -> Sensor:
    def text(key: str) -> str:
        return (row.get(key) or "").strip()

    extra = tuple((k, v.strip()) for k, v in row.items()
                  if k is not None and k not in COLUMNS and v is not None and v.strip())
    return Sensor(
        sensor_id=sid,
        domain=text("domain"),
        kind=text("kind"),
        district=text("district"),
        lat=_float(row.get("lat"), "lat", sid),
        lon=_float(row.get("lon"), "lon", sid),
        metrics=frozenset(_split(text("metrics"))),
        road_class=text("road_class") or None,
        free_flow_kmh=_float(row.get("free_flow_kmh"), "free_flow_kmh", sid),
        neighbours=tuple(_split(text("neighbours"))),
        nominal_kv=_float(row.get("nominal_kv"), "nominal_kv", sid),
        extra=extra,
    )


class Registry(dict[str, Sensor]):
    """sensor_id → Sensor."""

    @classmethod
    def load(cls, path: Path) -> Registry:
        reg = cls()
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"sensor_id", "domain", "kind", "district"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: registry lacks columns {sorted(missing)}")
            for line, row in enumerate(reader, start=2):
                sid = (row.get("sensor_id") or "").strip()
                if not sid:
                    continue
                try:
                    s = _sensor(sid, row)
                except ValueError as exc:
                    raise ValueError(f"{path}:{line}: {exc}") from None
                reg[s.sensor_id] = s
        return reg

    def rule_attrs(self) -> dict[str, dict[str, Any]]:
        """sensor_id → :meth:`Sensor.rule_attrs`: the registry as the rule engine takes it."""
        return {sid: s.rule_attrs() for sid, s in self.items()}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            extra = list(dict.fromkeys(k for s in self.values() for k, _ in s.extra))
            w.writerow([*COLUMNS, *extra])
            for s in self.values():
                more = dict(s.extra)
                w.writerow([
                    s.sensor_id, s.domain, s.kind, s.district,
                    "" if s.lat is None else s.lat, "" if s.lon is None else s.lon,
                    ";".join(sorted(s.metrics)), s.road_class or "",
                    "" if s.free_flow_kmh is None else s.free_flow_kmh,
                    ";".join(s.neighbours),
                    "" if s.nominal_kv is None else s.nominal_kv,
                    *(more.get(k, "") for k in extra),
                ])
