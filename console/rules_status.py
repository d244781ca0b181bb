"""``urbanbrain rules list``: the loaded rules, what each watches, and what fires.

* loaded: the rule files the streams workers load (``URBANBRAIN_ALERT_RULES_PATH``);
* watches: registered sensors the rule's selector matches (with a registry);
* firing: alerts of the rule firing now, from the ``alerts`` topic the workers write;
* fired: alerts of the rule seen on that topic at all (firing or since resolved);
* cold: a rule that watches no registered sensor can never fire ("no sensors"); a rule
  that never fired is marked "never fired" (as far back as the topic's retention).

Pending alerts (condition true, ``for`` not yet over) and keys still warming up (baselines
with too little history to judge) live inside the workers' evaluators; every worker
publishes them per evaluator on the compacted ``alerts.rules`` topic every
``URBANBRAIN_ALERT_STATUS_INTERVAL_S`` (streams/worker.py). This command sums the latest
record of each evaluator, leaving out records older than three intervals (a partition that
moved to another worker).
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


def engine_status(records: list[Any], max_age_ms: int, now_ms: int) -> dict[str, dict[str, Any]]:
    """Per rule id, summed over the latest ``alerts.rules`` record of every evaluator:
    pending, firing, warming (keys still learning their baselines) and a few examples."""
    latest: dict[bytes, dict[str, Any]] = {}
    for r in records:
        if r.value is None:
            latest.pop(r.key, None)
            continue
        latest[r.key] = orjson.loads(r.value)
    out: dict[str, dict[str, Any]] = {}
    for doc in latest.values():
        if now_ms - int(doc.get("at", 0)) > max_age_ms:
            continue
        for rule_id, st in (doc.get("rules") or {}).items():
            agg = out.setdefault(rule_id, {"pending": 0, "firing": 0, "warming": 0,
                                           "warming_keys": []})
            for k in ("pending", "firing", "warming"):
                agg[k] += int(st.get(k, 0))
            agg["warming_keys"] += list(st.get("warming_keys") or [])[:5]
    return out


def rule_rows(paths: list[str] | None, registry: dict[str, Any] | None,
              firing: dict[str, int], fired: dict[str, int],
              engine: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    rows = []
    engine = engine or {}
    for r in load_watcher(paths).ruleset.rules:
        n = watched(r, registry) if registry is not None else None
        cold = []
        if n == 0:
            cold.append("no sensors")
        if not fired.get(r.id):
            cold.append("never fired")
        e = engine.get(r.id)
        if e and e["warming"]:
            cold.append(f"warming up on {e['warming']} key(s), e.g. "
                        f"{', '.join(e['warming_keys'][:3])}")
        rows.append({"rule": r.id, "kind": r.kind, "scope": r.scope,
                     "severity": r.labels.get("severity", "none"), "watches": n,
                     "pending": e["pending"] if e else None,
                     "firing": firing.get(r.id, 0), "fired": fired.get(r.id, 0),
                     "warming": e["warming"] if e else None,
                     "warming_keys": e["warming_keys"] if e else [],
                     "cold": cold, "file": f"{r.file}:{r.line}"})
    return rows


async def read_engine_status(s: Any, timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
    import time

    from urbanbrain.kafka import RULES_STATUS_TOPIC, TopicReader
    from urbanbrain.streams.alerting import AlertSettings

    async with TopicReader(s, [RULES_STATUS_TOPIC]) as reader:
        records = await reader.catch_up(timeout_s)
    interval_ms = int(AlertSettings().status_interval_s * 1000)
    return engine_status(records, 3 * interval_ms, int(time.time() * 1000))


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
    engine = run_kafka(s, lambda: read_engine_status(s))
    try:
        rows = rule_rows(paths, reg, view.firing_by_rule(), view.fired_by_rule(), engine)
    except RuleFileError as exc:
        raise fail(f"rule files do not load: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise fail(f"rule files: {exc}") from None
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(row).decode())
        return
    t = Table(title=f"{len(rows)} rule(s) loaded; {sum(r['firing'] for r in rows)} alert(s) "
                    "firing" + ("" if engine else " (no worker has published its state yet)"))
    for c in ("rule", "kind", "scope", "severity", "watches", "pending", "firing", "fired",
              "cold"):
        t.add_column(c, no_wrap=c == "rule", justify="right" if c in (
            "watches", "pending", "firing", "fired") else "left")
    for row in rows:
        t.add_row(escape(row["rule"]), row["kind"], row["scope"], row["severity"],
                  "-" if row["watches"] is None else str(row["watches"]),
                  "-" if row["pending"] is None else str(row["pending"]),
                  str(row["firing"]), str(row["fired"]), ", ".join(row["cold"]))
    out.print(t)
