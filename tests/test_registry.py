"""The registry CSV has one parser (urbanbrain/registry.py); the rule engine's view of it
(rules/registry.py) is that parse reshaped, extra columns included."""

from __future__ import annotations

from pathlib import Path

import pytest

from urbanbrain.registry import Registry
from urbanbrain.rules import load_registry_csv
from urbanbrain.rules.loader import load_rules

CSV = """sensor_id,domain,kind,district,lat,lon,metrics,road_class,free_flow_kmh,neighbours,nominal_kv,zone
tl-1,traffic,loop,centre,48.85,2.35,flow;speed;occupancy,primary,50,tl-2,,north
tl-2,traffic,loop,centre,48.86,2.36,flow;speed,,,tl-1; tl-3,,south
ps-1,power,substation,east,,,voltage;load,,,,20,
 ,traffic,loop,centre,,,,,,,,
"""


def _write(tmp_path: Path, text: str = CSV) -> Path:
    p = tmp_path / "registry.csv"
    p.write_text(text)
    return p


def test_rule_view_is_the_one_parse(tmp_path: Path) -> None:
    p = _write(tmp_path)
    reg = Registry.load(p)
    attrs = load_registry_csv(p)
    assert set(reg) == set(attrs) == {"tl-1", "tl-2", "ps-1"}  # blank sensor_id skipped
    assert attrs["tl-1"] == {
        "domain": "traffic", "kind": "loop", "district": "centre", "lat": 48.85, "lon": 2.35,
        "metrics": ["flow", "occupancy", "speed"], "road_class": "primary",
        "free_flow_kmh": 50.0, "neighbours": ["tl-2"], "zone": "north"}
    assert attrs["tl-2"]["neighbours"] == ["tl-1", "tl-3"]  # spaces around ';' trimmed
    assert "road_class" not in attrs["tl-2"]  # empty cells left out
    assert attrs["ps-1"]["nominal_kv"] == 20.0 and "zone" not in attrs["ps-1"]
    assert reg["tl-1"].extra == (("zone", "north"),)


def test_extra_columns_survive_save_and_select_rules(tmp_path: Path) -> None:
    p = _write(tmp_path)
    out = tmp_path / "copy" / "registry.csv"
    Registry.load(p).save(out)
    assert load_registry_csv(out) == load_registry_csv(p)
    rules = tmp_path / "r.yaml"
    rules.write_text("""groups:
  - name: g
    rules:
      - alert: NorthSlow
        kind: threshold
        selector: {domain: traffic, where: {zone: north}}
        metric: speed_kmh
        condition: {op: '<', value: 10}
""")
    rs = load_rules([str(rules)], load_registry_csv(p))
    sel = rs.groups[0].rules[0].selector
    picked = [sid for sid, a in load_registry_csv(p).items() if sel.matches(sid, a)]
    assert picked == ["tl-1"]


def test_bad_number_names_file_line_and_sensor(tmp_path: Path) -> None:
    p = _write(tmp_path, CSV.replace("48.86", "north-ish"))
    with pytest.raises(ValueError, match=r"registry\.csv:3: sensor 'tl-2': lat 'north-ish'"):
        load_registry_csv(p)


def test_missing_columns_refused(tmp_path: Path) -> None:
    p = _write(tmp_path, "sensor_id,domain\nx,traffic\n")
    with pytest.raises(ValueError, match="lacks columns"):
        Registry.load(p)
