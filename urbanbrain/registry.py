"""The device registry: what each sensor is, where it stands, what it measures.

Ingest enriches readings from it (district, kind, location), rules select on its
attributes, dashboards map it. The simulator writes one for the city it simulates; a real
deployment exports one from its asset database. Format: CSV with the columns below
(one sensor a row, list columns joined with ``;``). ``nominal_kv`` (substations: the
nominal voltage, e.g. 10 or 20 kV) is what voltage deviations are measured against; empty
where it does not apply.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

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

    def attrs(self) -> dict[str, object]:
        """Attributes rule selectors may match on."""
        return {
            "sensor_id": self.sensor_id, "domain": self.domain, "kind": self.kind,
            "district": self.district, "road_class": self.road_class,
            "free_flow_kmh": self.free_flow_kmh, "nominal_kv": self.nominal_kv,
        }


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(";") if v]


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
            for row in reader:
                s = Sensor(
                    sensor_id=row["sensor_id"],
                    domain=row["domain"],
                    kind=row["kind"],
                    district=row["district"],
                    lat=_float(row.get("lat")),
                    lon=_float(row.get("lon")),
                    metrics=frozenset(_split(row.get("metrics"))),
                    road_class=row.get("road_class") or None,
                    free_flow_kmh=_float(row.get("free_flow_kmh")),
                    neighbours=tuple(_split(row.get("neighbours"))),
                    nominal_kv=_float(row.get("nominal_kv")),
                )
                reg[s.sensor_id] = s
        return reg

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            for s in self.values():
                w.writerow([
                    s.sensor_id, s.domain, s.kind, s.district,
                    "" if s.lat is None else s.lat, "" if s.lon is None else s.lon,
                    ";".join(sorted(s.metrics)), s.road_class or "",
                    "" if s.free_flow_kmh is None else s.free_flow_kmh,
                    ";".join(s.neighbours),
                    "" if s.nominal_kv is None else s.nominal_kv,
                ])
