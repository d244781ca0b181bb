"""Rule files: the checker's file:line messages, the starter rule set, its unit tests, the
CLI and hot reload."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner
from urbanbrain.rules import RuleFileError, RuleSet, RuleWatcher, check_files, run_tests
from urbanbrain.rules.cli import app
from urbanbrain.rules.kinds.anomaly import AnomalyCond
from urbanbrain.rules.kinds.schema import SCHEMA_PATH

ROOT = Path(__file__).resolve().parents[1] / "rules"
CITY = ROOT / "city"
TESTS = ROOT / "tests"

GOOD = """\
groups:
  - name: g
    rules:
      - alert: Slow
        kind: threshold
        metric: speed_kmh
        condition: {op: '<', value: 20, clear: 30}
        labels: {severity: warning}
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def errors_of(path: Path, registry=None) -> list[str]:
    with pytest.raises(RuleFileError) as exc:
        RuleSet.load([str(path)], registry)
    return [str(p) for p in exc.value.problems]


@pytest.mark.parametrize(
    ("snippet", "line", "col", "needle"),
    [
        ("metric: speed_kmhh", 6, 17, "unknown metric 'speed_kmhh' (did you mean 'speed_kmh'?)"),
        ("metric: aqi_usa", 6, 17, "unknown metric 'aqi_usa'"),
        ("for: 2x", 7, 14, "bad duration: '2x' is not a duration"),
        ("for: -2m", 7, 14, "'-2m' is negative"),
        ("for: 1m2h", 7, 14, "largest first"),
        ("keep_firing_for: 5", 7, 26, "has no unit"),
        (
            "condition: {op: '<', value: 20, clear: 10}",
            7,
            48,
            "clear 10 is below the firing value 20",
        ),
        (
            "condition: {op: '>', value: 80, clear: 90}",
            7,
            48,
            "clear 90 is above the firing value 80",
        ),
        (
            "condition: {op: outside, value: [49.8, 50.2], clear: [49.7, 50.1]}",
            7,
            62,
            "must lie inside the firing band",
        ),
        (
            "selector: {domain: water}",
            6,
            17,
            "belongs to domain 'traffic' but the selector picks domain water",
        ),
        ("window: 0", 7, 17, "window must be > 0"),
        ("aggregate: avg", 7, 20, "'avg' does not match"),
        ("kind: treshold", 5, 15, "'treshold' is not one of"),
        ("severity: high", 7, 9, "unknown key 'severity'"),
        ("annotations: {summary: '{{ $value | bogus }}'}", 7, 32, "function 'bogus' not defined"),
        ("annotations: {summary: '{{ if $value }}x{{ end }}'}", 7, 32, "'if' is not supported"),
        ("labels: {alertname: x, severity: info}", 7, 18, "label 'alertname' is set by the engine"),
    ],
)
def test_bad_rule_files_are_refused_with_file_line_col(tmp_path, snippet, line, col, needle):
    base = textwrap.dedent("""\
        groups:
          - name: g
            rules:
              - alert: Slow
                kind: threshold
                metric: speed_kmh
                condition: {op: '<', value: 20}
        """)
    lines = base.splitlines()
    key = snippet.split(":")[0]
    replaced = False
    for i, ln in enumerate(lines):
        if ln.strip().startswith(key + ":"):
            lines[i] = " " * 8 + snippet
            replaced = True
    if not replaced:
        lines.insert(6, " " * 8 + snippet)
    path = write(tmp_path, "\n".join(lines) + "\n")
    errs = errors_of(path)
    hits = [e for e in errs if needle in e]
    assert hits, errs
    assert hits[0].startswith(f"{path}:{line}:{col}: "), hits[0]


def test_structural_errors(tmp_path):
    path = write(
        tmp_path,
        """\
        groups:
          - name: g
            rules:
              - alert: A
                kind: threshold
                metric: speed_kmh
                condition: {op: '<', value: 20}
              - alert: A
                kind: composite
                condition: {min_sensors: 3}
          - name: g
            rules:
              - alert: B
                kind: absence
                condition: {silent_for: 0}
        """,
    )
    errs = errors_of(path)
    assert any(":10:20: " in e and "exactly one of 'all' or 'any'" in e for e in errs), errs
    # after a schema error the semantic pass does not run; fix it and look again
    path.write_text(
        path.read_text().replace(
            "condition: {min_sensors: 3}",
            "condition: {all: [{metric: speed_kmh, op: '<', value: 5}], min_sensors: 3}",
        )
    )
    errs = errors_of(path)
    assert any(
        ":8:16: " in e and "duplicate alert name 'A' in group 'g' (first at line 4)" in e
        for e in errs
    ), errs
    assert any(
        ":10:20: " in e and "min_sensors > 1 and neighbours need scope: district" in e for e in errs
    ), errs
    assert any(
        ":11:11: " in e and "duplicate group name 'g' (first at line 2)" in e for e in errs
    ), errs
    assert any(":15:33: " in e and "silent_for must be > 0" in e for e in errs), errs


def test_yaml_syntax_error_has_a_position(tmp_path):
    path = write(tmp_path, "groups:\n  - name: g\n    rules: [\n")
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:4:1: YAML syntax error")


def test_registry_checks(tmp_path):
    registry = {"tl-0001": {"domain": "traffic", "kind": "loop", "district": "centre"}}
    path = write(
        tmp_path,
        """\
        groups:
          - name: g
            rules:
              - alert: A
                kind: threshold
                selector: {district: [centre, cnetre], sensors: [tl-0001, tl-9999], where: {road: main}}
                metric: speed_kmh
                condition: {op: '<', value: 20}
                labels: {severity: info}
              - alert: B
                kind: threshold
                selector: {kind: radar}
                metric: speed_kmh
                condition: {op: '<', value: 20}
                labels: {severity: info}
        """,
    )
    errs = errors_of(path, registry)
    assert any(
        ":6:39: " in e and "district[1]: unknown district 'cnetre' (did you mean 'centre'?)" in e
        for e in errs
    ), errs
    assert any(":6:67: " in e and "sensors[1]: unknown sensor 'tl-9999'" in e for e in errs), errs
    assert any(":6:85: " in e and "unknown registry attribute 'road'" in e for e in errs), errs
    assert any(
        ":12:19: " in e and "selector matches no sensor in the registry" in e for e in errs
    ), errs
    # without a registry these are not errors
    assert RuleSet.load([str(path)]).rule("A").selector.district == frozenset({"centre", "cnetre"})


def test_missing_severity_is_a_warning(tmp_path):
    path = write(tmp_path, GOOD.replace("        labels: {severity: warning}\n", ""))
    rs, problems = check_files([str(path)])
    assert rs is not None
    assert [p.severity for p in problems] == ["warning"] and "no severity label" in problems[
        0
    ].message


def test_starter_rules_pass_check_and_schema():
    rs, problems = check_files([str(CITY)])
    assert problems == [] and rs is not None
    names = {r.alert for r in rs.rules}
    for expected in (
        "Congestion",
        "ProbableAccident",
        "AirQualityUnhealthy",
        "PollutionEpisode",
        "WaterMainBurst",
        "LowWaterPressure",
        "PowerOutage",
        "PowerDistrictSilent",
        "VoltageOutOfBand",
        "SensorSilent",
        "SensorStuckPressure",
    ):
        assert expected in names
    # every kind of condition is in use (anomalies also as parts of composites)
    anomalies = [c for r in rs.rules for c in r.conditions() if isinstance(c, AnomalyCond)]
    used = {r.kind for r in rs.rules} | ({"anomaly"} if anomalies else set())
    assert used >= {"threshold", "absence", "anomaly", "composite"}
    assert any(a.seasonal == "time_of_day" for a in anomalies)
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for f in sorted(CITY.glob("*.yaml")):
        jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(f.read_text()))


def test_starter_rule_unit_tests_pass_and_cover_every_rule():
    results = run_tests([str(TESTS)])
    assert len(results) == len(list(TESTS.glob("*.yaml"))) >= 5
    for fr in results:
        assert fr.ok, (fr.file, [str(p) for p in fr.problems], [t.failures for t in fr.tests])
    tested = set()
    for f in TESTS.glob("*.yaml"):
        for case in yaml.safe_load(f.read_text())["tests"]:
            for t in case.get("alert_rule_test", []):
                if t.get("exp_alerts"):
                    tested.add(t["alertname"])
    rs = RuleSet.load([str(CITY)])
    untested = {r.alert for r in rs.rules} - tested
    assert untested == set(), untested


def test_failing_rule_test_is_reported(tmp_path):
    rules = write(tmp_path, GOOD)
    t = write(
        tmp_path,
        f"""\
        rule_files: [{rules.name}]
        evaluation_interval: 1m
        tests:
          - name: wrong expectation
            interval: 1m
            input_series:
              - series: 'speed_kmh{{sensor="tl-1", district="c"}}'
                values: '50 10x3'
            alert_rule_test:
              - eval_time: 2m
                alertname: Slow
                exp_alerts:
                  - exp_labels: {{severity: critical, sensor: tl-1, district: c}}
        """,
        "t.yaml",
    )
    (fr,) = run_tests([str(t)])
    assert not fr.ok
    (failure,) = fr.tests[0].failures
    assert (
        "alertname: Slow, time: 2m" in failure
        and "severity='critical'" in failure
        and "severity='warning'" in failure
    )


def test_cli_check_and_test_exit_codes(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["check", str(CITY)])
    assert ok.exit_code == 0 and "SUCCESS" in ok.output
    bad = write(tmp_path, GOOD.replace("speed_kmh", "sped_kmh"))
    res = runner.invoke(app, ["check", str(bad)])
    assert res.exit_code == 1
    assert f"{bad}:6:17: groups[0].rules[0].metric: unknown metric 'sped_kmh'" in res.output
    res = runner.invoke(app, ["test", str(TESTS)])
    assert res.exit_code == 0, res.output
    assert "test(s) passed" in res.output
    res = runner.invoke(app, ["test", str(tmp_path / "nothing*.yaml")])
    assert res.exit_code == 1


def test_cli_check_with_registry_csv(tmp_path):
    csv = tmp_path / "registry.csv"
    csv.write_text(
        "sensor_id,domain,kind,district,lat,lon,metrics,road_class,free_flow_kmh,neighbours\n"
        "tl-0001,traffic,loop,centre,1,2,speed_kmh;flow_vph,primary,50,tl-0002\n"
    )
    rules = write(
        tmp_path,
        GOOD.replace("metric: speed_kmh", "selector: {district: north}\n        metric: speed_kmh"),
    )
    res = CliRunner().invoke(app, ["check", "--registry", str(csv), str(rules)])
    assert res.exit_code == 1 and "unknown district 'north'" in res.output


def test_rule_watcher_reloads_and_keeps_the_old_set_on_error(tmp_path):
    path = write(tmp_path, GOOD)
    w = RuleWatcher([str(tmp_path)])
    assert w.poll() == (False, None)
    path.write_text(GOOD.replace("value: 20", "value: 25"))
    os.utime(path, ns=(1, 10**18))  # mtime resolution can be coarse
    changed, err = w.poll()
    assert changed and err is None
    assert w.ruleset.rule("Slow").condition.level.value == 25
    path.write_text(GOOD.replace("value: 20", "value: oops"))
    os.utime(path, ns=(1, 2 * 10**18))
    changed, err = w.poll()
    assert not changed and isinstance(err, RuleFileError) and f"{path}:7:" in str(err)
    assert w.ruleset.rule("Slow").condition.level.value == 25  # old set kept
    assert w.poll() == (False, None)  # not re-parsed until the file changes again
    write(tmp_path, GOOD.replace("name: g", "name: h").replace("Slow", "Other"), "second.yaml")
    changed, err = w.poll()
    assert not changed and err is not None  # first file still broken
    path.write_text(GOOD)
    os.utime(path, ns=(1, 3 * 10**18))
    changed, err = w.poll()
    assert changed and {r.alert for r in w.ruleset.rules} == {"Slow", "Other"}
