"""Rule files -> :class:`RuleSet`, with every problem reported as ``file:line:col``.

Two passes per file: the JSON Schema (the core plus every kind's fragment, written out as
rules/schema/rules.schema.json for editors) catches shape errors; then the semantic pass
(the rule's kind parses its condition, see rules/kinds/) catches what a schema can't: unknown
metrics, selectors that can never match, hysteresis on the wrong side, duplicate names,
broken templates, and (given a registry) unknown districts and sensors.
"""

from __future__ import annotations

import difflib
import functools
import glob
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from urbanbrain.rules import names, seasonal
from urbanbrain.rules.durations import DurationError, parse_duration
from urbanbrain.rules.kinds import KINDS, RuleKind, kind_of
from urbanbrain.rules.kinds.schema import compose
from urbanbrain.rules.model import (
    Group,
    Probe,
    Rule,
    RuleSet,
    Selector,
    _norm,
)
from urbanbrain.rules.schedule import ScheduleError, parse_schedule
from urbanbrain.rules.templating import Template, TemplateError
from urbanbrain.rules.yamlpos import Located, YamlSyntaxError, load_located, path_str

RESERVED_LABELS = ("alertname", "sensor", "district")


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    col: int
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.file}:{self.line}:{self.col}: {tag}{self.message}"


class RuleFileError(ValueError):
    """Rule files that failed the check; ``problems`` holds each one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def rules_schema() -> dict[str, Any]:
    """The schema of the kinds registered now (rules/kinds/schema.py)."""
    return _schema_of(tuple(KINDS.values()))


@functools.lru_cache(maxsize=4)
def _schema_of(kinds: tuple[RuleKind, ...]) -> dict[str, Any]:
    return compose()


def _validator() -> jsonschema.Draft202012Validator:
    return _validator_of(tuple(KINDS.values()))


@functools.lru_cache(maxsize=4)
def _validator_of(kinds: tuple[RuleKind, ...]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_schema_of(kinds))


def expand_paths(paths: Iterable[str | os.PathLike] | str | os.PathLike) -> list[str]:
    """Files, directories (their ``*.yaml``/``*.yml``) and globs, sorted, de-duplicated."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[str] = []
    for p in paths:
        s = os.fspath(p)
        if os.path.isdir(s):
            found = sorted(
                glob.glob(os.path.join(s, "*.yaml")) + glob.glob(os.path.join(s, "*.yml"))
            )
        elif any(ch in s for ch in "*?["):
            found = sorted(glob.glob(s))
        else:
            found = [s]
        for f in found:
            if f not in out:
                out.append(f)
    return out


class Ctx:
    """Problem collector for one file."""

    def __init__(self, file: str, loc: Located) -> None:
        self.file, self.loc = file, loc
        self.problems: list[Problem] = []

    def err(self, path: tuple, msg: str, severity: str = "error", key: bool = False) -> None:
        line, col = self.loc.where(path, key=key)
        where = path_str(path)
        self.problems.append(
            Problem(self.file, line, col, f"{where}: {msg}" if where else msg, severity)
        )

    def duration(self, obj: Mapping, key: str, path: tuple, default: int = 0) -> int:
        if key not in obj:
            return default
        try:
            return parse_duration(obj[key])
        except DurationError as exc:
            self.err(path + (key,), f"bad duration: {exc}")
            return default


def _schema_message(err: jsonschema.ValidationError) -> str:
    schema = err.schema if isinstance(err.schema, Mapping) else {}
    if schema.get("x-duration"):
        try:
            parse_duration(err.instance)
        except DurationError as exc:
            return f"bad duration: {exc}"
    if schema.get("x-message"):
        return str(schema["x-message"])
    if err.validator == "additionalProperties":
        return err.message.replace("Additional properties are not allowed", "unknown key(s)")
    if err.validator == "enum":
        return f"{err.instance!r} is not one of {', '.join(map(repr, err.validator_value))}"
    if err.validator == "pattern" and schema.get("$ref") is None:
        return f"{err.instance!r} does not match {err.validator_value!r}"
    return err.message


def _schema_errors(ctx: Ctx) -> None:
    def leaves(e: jsonschema.ValidationError) -> Iterable[jsonschema.ValidationError]:
        # oneOf/anyOf: report the most specific branch's errors, not "is not valid under any"
        sch = e.schema if isinstance(e.schema, Mapping) else {}
        if e.context and not sch.get("x-message"):
            # a branch written for another type (one interval vs a list) says nothing
            fitting = [c for c in e.context if c.validator != "type" or c.relative_path]
            best = jsonschema.exceptions.best_match(fitting or e.context)
            yield from leaves(best) if best is not None else [e]
        else:
            yield e

    seen: set[tuple] = set()
    errors = sorted(
        _validator().iter_errors(ctx.loc.data), key=lambda e: list(map(str, e.absolute_path))
    )
    for top in errors:
        for e in leaves(top):
            path = tuple(e.absolute_path)
            if e.validator == "additionalProperties" and isinstance(e.instance, Mapping):
                props = sorted(
                    (e.schema.get("properties") or {}) if isinstance(e.schema, Mapping) else {}
                )
                for k in e.instance:
                    if k not in props:
                        ctx.err(
                            path + (k,),
                            f"unknown key {k!r}{names.suggest(str(k), props)}",
                            key=True,
                        )
                continue
            msg = _schema_message(e)
            if (path, msg) in seen:
                continue
            seen.add((path, msg))
            key = e.validator in ("additionalProperties",)
            ctx.err(path, msg, key=key)


def _strings(v: Any) -> frozenset[str] | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return frozenset(_norm(x) for x in v)
    return frozenset([_norm(v)])


class Builder:
    def __init__(self, registry: Mapping[str, Mapping] | None) -> None:
        self.registry = registry
        if registry is not None:
            self.districts = {
                str(a.get("district")) for a in registry.values() if a.get("district")
            }
            self.attrs = set().union(*(a.keys() for a in registry.values())) if registry else set()

    # --- pieces -----------------------------------------------------------------------
    def metric(self, ctx: Ctx, name: Any, path: tuple, sel: Selector) -> str | None:
        if not isinstance(name, str):
            return None
        dom = names.metric_domain(name)
        if dom is None:
            ctx.err(path, f"unknown metric {name!r}{names.suggest(name, names.known_metrics())}")
            return None
        if sel.domain is not None and dom not in sel.domain:
            ctx.err(
                path,
                f"metric {name!r} belongs to domain {dom!r} but the selector picks "
                f"domain {', '.join(sorted(sel.domain))}: no sensor can match",
            )
            return None
        return name

    def probe(
        self,
        ctx: Ctx,
        obj: Mapping,
        path: tuple,
        sel: Selector,
        metric_key: str = "metric",
        default_agg: str | None = None,
        rate: bool = False,
    ) -> Probe | None:
        metric = self.metric(ctx, obj.get(metric_key), path + (metric_key,), sel)
        window = ctx.duration(obj, "window", path)
        if "window" in obj and window == 0:
            ctx.err(path + ("window",), "window must be > 0")
        agg = obj.get("aggregate") or default_agg or ("mean" if window else "last")
        min_samples = int(
            obj.get("min_samples") or (2 if rate or agg in ("stddev", "range") else 1)
        )
        rel = obj.get("relative_to") or (obj.get("condition") or {}).get("relative_to")
        offset = ctx.duration(obj, "offset", path)
        if metric is None:
            return None
        return Probe(
            metric,
            window,
            agg,
            min_samples,
            rel.get("attr") if rel else None,
            float(rel["default"]) if rel and "default" in rel else None,
            tuple(float(x) for x in rel.get("standard", ())) if rel else (),
            offset_ms=offset,
        )

    def selector(self, ctx: Ctx, obj: Mapping | None, path: tuple) -> Selector:
        obj = obj or {}
        where = tuple(
            sorted((k, _strings(v) or frozenset()) for k, v in (obj.get("where") or {}).items())
        )
        sel = Selector(
            domain=_strings(obj.get("domain")),
            kind=_strings(obj.get("kind")),
            district=_strings(obj.get("district")),
            sensors=_strings(obj.get("sensors")),
            where=where,
        )
        if self.registry is not None:

            def items(key: str) -> list[tuple[tuple, str]]:
                v = obj.get(key)
                if isinstance(v, list):
                    return [(path + (key, i), _norm(x)) for i, x in enumerate(v)]
                return [] if v is None else [(path + (key,), _norm(v))]

            for p, d in items("district"):
                if d not in self.districts:
                    ctx.err(p, f"unknown district {d!r}{names.suggest(d, sorted(self.districts))}")
            for p, s in items("sensors"):
                if s not in self.registry:
                    ctx.err(p, f"unknown sensor {s!r} (not in the registry)")
            for k, _ in where:
                if k not in self.attrs:
                    ctx.err(path + ("where", k), f"unknown registry attribute {k!r}", key=True)
        return sel

    def _registry_match(self, ctx: Ctx, rule: Rule, path: tuple) -> None:
        if self.registry is None:
            return
        matched = [s for s, a in self.registry.items() if rule.selector.matches(s, a)]
        if not matched:
            ctx.err(path + ("selector",), "selector matches no sensor in the registry")
            return
        for p in rule.probes():
            if (
                p.relative_attr
                and p.relative_default is None
                and not p.relative_standard
                and not any(
                    self.registry[s].get(p.relative_attr) not in (None, "") for s in matched
                )
            ):
                ctx.err(
                    path,
                    f"relative_to attribute {p.relative_attr!r} is set on none of the matched sensors",
                )

    def templates(self, ctx: Ctx, obj: Mapping, path: tuple) -> dict[str, Template]:
        out = {}
        for k, v in (obj or {}).items():
            try:
                out[k] = Template(str(v))
            except TemplateError as exc:
                ctx.err(path + (k,), f"bad template: {exc}")
        return out

    # --- a rule -----------------------------------------------------------------------
    def rule(
        self, ctx: Ctx, r: Mapping, path: tuple, group: str, glabels: Mapping[str, str],
        timezone: str = "UTC",
    ) -> Rule | None:
        n_before = len(ctx.problems)
        kind = r["kind"]
        spec = kind_of(kind)
        sel = self.selector(ctx, r.get("selector"), path + ("selector",))
        scope = r.get("scope") or "sensor"
        metric_dom = names.metric_domain(r["metric"]) if isinstance(r.get("metric"), str) else None
        if sel.domain is None and metric_dom and spec.narrows_domain:
            sel = Selector(frozenset([metric_dom]), sel.kind, sel.district, sel.sensors, sel.where)
        cond = spec.parse(self, ctx, r, path, sel, scope)
        for_ms = ctx.duration(r, "for", path)
        keep = ctx.duration(r, "keep_firing_for", path)
        labels = {**glabels, **(r.get("labels") or {})}
        for k in RESERVED_LABELS:
            if k in (r.get("labels") or {}):
                ctx.err(path + ("labels", k), f"label {k!r} is set by the engine", key=True)
        if "severity" not in labels:
            ctx.err(
                path + ("labels",),
                "no severity label (alerts will be routed as severity=none)",
                "warning",
            )
        annotations = self.templates(ctx, r.get("annotations") or {}, path + ("annotations",))
        _check_references(ctx, annotations, path + ("annotations",), labels, scope, spec)
        schedule = None
        if "schedule" in r:
            try:
                schedule = parse_schedule(r["schedule"], timezone)
            except ScheduleError as exc:
                ctx.err(path + ("schedule",), str(exc))
        if len(ctx.problems) > n_before and any(
            p.severity == "error" for p in ctx.problems[n_before:]
        ):
            return None
        line, _ = ctx.loc.where(path)
        rule = Rule(
            alert=r["alert"],
            group=group,
            kind=kind,
            spec=spec,
            scope=scope,
            selector=sel,
            condition=cond,
            for_ms=for_ms,
            keep_firing_for_ms=keep,
            across=r.get("across", "mean"),
            labels=labels,
            annotations=annotations,
            description=r.get("description", ""),
            file=ctx.file,
            line=line,
            schedule=schedule,
        )
        self._registry_match(ctx, rule, path)
        return rule


#: Template variables the engine sets for every alert (Prometheus' and ours).
_TEMPLATE_VARS = {"$", "$value", "$labels", "$externalLabels", "$sensors", "$observed",
                  ".", ".Value", ".Labels"}


def _check_references(ctx: Ctx, annotations: Mapping[str, Template], path: tuple,
                      labels: Mapping[str, str], scope: str, spec: RuleKind) -> None:
    """Annotation templates may only read labels an alert of this rule carries.

    Why at check time: Prometheus renders a missing label as "<no value>", so a typo
    (``$labels.distrct``) reaches the operator's pager instead of the engineer's editor.
    The labels of an alert are known from the rule alone: ``alertname``, the group's and
    rule's labels, ``district`` and, for per-sensor rules, ``sensor``."""
    carried = {"alertname", "district", *labels} | ({"sensor"} if scope == "sensor" else set())
    for key, tpl in annotations.items():
        for ref in tpl.references():
            parts = ref.split(".")
            if ref.startswith("$"):
                var, field = parts[0], (parts[1] if len(parts) > 1 else "")
            else:
                var, field = "." + parts[1], (parts[2] if len(parts) > 2 else "")
            if var not in _TEMPLATE_VARS:
                hint = _did_you_mean(var, [v for v in _TEMPLATE_VARS if v.startswith(var[0])])
                ctx.err(path + (key,), f"unknown template variable {var}{hint}")
                continue
            if var in ("$labels", ".Labels") and field and field not in carried:
                hint = _did_you_mean(field, sorted(carried))
                ctx.err(path + (key,),
                        f"{ref}: no alert of this rule carries the label {field!r} "
                        f"(it has {', '.join(sorted(carried))}){hint}")
            elif var == "$sensors" and scope != "district":
                ctx.err(path + (key,), "$sensors is set only for scope: district (empty here)",
                        "warning")
            elif var == "$observed" and not spec.sets_observed:
                ctx.err(path + (key,), "$observed is set only by anomaly conditions (empty here)",
                        "warning")


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def check_text(
    text: str,
    file: str = "<string>",
    registry: Mapping[str, Mapping] | None = None,
    builder: Builder | None = None,
) -> tuple[list[Group], list[Problem]]:
    """Check one rule file's text; returns its groups (if valid) and the problems."""
    try:
        loc = load_located(text)
    except YamlSyntaxError as exc:
        return [], [Problem(file, exc.line, exc.col, str(exc))]
    ctx = Ctx(file, loc)
    if loc.data is None:
        return [], [Problem(file, 1, 1, "empty rule file (expected 'groups:')", "warning")]
    _schema_errors(ctx)
    if ctx.problems:
        return [], ctx.problems
    b = builder or Builder(registry)
    groups: list[Group] = []
    gnames: dict[str, tuple] = {}
    for gi, g in enumerate(loc.data["groups"]):
        gp = ("groups", gi)
        if g["name"] in gnames:
            ctx.err(
                gp + ("name",),
                f"duplicate group name {g['name']!r} (first at line {loc.where(gnames[g['name']])[0]})",
            )
        gnames.setdefault(g["name"], gp + ("name",))
        interval = ctx.duration(g, "interval", gp)
        tz = str(g.get("timezone") or "UTC")
        if not seasonal.valid_timezone(tz):
            ctx.err(gp + ("timezone",), f"unknown time zone {tz!r} (use an IANA name, e.g. Europe/Paris)")
            tz = "UTC"
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for ri, r in enumerate(g["rules"]):
            rp = gp + ("rules", ri)
            if r["alert"] in seen:
                ctx.err(
                    rp + ("alert",),
                    f"duplicate alert name {r['alert']!r} in group {g['name']!r} (first at line {seen[r['alert']]})",
                )
            rule = b.rule(ctx, r, rp, g["name"], g.get("labels") or {}, tz)
            if rule is not None and r["alert"] not in seen:
                rules.append(rule)
            seen.setdefault(r["alert"], loc.where(rp + ("alert",))[0])
        groups.append(Group(g["name"], interval, tuple(rules), file))
    return groups, ctx.problems


def check_files(
    paths: Iterable[str] | str, registry: Mapping[str, Mapping] | None = None
) -> tuple[RuleSet | None, list[Problem]]:
    """Check rule files; the rule set is None when any error was found."""
    files = expand_paths(paths)
    problems: list[Problem] = []
    groups: list[Group] = []
    builder = Builder(registry)
    if not files:
        problems.append(Problem(str(paths), 0, 0, "no rule files found"))
    first: dict[str, str] = {}
    for f in files:
        try:
            text = Path(f).read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(Problem(f, 0, 0, f"cannot read: {exc.strerror or exc}"))
            continue
        gs, ps = check_text(text, f, registry, builder)
        problems.extend(ps)
        for g in gs:
            if g.name in first and first[g.name] != f:
                problems.append(
                    Problem(f, 1, 1, f"group {g.name!r} is also defined in {first[g.name]}")
                )
            first.setdefault(g.name, f)
        groups.extend(gs)
    if any(p.severity == "error" for p in problems):
        return None, problems
    return RuleSet(tuple(groups), tuple(files)), problems


def load_rules(
    paths: Iterable[str] | str, registry: Mapping[str, Mapping] | None = None
) -> RuleSet:
    rs, problems = check_files(paths, registry)
    if rs is None:
        raise RuleFileError([p for p in problems if p.severity == "error"])
    return rs


def loads(
    text: str, file: str = "<string>", registry: Mapping[str, Mapping] | None = None
) -> RuleSet:
    """Rule set from YAML text (tests, notebooks)."""
    groups, problems = check_text(text, file, registry)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise RuleFileError(errors)
    return RuleSet(tuple(groups), (file,))
