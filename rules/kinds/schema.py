"""The rules JSON schema: the core (rules/schema/rules.core.json) plus every registered
kind's fragment.

The loader validates against the composition, so a new kind folder is checked without
touching a file; rules/schema/rules.schema.json is the same composition written out for
editors (tests keep it current). Regenerate it with::

    python -m urbanbrain.rules.kinds
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from urbanbrain.rules.kinds import KINDS

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"
CORE_PATH = SCHEMA_DIR / "rules.core.json"
SCHEMA_PATH = SCHEMA_DIR / "rules.schema.json"


def compose() -> dict[str, Any]:
    """The full schema for the kinds registered now."""
    schema = json.loads(CORE_PATH.read_text())
    schema.pop("$comment", None)
    defs = schema["$defs"]
    rule = defs["rule"]
    rule["properties"]["kind"] = {"enum": list(KINDS)}
    branches = []
    for kind in KINDS.values():
        for name, frag in kind.schema_defs.items():
            if name in defs and defs[name] != frag:
                raise ValueError(f"kind {kind.name!r}: schema $defs/{name} is already defined")
            defs[name] = copy.deepcopy(frag)
        then: dict[str, Any] = {}
        if kind.rule_requires:
            then["required"] = list(kind.rule_requires)
        then["properties"] = {"condition": {"$ref": f"#/$defs/{kind.condition_def}"}}
        branches.append({"if": {"properties": {"kind": {"const": kind.name}}, "required": ["kind"]},
                         "then": then})
    rule["allOf"] = branches
    return schema


def dumps(value: Any, indent: int = 0) -> str:
    """JSON with short objects and lists on one line, as the file was written by hand."""
    flat = json.dumps(value, ensure_ascii=False)
    if len(flat) + 2 * indent <= 100 or not isinstance(value, (dict, list)) or not value:
        return flat
    pad = "  " * (indent + 1)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    items = [pad + dumps(v, indent + 1) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"


def render() -> str:
    """The text of rules/schema/rules.schema.json."""
    return dumps(compose()) + "\n"
