"""Rule unit tests in the format of ``promtool test rules``.

A test file names rule files, input series in promtool's expanding notation and the alerts
expected at given evaluation times::

    rule_files: [../city/traffic.yaml]
    evaluation_interval: 1m
    tests:
      - name: congestion on one loop
        interval: 1m
        input_series:
          - series: 'congestion_index{sensor="tl-0001", district="centre"}'
            values: '0.1x5 0.8x20 0.1x10'
        alert_rule_test:
          - eval_time: 15m
            alertname: Congestion
            exp_alerts:
              - exp_labels: {severity: warning, sensor: tl-0001, district: centre}

Series labels other than the metric name describe the sensor (``sensor`` is required;
``district``, ``domain``, ``kind``, ``neighbours="a;b"``, ... become registry
attributes); a ``registry:`` mapping or CSV path may add sensors that never report.
Expected labels exclude ``alertname`` (added from the test case) and must match exactly;
annotations are compared only when ``exp_annotations`` is given (promtool compares them
always). Sample *i* of a series is at ``i * interval``; evaluation runs every
``evaluation_interval`` from 0 to the last ``eval_time``, alerts are compared at each
``eval_time`` (firing only, as in promtool).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from urbanbrain.rules import names
from urbanbrain.rules.durations import DurationError, parse_duration
from urbanbrain.rules.evaluator import Evaluator
from urbanbrain.rules.loader import Problem, check_files, expand_paths
from urbanbrain.rules.registry import load_registry_csv
from urbanbrain.rules.yamlpos import YamlSyntaxError, load_located, path_str

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN"
_EXPAND = re.compile(rf"^(?P<a>{_NUM})(?:(?P<sign>[-+])(?P<b>{_NUM}))?x(?P<n>\d+)$")
_SERIES = re.compile(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)?\s*(?:\{(.*)\})?\s*$", re.DOTALL)
_ESC = re.compile(r"\\(.)")


def unescape(s: str) -> str:
    """PromQL string escapes (``\\"``, ``\\\\``, ``\\n``), keeping non-ASCII text intact."""
    return _ESC.sub(lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), s)


_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


class SeriesError(ValueError):
    pass


def _num(s: str) -> float:
    return float(s.replace("Inf", "inf"))


def expand_values(text: str | float) -> list[float | None]:
    """Expand promtool's notation: ``'1 2+3x2 _x2 stale 5x1'`` ->
    ``[1, 2, 5, 8, None, None, None, 5, 5]`` (``_`` missing, ``stale`` = no sample)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return [float(text)]
    out: list[float | None] = []
    for tok in str(text).split():
        if tok in ("_", "stale"):
            out.append(None)
            continue
        if tok.startswith("_x"):
            n = tok[2:]
            if not n.isdigit():
                raise SeriesError(f"bad token {tok!r}")
            out.extend([None] * int(n))
            continue
        m = _EXPAND.match(tok)
        if m:
            a = _num(m.group("a"))
            b = _num(m.group("b")) if m.group("b") else 0.0
            if m.group("sign") == "-":
                b = -b
            out.extend(a + i * b for i in range(int(m.group("n")) + 1))
            continue
        try:
            out.append(_num(tok))
        except ValueError:
            raise SeriesError(
                f"bad value {tok!r} (expected a number, a+bxN, axN, _ or stale)"
            ) from None
    return out


def parse_series(text: str) -> tuple[str, dict[str, str]]:
    """``'speed_kmh{sensor="tl-1", district="centre"}'`` -> (metric, labels)."""
    m = _SERIES.match(text)
    if not m:
        raise SeriesError(f"bad series {text!r}")
    name, body = m.group(1), m.group(2) or ""
    labels: dict[str, str] = {}
    pos = 0
    body = body.strip()
    while pos < len(body):
        lm = _LABEL.match(body, pos)
        if not lm:
            raise SeriesError(f"bad label matcher in {text!r} near {body[pos:]!r}")
        labels[lm.group(1)] = unescape(lm.group(2))
        pos = lm.end()
    if "__name__" in labels:
        name = labels.pop("__name__")
    if not name:
        raise SeriesError(f"series {text!r} has no metric name")
    return name, labels


@dataclass
class TestResult:
    file: str
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class FileResult:
    file: str
    problems: list[Problem] = field(default_factory=list)  # the test file or its rules are broken
    tests: list[TestResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(t.ok for t in self.tests)


def _fmt_alerts(alerts: list[tuple[dict, dict | None]]) -> str:
    if not alerts:
        return "    (none)"
    lines = []
    for labels, ann in alerts:
        s = "    " + ", ".join(f"{k}={v!r}" for k, v in sorted(labels.items()))
        if ann:
            s += "\n      annotations: " + ", ".join(f"{k}={v!r}" for k, v in sorted(ann.items()))
        lines.append(s)
    return "\n".join(lines)


def _run_case(
    case: Mapping[str, Any],
    ruleset: Any,
    base_registry: Mapping[str, dict],
    eval_interval: int,
    file: str,
    index: int,
) -> TestResult:
    name = str(case.get("name") or f"test #{index + 1}")
    res = TestResult(file, name)
    try:
        interval = parse_duration(case.get("interval", 0)) or eval_interval
    except DurationError as exc:
        res.failures.append(f"interval: {exc}")
        return res
    registry: dict[str, dict[str, Any]] = {k: dict(v) for k, v in base_registry.items()}
    samples: list[tuple[int, str, str, float]] = []
    for si, s in enumerate(case.get("input_series") or []):
        try:
            metric, labels = parse_series(str(s["series"]))
            values = expand_values(s.get("values", ""))
        except (SeriesError, KeyError) as exc:
            res.failures.append(f"input_series[{si}]: {exc}")
            continue
        sensor = labels.pop("sensor", None) or labels.pop("sensor_id", None)
        if not sensor:
            res.failures.append(f"input_series[{si}]: series {s['series']!r} has no sensor label")
            continue
        if names.metric_domain(metric) is None:
            res.failures.append(f"input_series[{si}]: unknown metric {metric!r}")
            continue
        attrs = registry.setdefault(sensor, {})
        for k, v in labels.items():
            attrs.setdefault(k, v)
        attrs.setdefault("domain", names.metric_domain(metric))
        for i, v in enumerate(values):
            if v is not None:
                samples.append((i * interval, sensor, metric, v))
    checks: dict[int, list[tuple[int, Mapping]]] = defaultdict(list)
    for ti, t in enumerate(case.get("alert_rule_test") or []):
        try:
            checks[parse_duration(t["eval_time"])].append((ti, t))
        except (DurationError, KeyError) as exc:
            res.failures.append(f"alert_rule_test[{ti}]: eval_time: {exc}")
    if res.failures:
        return res
    for entries in checks.values():
        for ti, t in entries:
            try:
                ruleset.rule(t["alertname"])
            except KeyError:
                res.failures.append(
                    f"alert_rule_test[{ti}]: no rule named {t.get('alertname')!r} in the rule files"
                )
    if res.failures:
        return res
    ev = Evaluator(ruleset, registry)
    end = max(checks) if checks else 0
    times = sorted(set(range(0, end + 1, eval_interval)) | set(checks))
    samples.sort()
    readings: dict[tuple[int, str], dict[str, float]] = defaultdict(dict)
    for ts, sensor, metric, v in samples:
        readings[(ts, sensor)][metric] = v
    keys = sorted(readings)
    k = 0
    for now in times:
        batch = []
        while k < len(keys) and keys[k][0] <= now:
            ts, sensor = keys[k]
            a = registry.get(sensor, {})
            batch.append(
                {
                    "sensor_id": sensor,
                    "ts": ts,
                    "domain": a.get("domain"),
                    "kind": a.get("kind"),
                    "district": a.get("district"),
                    "metrics": readings[keys[k]],
                }
            )
            k += 1
        ev.observe(batch)
        ev.tick(now)
        for ti, t in checks.get(now, []):
            alertname = t["alertname"]
            got = [a for a in ev.active_alerts("firing") if a["labels"]["alertname"] == alertname]
            exp = t.get("exp_alerts") or []
            compare_ann = any("exp_annotations" in e for e in exp)
            exp_set = [
                (
                    {
                        **{str(k2): str(v2) for k2, v2 in (e.get("exp_labels") or {}).items()},
                        "alertname": alertname,
                    },
                    {str(k2): str(v2) for k2, v2 in (e.get("exp_annotations") or {}).items()}
                    if compare_ann
                    else None,
                )
                for e in exp
            ]
            got_set = [(dict(a["labels"]), dict(a["ann"]) if compare_ann else None) for a in got]
            key = lambda x: (sorted(x[0].items()), sorted((x[1] or {}).items()))
            if sorted(exp_set, key=key) != sorted(got_set, key=key):
                res.failures.append(
                    f"alertname: {alertname}, time: {t['eval_time']},\n"
                    f"  exp:\n{_fmt_alerts(sorted(exp_set, key=key))}\n"
                    f"  got:\n{_fmt_alerts(sorted(got_set, key=key))}"
                )
    return res


def run_test_file(path: str | Path) -> FileResult:
    """Run every test case of one test file."""
    path = Path(path)
    file = str(path)
    out = FileResult(file)
    try:
        loc = load_located(path.read_text(encoding="utf-8"))
    except OSError as exc:
        out.problems.append(Problem(file, 0, 0, f"cannot read: {exc.strerror or exc}"))
        return out
    except YamlSyntaxError as exc:
        out.problems.append(Problem(file, exc.line, exc.col, str(exc)))
        return out
    doc = loc.data
    if not isinstance(doc, Mapping) or not isinstance(doc.get("tests"), list):
        out.problems.append(
            Problem(file, 1, 1, "a rule test file needs 'rule_files' and a 'tests' list")
        )
        return out
    for key in doc:
        if key not in (
            "rule_files",
            "evaluation_interval",
            "tests",
            "registry",
            "group_eval_order",
        ):
            line, col = loc.where((key,), key=True)
            out.problems.append(Problem(file, line, col, f"unknown key {key!r}"))
    try:
        eval_interval = parse_duration(doc.get("evaluation_interval", "1m")) or 60_000
    except DurationError as exc:
        line, col = loc.where(("evaluation_interval",))
        out.problems.append(Problem(file, line, col, f"evaluation_interval: {exc}"))
        return out
    rule_files = [str(path.parent / f) for f in (doc.get("rule_files") or [])]
    if not rule_files:
        line, col = loc.where(("rule_files",))
        out.problems.append(Problem(file, line, col, "no rule_files"))
        return out
    registry: dict[str, dict[str, Any]] = {}
    reg = doc.get("registry")
    if isinstance(reg, str):
        registry = load_registry_csv(path.parent / reg)
    elif isinstance(reg, Mapping):
        registry = {str(k): dict(v or {}) for k, v in reg.items()}
    ruleset, problems = check_files(expand_paths(rule_files))
    errors = [p for p in problems if p.severity == "error"]
    if ruleset is None:
        out.problems.extend(errors)
        return out
    for i, case in enumerate(doc["tests"]):
        if not isinstance(case, Mapping):
            line, col = loc.where(("tests", i))
            out.problems.append(
                Problem(file, line, col, f"{path_str(('tests', i))}: expected a mapping")
            )
            continue
        out.tests.append(_run_case(case, ruleset, registry, eval_interval, file, i))
    return out


def run_tests(paths: list[str] | str) -> list[FileResult]:
    return [run_test_file(f) for f in expand_paths(paths)]
