"""The device registry as the rule engine takes it: sensor_id → attribute dict.

Parsed by :class:`urbanbrain.registry.Registry` (the one CSV parser, columns in
docs/DATA_CONTRACTS.md); this only shapes it for selectors: empty cells left out, numeric
columns as floats, ``metrics`` and ``neighbours`` as lists, extra columns as text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from urbanbrain.registry import Registry


def load_registry_csv(path: str | Path) -> dict[str, dict[str, Any]]:
    return Registry.load(Path(path)).rule_attrs()
