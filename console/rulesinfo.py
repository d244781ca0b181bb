"""The loaded alert rules as operators see them: which sensors each one watches, whether
it fires, and its source (for the drill-down from an alert to the rule that fired).

The rules are the files the streams workers load (``URBANBRAIN_ALERT_RULES_PATH``, the same
setting and default), read again here, so what is shown is what is deployed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from urbanbrain.rules.model import Rule, RuleSet
from urbanbrain.rules.watcher import RuleWatcher


def rule_paths() -> list[str]:
    """The workers' rule paths (one path today; a list if the setting becomes one)."""
    from urbanbrain.streams.alerting import AlertSettings

    value: Any = AlertSettings().rules_path
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def load_watcher(paths: list[str] | None = None) -> RuleWatcher:
    return RuleWatcher(paths or rule_paths(), None)


def rule_source(rule: Rule, max_lines: int = 60) -> str:
    """The rule's YAML as written: from its ``- alert:`` line to the next rule or group."""
    try:
        lines = Path(rule.file).read_text().splitlines()
    except OSError:
        return ""
    start = max(rule.line - 1, 0)
    if start >= len(lines):
        return ""
    first = lines[start]
    indent = len(first) - len(first.lstrip(" -"))
    out = [first]
    for line in lines[start + 1:start + max_lines]:
        stripped = line.lstrip(" ")
        depth = len(line) - len(stripped)
        if stripped and (depth < indent or (depth <= indent and stripped.startswith("-"))
                         or (depth < indent + 2 and stripped.startswith("- "))):
            break
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


def watched(rule: Rule, registry: Mapping[str, Mapping[str, Any]]) -> int:
    """Registered sensors the rule's selector matches (0: it can never fire on a sensor)."""
    return sum(1 for sid, attrs in registry.items() if rule.selector.matches(sid, attrs))


def rule_info(rule: Rule, registry: Mapping[str, Mapping[str, Any]] | None = None
              ) -> dict[str, Any]:
    return {
        "id": rule.id, "alert": rule.alert, "group": rule.group, "kind": rule.kind,
        "scope": rule.scope, "severity": rule.labels.get("severity", "none"),
        "for_s": rule.for_ms / 1000, "description": rule.description,
        "file": rule.file, "line": rule.line, "source": rule_source(rule),
        "sensors": watched(rule, registry) if registry is not None else None,
    }


def find_rule(rs: RuleSet, rule_id: str) -> Rule | None:
    for r in rs.rules:
        if r.id == rule_id or r.alert == rule_id:
            return r
    return None
