"""Deploying rules and seeing every setting: ``--rules``/``--webhook`` as settings, and
``urbanbrain settings`` listing every field of every settings object with secrets masked."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from urbanbrain.errors import BadValue, DataError
from urbanbrain.rules.deploy import (
    RULES_ENV, WEBHOOKS_ENV, alert_environment, check_rules, starter_rules,
)
from urbanbrain.settings_report import MASK, SETTINGS_OBJECTS, mask_url, report
from urbanbrain.streams.alerting import AlertSettings

ROOT = Path(__file__).resolve().parent.parent
def _rooms() -> list[str]:
    """The room folders setup.py packages (so a new room is scanned too)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ROOMS":
            return list(ast.literal_eval(node.value).values())
    raise AssertionError("setup.py has no ROOMS")


ROOMS = _rooms()
EXAMPLES = ROOT / "rules" / "examples"


def settings_classes_in_code() -> set[str]:
    """Every class in the rooms' code that derives from a settings class."""
    names = {"BaseSettings", "Settings"}
    found: set[str] = set()
    trees = [ast.parse(p.read_text()) for room in ROOMS for p in (ROOT / room).rglob("*.py")]
    changed = True
    while changed:  # follow subclasses of subclasses
        changed = False
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in found:
                    bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                             for b in node.bases}
                    if bases & (names | found):
                        found.add(node.name)
                        changed = True
    return found - {"BaseSettings"}


def test_every_settings_class_is_reported() -> None:
    listed = {name for _, name, _ in SETTINGS_OBJECTS}
    assert settings_classes_in_code() <= listed, (
        "a settings class `urbanbrain settings` does not show: add it to "
        "urbanbrain/settings_report.py SETTINGS_OBJECTS")


def test_report_names_every_field_once_with_secrets_masked(monkeypatch) -> None:
    from urbanbrain.settings import Settings
    from urbanbrain.streams.settings import StreamsSettings

    monkeypatch.setenv("URBANBRAIN_MQTT_PASSWORD", "hunter2")
    monkeypatch.setenv("URBANBRAIN_INFLUX_TOKEN", "tok-123")
    monkeypatch.setenv("URBANBRAIN_CONSOLE_USERS", "ops:admin:$argon2id$v=19$hash-42")
    monkeypatch.setenv("URBANBRAIN_ALERT_WEBHOOK_URLS",
                       "https://ops:pw@hooks.example/a?token=s3cret,http://am:9093/api/v2/alerts")
    lines = list(report())
    text = "\n".join(lines)
    for secret in ("hunter2", "tok-123", "s3cret", ":pw@", "hash-42"):
        assert secret not in text
    names = [ln.split("=", 1)[0] for ln in lines if ln.startswith("URBANBRAIN_")]
    assert len(names) == len(set(names)), "a setting listed twice"
    wanted = {f"URBANBRAIN_{f.upper()}" for f in Settings.model_fields}
    wanted |= {f"URBANBRAIN_{f.upper()}" for f in StreamsSettings.model_fields}
    wanted |= {f"URBANBRAIN_ALERT_{f.upper()}" for f in AlertSettings.model_fields}
    from urbanbrain.console.settings import ConsoleSettings

    wanted |= {f"URBANBRAIN_{f.upper()}" for f in ConsoleSettings.model_fields}
    assert wanted <= set(names)
    by_name = {ln.split("=", 1)[0]: ln for ln in lines if ln.startswith("URBANBRAIN_")}
    assert by_name["URBANBRAIN_MQTT_PASSWORD"].startswith(f"URBANBRAIN_MQTT_PASSWORD={MASK}  # set")
    assert by_name["URBANBRAIN_ALERT_WEBHOOK_URLS"].split("  #")[0].endswith(
        "http://am:9093/api/v2/alerts")
    assert "# default" in by_name["URBANBRAIN_ALERT_RULES_PATH"]
    assert str(starter_rules()) in by_name["URBANBRAIN_ALERT_RULES_PATH"]


def test_mask_url() -> None:
    assert mask_url("https://u:p@h/x?a=1&b") == f"https://u:{MASK}@h/x?a={MASK}&b"
    assert mask_url("http://am:9093/api") == "http://am:9093/api"
    assert mask_url("not a url") == "not a url"


def test_settings_command_prints_to_stdout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("URBANBRAIN_")}
    env["URBANBRAIN_ALERT_RULES_PATH"] = f"{starter_rules()},{EXAMPLES}"
    p = subprocess.run([sys.executable, "-m", "urbanbrain.cli", "settings", "--no-defaults"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert f"URBANBRAIN_ALERT_RULES_PATH={starter_rules()},{EXAMPLES}  # set" in p.stdout
    assert "URBANBRAIN_KAFKA_BOOTSTRAP" not in p.stdout  # a default: left out


# --------------------------------------------------------------------------- rule paths

def test_alert_settings_read_a_list_of_rule_paths(monkeypatch) -> None:
    monkeypatch.setenv(RULES_ENV, f"/a/rules, /b/one.yaml{os.pathsep}/c")
    assert AlertSettings().rules_path == [Path("/a/rules"), Path("/b/one.yaml"), Path("/c")]
    monkeypatch.delenv(RULES_ENV)
    assert AlertSettings().rules_path == [starter_rules()]


def test_rules_are_added_to_the_starter_set_or_replace_it(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text((EXAMPLES / "queue-at-a-loop.yaml").read_text())
    env: dict[str, str] = {}
    merged = alert_environment([mine], environ=env)[RULES_ENV].split(",")
    assert merged == [str(starter_rules()), str(mine.resolve())]
    only = alert_environment([mine], starter=False, environ=env)[RULES_ENV].split(",")
    assert only == [str(mine.resolve())]
    # added to what the environment configures, once
    env = {RULES_ENV: f"{starter_rules()},{mine}"}
    assert alert_environment([mine], environ=env)[RULES_ENV].split(",") == merged
    assert alert_environment([], environ={}) == {}  # no option: nothing changes
    n_starter = check_rules([starter_rules()])
    assert check_rules(merged) == n_starter + 2


def test_webhooks_are_added_and_checked() -> None:
    env = {WEBHOOKS_ENV: "http://am:9093/api/v2/alerts"}
    out = alert_environment(webhooks=["https://hooks.example/x", "http://am:9093/api/v2/alerts"],
                            environ=env)
    assert out == {WEBHOOKS_ENV: "http://am:9093/api/v2/alerts,https://hooks.example/x"}
    for bad in ("hooks.example/x", "ftp://h/x", "http://a/x,http://b/y"):
        with pytest.raises(BadValue, match="--webhook"):
            alert_environment(webhooks=[bad], environ={})


def test_bad_rule_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadValue, match="no such file or folder"):
        alert_environment([tmp_path / "absent"], environ={})
    with pytest.raises(BadValue, match="leaves no rules"):
        alert_environment([], starter=False, environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("groups:\n- name: x\n  rules:\n  - alert: Y\n    kind: threshold\n")
    with pytest.raises(DataError, match=r"broken\.yaml:\d+:\d+.*urbanbrain rules check"):
        check_rules([broken])
