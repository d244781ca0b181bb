"""Errors a person can act on: each command that fails says so in one line, with an exit code.

Every case runs the real ``urbanbrain`` command line in a subprocess (what a person types),
against nothing listening (a closed port) or against the session's real servers, and
asserts: the exit code, exactly one non-empty line on stderr that starts with ``error:``,
names what failed and what to do, and no traceback anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from urbanbrain.localstack import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """``urbanbrain ARGS`` with only ``env``'s URBANBRAIN_* settings (none of the caller's)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("URBANBRAIN_", "UB_ROLE"))}
    base.update(env or {})
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "urbanbrain.cli", *args], cwd=cwd, env=base,
                       capture_output=True, text=True, timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def one_line_error(r: Result, code: int, *words: str) -> str:
    """The single error line of ``r``, after checking code, shape and content."""
    assert "Traceback" not in r.out + r.err, r.err
    assert r.code == code, f"exit {r.code}, wanted {code}:\n{r.err}"
    lines = r.error_lines
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{r.err}"
    line = lines[0]
    assert line.startswith("error: "), line
    for w in words:
        assert w in line, f"{w!r} not in {line!r}"
    return line


def closed_url(scheme: str) -> str:
    return f"{scheme}127.0.0.1:{free_port()}"  # free: nothing listens there


# --------------------------------------------------------------------------- servers down

def test_dashboards_snapshot_with_influxdb_down_writes_nothing(tmp_path: Path) -> None:
    url = closed_url("http://")
    r = cli("dashboards", "snapshot", "--out", str(tmp_path / "png"), cwd=tmp_path,
            env={"URBANBRAIN_INFLUX_URL": url})
    one_line_error(r, 69, f"InfluxDB at {url} is unreachable", "URBANBRAIN_INFLUX_URL")
    assert not (tmp_path / "png").exists() or not any((tmp_path / "png").iterdir())


def test_registry_points_with_influxdb_down(tmp_path: Path) -> None:
    from urbanbrain.simulators.city import City

    reg = City.generate(1, "tiny").write_registry(tmp_path / "registry.csv")
    r = cli("dashboards", "registry-points", str(reg), cwd=tmp_path,
            env={"URBANBRAIN_INFLUX_URL": closed_url("http://")})
    one_line_error(r, 69, "InfluxDB", "unreachable")


def test_registry_points_without_the_file(tmp_path: Path) -> None:
    r = cli("dashboards", "registry-points", str(tmp_path / "nope.csv"), cwd=tmp_path)
    one_line_error(r, 66, "nope.csv", "no such file")


def test_kafka_init_fails_fast(tmp_path: Path) -> None:
    bootstrap = closed_url("")
    r = cli("kafka", "init", "--wait", "1", cwd=tmp_path,
            env={"URBANBRAIN_KAFKA_BOOTSTRAP": bootstrap})
    one_line_error(r, 69, f"Kafka at {bootstrap} is unreachable", "URBANBRAIN_KAFKA_BOOTSTRAP")
    assert r.seconds < 15, f"took {r.seconds:.1f} s for a 1 s wait"


@pytest.mark.parametrize("args", [["alerts", "list"], ["silences", "list"], ["rules", "list"]])
def test_alert_operations_with_kafka_down(tmp_path: Path, args: list[str]) -> None:
    bootstrap = closed_url("")
    r = cli(*args, cwd=tmp_path, env={"URBANBRAIN_KAFKA_BOOTSTRAP": bootstrap})
    one_line_error(r, 69, f"Kafka at {bootstrap} unreachable", "URBANBRAIN_KAFKA_BOOTSTRAP")


def test_simulate_run_against_a_stopped_broker(tmp_path: Path) -> None:
    url = closed_url("mqtt://")
    r = cli("simulate", "run", "--duration", "5s", "--mqtt-url", url, cwd=tmp_path)
    one_line_error(r, 69, f"MQTT broker at {url} is unreachable", "URBANBRAIN_MQTT_URL")


def test_simulate_replay_of_a_missing_file(tmp_path: Path) -> None:
    r = cli("simulate", "replay", str(tmp_path / "gone.jsonl"), cwd=tmp_path)
    one_line_error(r, 66, "gone.jsonl")


# --------------------------------------------------------------------------- bad values

@pytest.mark.parametrize("args, words", [
    (["dashboards", "snapshot", "--range", "3hours"], ["--range '3hours'", "e.g. 30m, 6h"]),
    (["dashboards", "snapshot", "--interval", "1 min"], ["--interval", "not a duration"]),
    (["dashboards", "snapshot", "--dashboard", "urbanbrain-trafic"],
     ["urbanbrain-trafic", "did you mean urbanbrain-traffic"]),
    (["dashboards", "snapshot", "--dashboard", "traffic", "--var", "distrct=centrum"],
     ["distrct", "known: district, sensor"]),
    (["dashboards", "snapshot", "--var", "district"], ["name=value"]),
    (["simulate", "run", "--duration", "3hours"], ["--duration '3hours'"]),
    (["simulate", "run", "--size", "huge"], ["--size 'huge'", "small"]),
    (["simulate", "run", "--faults", "stuck=x"], ["stuck", "not a number"]),
    (["simulate", "run", "--start", "yesterday"], ["--start", "ISO 8601"]),
    (["simulate", "scenario", "x.parquet", "--name", "nope"], ["nope", "standard-week"]),
    (["up", "--duration", "0"], ["--duration"]),
    (["kafka", "init", "--wait", "soon"], ["--wait"]),
    (["no-such-command"], ["No such command", "urbanbrain --help"]),
])
def test_bad_values_are_one_line(tmp_path: Path, args: list[str], words: list[str]) -> None:
    # nothing listens on the configured servers: a bad value must be refused before any
    # connection is tried, or the error would be about the server instead
    env = {"URBANBRAIN_INFLUX_URL": closed_url("http://"),
           "URBANBRAIN_MQTT_URL": closed_url("mqtt://")}
    one_line_error(cli(*args, cwd=tmp_path, env=env), 2, *words)


def test_a_setting_the_environment_spells_wrong(tmp_path: Path) -> None:
    r = cli("settings", cwd=tmp_path, env={"URBANBRAIN_KAFKA_PARTITIONS": "many"})
    one_line_error(r, 78, "URBANBRAIN_KAFKA_PARTITIONS='many'", "urbanbrain settings")


# --------------------------------------------------------------------------- rules

def test_rules_for_another_city_in_a_backtest(tmp_path: Path) -> None:
    """Rules written for standard-week's districts, replayed on a recording of the city
    `urbanbrain up` simulates: one line that says they are different cities."""
    from urbanbrain.simulators.city import City

    up_city = City.generate(7, "tiny")
    reg = up_city.write_registry(tmp_path / "up-registry.csv")
    rec, truth = tmp_path / "rec.jsonl", tmp_path / "truth.jsonl"
    r = cli("simulate", "record", str(rec), "--seed", "7", "--size", "tiny", "--duration", "10m",
            "--ground-truth", str(truth), cwd=tmp_path)
    assert r.code == 0, r.err
    rules = tmp_path / "docks.yaml"
    rules.write_text("""groups:
  - name: docks
    rules:
      - alert: DocksSlow
        kind: threshold
        selector: {domain: traffic, district: docklands}
        metric: speed_kmh
        condition: {op: '<', value: 10}
""")
    assert "docklands" not in {s.district for s in up_city.sensors}
    r = cli("rules", "backtest", str(rules), "--recording", str(rec), "--ground-truth",
            str(truth), "--registry", str(reg), "--out", str(tmp_path / "bt"), cwd=tmp_path)
    one_line_error(r, 65, "unknown district 'docklands'", "another city than standard-week")


def test_worker_refuses_broken_rules_before_starting(tmp_path: Path) -> None:
    bad = tmp_path / "mine"
    bad.mkdir()
    (bad / "broken.yaml").write_text("groups:\n- name: mine\n  rules:\n  - alert: X\n")
    env = {"URBANBRAIN_KAFKA_BOOTSTRAP": closed_url("")}
    r = cli("streams", "worker", "--rules", str(bad), cwd=tmp_path, env=env)
    one_line_error(r, 65, "broken.yaml", "urbanbrain rules check")
    r = cli("streams", "worker", "--rules", str(tmp_path / "absent"), cwd=tmp_path, env=env)
    one_line_error(r, 2, "--rules", "no such file or folder")
    r = cli("up", "--webhook", "hooks.example/x", cwd=tmp_path, env=env)
    one_line_error(r, 2, "--webhook", "http(s)")
    r = cli("streams", "worker", "--no-starter-rules", cwd=tmp_path, env=env)
    one_line_error(r, 2, "--no-starter-rules leaves no rules")


# --------------------------------------------------------------------------- real server refuses

@pytest.mark.servers
def test_snapshot_with_a_wrong_password(stack, tmp_path: Path) -> None:
    env = {"URBANBRAIN_INFLUX_URL": stack.env()["URBANBRAIN_INFLUX_URL"],
           "URBANBRAIN_INFLUX_DB": stack.influx_db,
           "URBANBRAIN_INFLUX_USERNAME": "grafana", "URBANBRAIN_INFLUX_PASSWORD": "wrong"}
    r = cli("dashboards", "snapshot", "--out", str(tmp_path / "png"), cwd=tmp_path, env=env)
    one_line_error(r, 78, "refused user 'grafana'", "URBANBRAIN_INFLUX_PASSWORD")
    assert not (tmp_path / "png").exists()


@pytest.mark.servers
def test_snapshot_of_an_empty_database(stack, tmp_path: Path) -> None:
    db = stack.provision_database("empty_" + os.urandom(3).hex())
    user, pw = stack.influx_login("reader")
    env = {"URBANBRAIN_INFLUX_URL": stack.env()["URBANBRAIN_INFLUX_URL"],
           "URBANBRAIN_INFLUX_DB": db, "URBANBRAIN_INFLUX_USERNAME": user,
           "URBANBRAIN_INFLUX_PASSWORD": pw}
    r = cli("dashboards", "snapshot", "--dashboard", "traffic", "--out", str(tmp_path / "png"),
            cwd=tmp_path, env=env)
    one_line_error(r, 65, f"database '{db}'", "holds no data yet", "urbanbrain up --keep")
    assert not (tmp_path / "png").exists()


# --------------------------------------------------------------------------- the one handler

def test_an_unexpected_error_is_one_line_that_says_it_is_a_bug(monkeypatch, capsys) -> None:
    """A bug (no server can show one: a function made to raise) is one line with the way to
    see its traceback; URBANBRAIN_DEBUG=1 lets the traceback through."""
    from urbanbrain import cli as cli_mod
    from urbanbrain.settings_report import report  # noqa: F401 - imported by the command

    def boom(**_kw: object):
        raise RuntimeError("the frobnicator\nexploded")

    monkeypatch.setattr("urbanbrain.settings_report.report", boom)
    with pytest.raises(SystemExit) as ex:
        cli_mod.app(["settings"], standalone_mode=True)
    assert ex.value.code == 70
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unexpected RuntimeError: the frobnicator" in lines[0]
    assert "URBANBRAIN_DEBUG=1" in lines[0] and "Traceback" not in err
    monkeypatch.setenv("URBANBRAIN_DEBUG", "1")
    with pytest.raises(RuntimeError, match="frobnicator"):
        cli_mod.app(["settings"], standalone_mode=False)
