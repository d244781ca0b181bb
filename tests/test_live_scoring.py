"""Live alerts are the backtested alerts.

The ``ci-day`` scenario (400 sensors, one incident of every kind, 9 scored hours) goes
through the real servers at full speed, as a worker catches up after an outage: 2 hours
of history loaded with ``urbanbrain rules warmup`` into InfluxDB (the workers warm their
rules up from it), then mosquitto → ingest → Kafka → two streams workers, one of them
SIGKILLed and restarted when half of the readings are stored. What comes out of the
``alerts`` topic must be what ``rules backtest`` computes in process from the same data:
the same alerts (rule and instance), each starting within one evaluation step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from urbanbrain.rules import backtest as bt
from urbanbrain.rules.cli import app as rules_app
from urbanbrain.rules.livescore import compare_firings, live_score

pytestmark = [pytest.mark.servers, pytest.mark.slow, pytest.mark.timeout(900)]

RULES = str(Path(bt.__file__).parent / "city")
AQI_RULES = ("AirQualityUnhealthySensitive", "AirQualityUnhealthy", "AirQualityVeryUnhealthy")


def test_ci_day_live_equals_in_process_with_a_worker_killed(tmp_path: Path) -> None:
    df, truth, reg, scored_from = bt.scenario_inputs("ci-day")
    kinds = {i.kind for i in truth if not i.kind.startswith("fault.")}
    assert kinds == {"accident", "congestion", "pollution", "water_burst", "power_outage",
                     "voltage_excursion", "frequency_excursion", "backhaul_loss"}
    assert scored_from - int(df["ts"].min()) >= 2 * 3_600_000  # history for the warm-up
    res = live_score(df, truth, reg, [RULES], workdir=tmp_path / "live",
                     scored_from_ms=scored_from, workers=2, kill_at=0.5, history="warmup",
                     env_overrides={"URBANBRAIN_ALERT_WARMUP_S": str(2 * 3600)})
    c = res.compare
    assert c["equal"], (f"only live: {c['only_live'][:10]}; only in process: "
                        f"{c['only_inproc'][:10]}")
    live = {s.alert: s for s in res.live}
    # the AQI rules fire on the worker's own index samples, live
    for name in AQI_RULES:
        assert live[name].firings > 0 and live[name].recall == 1.0, live[name]
    # no sensor that kept reporting was called silent: every SensorSilent firing is a
    # real gap (a dropout fault, an outage or a backhaul loss of the ground truth)
    silent = live["SensorSilent"]
    assert silent.firings > 0 and silent.false_positives == 0, silent


def test_rules_warmup_command_loads_history_as_raw_points(stack, tmp_path, monkeypatch):
    """`urbanbrain rules warmup` writes exactly the scenario's history before its scored
    start, with the worker's own line encoder, as the writer user."""
    from conftest import role_settings

    from urbanbrain.components import role_env
    from urbanbrain.settings import get_settings
    from urbanbrain.up import count_raw_points
    from urbanbrain.influxql import InfluxQL

    from urbanbrain.retention import KEEP_EVERYTHING

    # the scenario's history is older than the raw policy's 30 days: keep every tier
    db = stack.provision_database(f"warm_{tmp_path.name[-8:]}", retention=KEEP_EVERYTHING)
    for k, v in role_env({**stack.env(), "URBANBRAIN_INFLUX_DB": db}, "streams").items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(rules_app, ["warmup", "--scenario", "ci-day", "--span", "2h"])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    df, _, reg, scored_from = bt.scenario_inputs("ci-day")
    want = bt.wide_readings(df[(df["ts"] >= scored_from - 7_200_000) & (df["ts"] < scored_from)],
                            bt.load_registry_csv(reg))
    reader = role_settings(stack, "reader", influx_db=db)
    client = InfluxQL(reader.influx_url, db, reader.influx_username,
                      reader.influx_password.get_secret_value())
    assert count_raw_points(client) == len(want) and f"{len(want):,} raw points" in r.output


def test_compare_firings_matches_within_a_step_and_lists_the_rest() -> None:
    F = bt.Firing
    live = [F("A", "s1", "s1", "d", 1000, 2000), F("A", "s2", "s2", "d", 5000, 6000),
            F("B", "d", None, "d", 100, 200)]
    inproc = [F("A", "s1", "s1", "d", 1300, 2000), F("A", "s3", "s3", "d", 5000, 6000),
              F("B", "d", None, "d", 100, 200)]
    c = compare_firings(live, inproc, from_ms=0, until_ms=10_000, tolerance_ms=500)
    assert not c["equal"]
    assert c["only_live"] == [("A", "s2", 5000)] and c["only_inproc"] == [("A", "s3", 5000)]
    assert c["shifted"] == [("A", "s1", -300)]
    assert c["per_rule"]["B"] == {"live": 1, "inproc": 1, "matched": 1}
    assert compare_firings(live[:1], inproc[:1], from_ms=0, until_ms=10_000,
                           tolerance_ms=100)["equal"] is False


def test_a_workdir_is_cleared_of_a_previous_run_but_never_of_foreign_files(tmp_path) -> None:
    """A second run in the same workdir met the first run's InfluxDB, whose accounts have
    that run's random passwords (401), and would have scored its data again."""
    from urbanbrain.errors import BadValue
    from urbanbrain.rules.livescore import clear_workdir

    w = tmp_path / "live"
    for f in ("stack/credentials.json", "stack/influxdb/meta/meta.db", "var/x", "logs/a.log",
              "live-alerts.jsonl", "notes.txt"):
        (w / f).parent.mkdir(parents=True, exist_ok=True)
        (w / f).write_text("x")
    clear_workdir(w)
    assert sorted(p.name for p in w.iterdir()) == ["notes.txt"]
    clear_workdir(tmp_path / "new")  # nothing there yet: fine
    (w / "stack" / "influxdb").mkdir(parents=True)  # a run that died while starting
    clear_workdir(w)
    assert not (w / "stack").exists()
    foreign = tmp_path / "home"
    (foreign / "stack").mkdir(parents=True)
    (foreign / "stack" / "photo.jpg").write_text("x")
    with pytest.raises(BadValue, match="not a previous live scoring run"):
        clear_workdir(foreign)
    assert (foreign / "stack" / "photo.jpg").exists()
