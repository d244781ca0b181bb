"""Reading compose.yaml the way Docker Compose does, for tests that cannot run Docker:
variable substitution from a .env, merge keys, service environments."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"

VAR_REF = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution (the forms this project uses), to test .env handling."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and (value is None if op == "?" else empty):
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and (value is None if op == "-" else empty):
            return arg
        return value or ""

    return VAR_REF.sub(sub, text)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    """Like compose: values are substituted after parsing (comments never are)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    return node


def variables(doc: Any) -> dict[str, set[str | None]]:
    """Every ${VAR} used in the values of a parsed compose file, with its operators."""
    found: dict[str, set[str | None]] = {}
    for m in VAR_REF.finditer("\n".join(strings(doc))):
        name = m.group("name") or m.group("bare")
        if name:
            found.setdefault(name, set()).add(m.group("op"))
    return found


def env_mapping(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if m:
            values[m.group(1)] = m.group(2).strip().strip('"')
    return values




def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def filled_example_env(**overrides: str) -> dict[str, str]:
    """.env.example with every empty secret given a value, as an operator fills it."""
    env = {k: (v or f"generated-{k.lower()}") for k, v in dotenv(ENV_EXAMPLE).items()}
    env.update(overrides)
    return env
