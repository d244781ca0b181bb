"""Device profile files → a :class:`ProfileSet`, every problem reported as ``file:line:col``.

The same checker serves ``urbanbrain devices check``, the bridge's start and its hot reload,
so a profile that passes the check is the profile ingest runs. What it catches: YAML
syntax, unknown keys (with a suggestion), missing or duplicate names, a profile that
selects nothing (no topic, no device type), bad topic patterns, metrics not in the
catalogue or not of the profile's domain, units that are not units of the metric, bad field
paths, zero scales, bad time formats and zones, and policies outside their choices.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from urbanbrain.ingest.profiles.model import (
    PARTIAL_POLICIES,
    TIME_FORMATS,
    UNKNOWN_POLICIES,
    FieldRef,
    MetricMap,
    Profile,
    ProfileSet,
    zone,
)
from urbanbrain.ingest.topics import TopicPattern
from urbanbrain.ingest.units import conversion, senml_unit, unece_unit
from urbanbrain.rules.loader import Problem, expand_paths
from urbanbrain.rules.yamlpos import Located, YamlSyntaxError, load_located, path_str

from urbanbrain.metrics import METRICS
from urbanbrain.settings import DOMAINS

PROFILE_KEYS = ("name", "description", "match", "domain", "kind", "id", "timestamp", "each",
                "metrics", "sentinels", "ignore", "unknown_fields", "partial")
MATCH_KEYS = ("topic", "device_type")
DEVICE_KEYS = ("field", "equals")
ID_KEYS = ("field", "topic", "prefix")
TS_KEYS = ("field", "format", "timezone")
METRIC_KEYS = ("field", "unit", "scale", "offset", "sentinels")


class ProfileFileError(ValueError):
    """Profile files that failed the check; ``problems`` holds each one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _suggest(word: str, choices: Iterable[str]) -> str:
    best = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {best[0]!r}?)" if best else ""


class _Ctx:
    def __init__(self, file: str, loc: Located) -> None:
        self.file, self.loc = file, loc
        self.problems: list[Problem] = []

    def err(self, path: tuple, msg: str, key: bool = False) -> None:
        line, col = self.loc.where(path, key=key)
        where = path_str(path)
        self.problems.append(Problem(self.file, line, col, f"{where}: {msg}" if where else msg))

    def keys(self, obj: Mapping, allowed: tuple[str, ...], path: tuple) -> None:
        for k in obj:
            if k not in allowed:
                self.err(path + (k,), f"unknown key {k!r}{_suggest(str(k), allowed)}", key=True)

    def mapping(self, obj: Any, path: tuple, what: str) -> Mapping | None:
        if obj is None:
            return None
        if not isinstance(obj, Mapping):
            self.err(path, f"{what} must be a mapping")
            return None
        return obj

    def ref(self, obj: Any, path: tuple) -> FieldRef | None:
        try:
            return FieldRef.parse(obj)
        except ValueError as exc:
            self.err(path, str(exc))
            return None

    def number(self, obj: Any, path: tuple, default: float) -> float:
        if obj is None:
            return default
        if isinstance(obj, bool) or not isinstance(obj, (int, float)):
            self.err(path, f"must be a number, not {obj!r}")
            return default
        return float(obj)

    def numbers(self, obj: Any, path: tuple) -> frozenset[float]:
        if obj is None:
            return frozenset()
        items = obj if isinstance(obj, list) else [obj]
        out = set()
        for i, v in enumerate(items):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                self.err(path + ((i,) if isinstance(obj, list) else ()),
                         f"a sentinel is a number, not {v!r}")
            else:
                out.add(float(v))
        return frozenset(out)


def _unit_factor(ctx: _Ctx, metric: str, unit: Any, path: tuple) -> tuple[float, float]:
    if unit is None:
        return 1.0, 0.0
    if not isinstance(unit, str):
        ctx.err(path, "unit must be a string")
        return 1.0, 0.0
    conv = conversion(metric, senml_unit(unit) or unece_unit(unit) or unit)
    if conv is None:
        ctx.err(path, f"{unit!r} is not a unit of {metric} ({METRICS[metric].unit})")
        return 1.0, 0.0
    return conv.factor, conv.offset


def _profile(ctx: _Ctx, p: Any, path: tuple, default_name: str) -> Profile | None:
    if not isinstance(p, Mapping):
        ctx.err(path, "a profile is a mapping")
        return None
    n_before = len(ctx.problems)
    ctx.keys(p, PROFILE_KEYS, path)
    name = p.get("name")
    if not isinstance(name, str) or not name:
        ctx.err(path + (("name",) if "name" in p else ()), "a profile needs a name")
        name = default_name
    known: set[tuple[str, ...]] = set()

    # selection: topic pattern and/or device type
    match = ctx.mapping(p.get("match"), path + ("match",), "match") or {}
    ctx.keys(match, MATCH_KEYS, path + ("match",))
    topic = None
    topic_text = match.get("topic")
    if topic_text is not None:
        try:
            if not isinstance(topic_text, str) or not topic_text:
                raise ValueError("match.topic must be a topic pattern string")
            if any(c in topic_text for c in "+#"):
                raise ValueError("write the pattern with {name} levels and {*}, not MQTT + and #")
            topic = TopicPattern.parse(topic_text)
        except ValueError as exc:
            ctx.err(path + ("match", "topic"), str(exc))
    device_field, device_types = None, frozenset()
    dev = ctx.mapping(match.get("device_type"), path + ("match", "device_type"), "device_type")
    if dev is not None:
        ctx.keys(dev, DEVICE_KEYS, path + ("match", "device_type"))
        device_field = ctx.ref(dev.get("field"), path + ("match", "device_type", "field"))
        eq = dev.get("equals")
        vals = eq if isinstance(eq, list) else [eq]
        if eq is None or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                 for v in vals):
            ctx.err(path + ("match", "device_type", "equals"),
                    "equals: a device type (string) or a list of them")
        device_types = frozenset(str(v) for v in vals if v is not None)
        if device_field is not None:
            known.add(device_field.parts)
    if topic is None and dev is None and topic_text is None:
        ctx.err(path + (("match",) if "match" in p else ()),
                "a profile must match a topic pattern or a device type (match.topic, "
                "match.device_type)")

    domain = p.get("domain")
    if domain is not None and domain not in DOMAINS:
        ctx.err(path + ("domain",), f"unknown domain {domain!r}{_suggest(str(domain), DOMAINS)}")
        domain = None
    kind = p.get("kind")
    if kind is not None and not isinstance(kind, str):
        ctx.err(path + ("kind",), "kind must be a string")
        kind = None

    # the device id
    id_ref, id_tag, prefix = None, None, ""
    idm = ctx.mapping(p.get("id"), path + ("id",), "id")
    if idm is not None:
        ctx.keys(idm, ID_KEYS, path + ("id",))
        if ("field" in idm) == ("topic" in idm):
            ctx.err(path + ("id",), "id takes exactly one of field (in the payload) or topic "
                                    "(a {level} of match.topic)")
        if "field" in idm:
            id_ref = ctx.ref(idm["field"], path + ("id", "field"))
            if id_ref is not None:
                known.add(id_ref.parts)
        if "topic" in idm:
            id_tag = str(idm["topic"])
            if topic is None or f"{{{id_tag}}}" not in topic.levels:
                ctx.err(path + ("id", "topic"), f"match.topic has no level {{{id_tag}}}")
        prefix = str(idm.get("prefix") or "")
    elif topic is None or "{sensor_id}" not in topic.levels:
        # without an id the reading takes the {sensor_id} of the topic; say so if there is none
        if topic is not None:
            ctx.err(path, "no id: give id.field or id.topic, or a {sensor_id} level in "
                          "match.topic")

    # event time
    ts_ref, ts_fmt, ts_zone = None, "iso8601", None
    tsm = ctx.mapping(p.get("timestamp"), path + ("timestamp",), "timestamp")
    if tsm is not None:
        ctx.keys(tsm, TS_KEYS, path + ("timestamp",))
        ts_ref = ctx.ref(tsm.get("field"), path + ("timestamp", "field"))
        if ts_ref is not None:
            known.add(ts_ref.parts)
        ts_fmt = tsm.get("format", "iso8601")
        if not isinstance(ts_fmt, str) or (ts_fmt not in TIME_FORMATS and "%" not in ts_fmt):
            ctx.err(path + ("timestamp", "format"),
                    f"format is one of {', '.join(TIME_FORMATS)} or a strptime pattern")
            ts_fmt = "iso8601"
        if "timezone" in tsm:
            try:
                ts_zone = zone(str(tsm["timezone"]))
            except (ZoneInfoNotFoundError, ValueError):
                ctx.err(path + ("timestamp", "timezone"),
                        f"unknown time zone {tsm['timezone']!r} (an IANA name, e.g. Europe/Paris)")
            if "%" not in ts_fmt:
                ctx.err(path + ("timestamp", "timezone"),
                        "timezone applies to strptime formats without %z only")

    each = None
    if "each" in p:
        each = ctx.ref(p["each"], path + ("each",))

    sentinels = ctx.numbers(p.get("sentinels"), path + ("sentinels",))
    for i, ig in enumerate(p.get("ignore") or []):
        r = ctx.ref(ig, path + ("ignore", i))
        if r is not None:
            known.add(r.parts)

    # metrics
    maps: list[MetricMap] = []
    metrics = ctx.mapping(p.get("metrics"), path + ("metrics",), "metrics")
    if not metrics:
        ctx.err(path + (("metrics",) if "metrics" in p else ()),
                "a profile maps at least one metric")
    for metric, spec in (metrics or {}).items():
        mp = path + ("metrics", metric)
        m = METRICS.get(metric)
        if m is None:
            ctx.err(mp, f"unknown metric {metric!r}{_suggest(str(metric), METRICS)}", key=True)
            continue
        if domain is not None and m.domain != domain:
            ctx.err(mp, f"metric {metric!r} belongs to {m.domain}, not {domain}", key=True)
        if isinstance(spec, str):
            spec = {"field": spec}
        spec = ctx.mapping(spec, mp, "a metric mapping")
        if spec is None:
            continue
        ctx.keys(spec, METRIC_KEYS, mp)
        ref = ctx.ref(spec.get("field"), mp + ("field",))
        scale = ctx.number(spec.get("scale"), mp + ("scale",), 1.0)
        if scale == 0:
            ctx.err(mp + ("scale",), "scale 0 would make every value 0")
        offset = ctx.number(spec.get("offset"), mp + ("offset",), 0.0)
        f, o = _unit_factor(ctx, metric, spec.get("unit"), mp + ("unit",))
        own = ctx.numbers(spec.get("sentinels"), mp + ("sentinels",))
        if ref is not None:
            known.add(ref.parts)
            maps.append(MetricMap(metric, ref, scale * f, offset * f + o,
                                  own if "sentinels" in spec else sentinels))
    if each is not None:
        known.add(each.parts)

    unknown = p.get("unknown_fields", "ignore")
    if unknown not in UNKNOWN_POLICIES:
        ctx.err(path + ("unknown_fields",), f"{unknown!r} is not one of "
                                            f"{', '.join(UNKNOWN_POLICIES)}")
    partial = p.get("partial")
    if partial is not None and partial not in PARTIAL_POLICIES:
        ctx.err(path + ("partial",), f"{partial!r} is not one of {', '.join(PARTIAL_POLICIES)}")
    if len(ctx.problems) > n_before:
        return None
    line = ctx.loc.where(path)[0]
    return Profile(
        name=name, file=ctx.file, line=line, topic=topic, topic_text=topic_text,
        device_field=device_field, device_types=device_types, domain=domain, kind=kind,
        id_ref=id_ref, id_tag=id_tag, id_prefix=prefix, ts_ref=ts_ref, ts_format=ts_fmt,
        ts_zone=ts_zone, each=each, metrics=tuple(maps), unknown_fields=unknown,
        partial=partial, known=frozenset(known))


def check_text(text: str, file: str = "<string>") -> tuple[list[Profile], list[Problem]]:
    """Profiles of one file and the problems found in it."""
    try:
        loc = load_located(text)
    except YamlSyntaxError as exc:
        return [], [Problem(file, exc.line, exc.col, str(exc))]
    ctx = _Ctx(file, loc)
    doc = loc.data
    if not isinstance(doc, Mapping) or not isinstance(doc.get("profiles"), list):
        ctx.err((), "a profile file is a mapping with a 'profiles' list")
        return [], ctx.problems
    ctx.keys(doc, ("profiles",), ())
    out = []
    for i, p in enumerate(doc["profiles"]):
        prof = _profile(ctx, p, ("profiles", i), f"{Path(file).stem}[{i}]")
        if prof is not None:
            out.append(prof)
    return out, sorted(ctx.problems, key=lambda pr: (pr.line, pr.col))


def check_files(paths: Iterable[str | os.PathLike] | str | os.PathLike
                ) -> tuple[ProfileSet | None, list[Problem]]:
    """Check profile files (files, directories, globs); the set is None on any error."""
    files = expand_paths(paths)
    problems: list[Problem] = []
    if not files:
        problems.append(Problem(str(paths), 0, 0, "no profile files found"))
    profiles: list[Profile] = []
    first: dict[str, Profile] = {}
    for f in files:
        try:
            text = Path(f).read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(Problem(f, 0, 0, f"cannot read: {exc.strerror or exc}"))
            continue
        ps, errs = check_text(text, f)
        problems.extend(errs)
        for p in ps:
            if p.name in first:
                o = first[p.name]
                problems.append(Problem(f, p.line, 1, f"profile {p.name!r} is also defined at "
                                                      f"{o.file}:{o.line}"))
            first.setdefault(p.name, p)
        profiles.extend(ps)
    if problems:
        return None, problems
    return ProfileSet(tuple(profiles), tuple(files)), problems


def load_profiles(paths: Iterable[str | os.PathLike] | str | os.PathLike) -> ProfileSet:
    ps, problems = check_files(paths)
    if ps is None:
        raise ProfileFileError(problems)
    return ps


def loads(text: str, file: str = "<string>") -> ProfileSet:
    """A profile set from YAML text (tests, notebooks)."""
    ps, problems = check_text(text, file)
    if problems:
        raise ProfileFileError(problems)
    return ProfileSet(tuple(ps), (file,))
