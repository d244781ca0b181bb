"""``urbanbrain rules list``: the loaded rules, what each watches, and what fires.

* loaded: the rule files the streams workers load (``URBANBRAIN_ALERT_RULES_PATH``);
* watches: registered sensors the rule's selector matches (with a registry);
* firing: alerts of the rule firing now, from the ``alerts`` topic the workers write;
* fired: alerts of the rule seen on that topic at all (firing or since resolved);
* cold: a rule that watches no registered sensor can never fire ("no sensors"); a rule
  that never fired is marked "never fired" (as far back as the topic's retention).

Pending alerts (condition true, ``for`` not yet over) and rules still warming up (baselines
still learning) live only inside the workers' evaluators: the workers do not publish them
yet, so they are shown as "-" (see the console README, "What the engine must publish").
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from urbanbrain.rules.loader import RuleFileError
from urbanbrain.rules.registry import load_registry_csv

from .cli_common import fail, out, run_kafka, settings
from .rulesinfo import load_watcher, watched
from .view import read_view


def rule_rows(paths: list[str] | None, registry: dict[str, Any] | None,
              firing: dict[str, int], fired: dict[str, int]) -> list[dict[str, Any]]:
    rows = []
    for r in load_watcher(paths).ruleset.rules:
        n = watched(r, registry) if registry is not None else None
        cold = []
        if n == 0:
            cold.append("no sensors")
        if not fired.get(r.id):
            cold.append("never fired")
        rows.append({"rule": r.id, "kind": r.kind, "scope": r.scope,
                     "severity": r.labels.get("severity", "none"), "watches": n,
                     "pending": None, "firing": firing.get(r.id, 0), "fired": fired.get(r.id, 0),
                     "cold": cold, "file": f"{r.file}:{r.line}"})
    return rows


def list_rules(
    paths: Annotated[list[str] | None, typer.Argument(
        help="rule files or folders (default: what the workers load)")] = None,
    registry: Annotated[Path | None, typer.Option(
        help="device registry CSV (default: URBANBRAIN_REGISTRY_PATH)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """The loaded rules with firing counts (from the alerts topic) and the cold ones."""
    s = settings()
    reg_path = registry or s.registry_path
    reg = None
    if reg_path is not None:
        try:
            reg = load_registry_csv(reg_path)
        except OSError as exc:
            raise fail(f"registry {reg_path}: {exc}") from None
    view = run_kafka(s, lambda: read_view(s))
    try:
        rows = rule_rows(paths, reg, view.firing_by_rule(), view.fired_by_rule())
    except RuleFileError as exc:
        raise fail(f"rule files do not load: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise fail(f"rule files: {exc}") from None
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(row).decode())
        return
    t = Table(title=f"{len(rows)} rule(s) loaded; {sum(r['firing'] for r in rows)} alert(s) "
                    "firing (pending: not published by the workers yet)")
    for c in ("rule", "kind", "scope", "severity", "watches", "pending", "firing", "fired",
              "cold"):
        t.add_column(c, no_wrap=c == "rule", justify="right" if c in (
            "watches", "pending", "firing", "fired") else "left")
    for row in rows:
        t.add_row(escape(row["rule"]), row["kind"], row["scope"], row["severity"],
                  "-" if row["watches"] is None else str(row["watches"]), "-",
                  str(row["firing"]), str(row["fired"]), ", ".join(row["cold"]))
    out.print(t)
