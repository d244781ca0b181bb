"""Retention policies on the real InfluxDB (urbanbrain/retention.py): `urbanbrain influx init`
as admin creates them and is idempotent; the writer (no admin) cannot, and its start check
names what is missing; points go to the policy they are written to, and a point older than
its policy's duration is refused as InfluxDB refuses it (a dead letter, never a retry loop).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from harness import Component

from urbanbrain.components import role_env
from urbanbrain.influx import InfluxSetupError, InfluxWriter
from urbanbrain.localstack import INFLUX_READER_USER, INFLUX_WRITER_USER, LocalStack
from urbanbrain.retention import (
    POLICY_NAMES,
    RAW,
    WINDOWS,
    Existing,
    Policy,
    check,
    parse_show,
    plan,
    route,
)
from urbanbrain.settings import Settings

pytestmark = pytest.mark.servers
DAY_S = 86400


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "urbanbrain.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def bare_database(stack: LocalStack, db: str) -> None:
    """A database as the influxdb image's first start leaves it: no policies of ours."""
    stack.influx_admin.query(f'CREATE DATABASE "{db}"')
    stack.influx_admin.query(f'GRANT ALL ON "{db}" TO "{INFLUX_WRITER_USER}"')
    stack.influx_admin.query(f'GRANT READ ON "{db}" TO "{INFLUX_READER_USER}"')


def shown(stack: LocalStack, db: str) -> dict[str, Existing]:
    body = stack.influx_admin.query(f'SHOW RETENTION POLICIES ON "{db}"')
    return parse_show(body["results"])


def env_for(stack: LocalStack, db: str, role: str = "streams", **extra: str) -> dict[str, str]:
    env = role_env({**os.environ, **stack.env()}, role)
    env.update({"URBANBRAIN_INFLUX_DB": db, **extra})
    return env


def writer_settings(stack: LocalStack, db: str) -> Settings:
    user, pw = stack.influx_login("writer")
    assert stack.influx is not None
    return Settings(influx_url=f"http://127.0.0.1:{stack.influx.port}", influx_db=db,
                    influx_username=user, influx_password=pw)


def test_plan_creates_alters_and_then_has_nothing_to_do():
    wanted = [Policy("raw", "30d", default=True), Policy("longterm", "INF")]
    assert plan("db", {}, wanted) == [
        'CREATE RETENTION POLICY "raw" ON "db" DURATION 30d REPLICATION 1 DEFAULT',
        'CREATE RETENTION POLICY "longterm" ON "db" DURATION INF REPLICATION 1']
    have = {"raw": Existing("raw", 7 * DAY_S, False), "longterm": Existing("longterm", 0, False)}
    assert plan("db", have, wanted) == ['ALTER RETENTION POLICY "raw" ON "db" DURATION 30d DEFAULT']
    have["raw"] = Existing("raw", 30 * DAY_S, True)
    assert plan("db", have, wanted) == []
    assert route(["traffic,sensor=a v=1 1", r"agg_sensor_1m,sensor=a\ b v=1 1",
                  "pipeline v=1 1", "sensors,x=1 lat=1 1"]) == {
        "raw": ["traffic,sensor=a v=1 1"], "windows": [r"agg_sensor_1m,sensor=a\ b v=1 1"],
        "pipeline": ["pipeline v=1 1"], "longterm": ["sensors,x=1 lat=1 1"]}
    with pytest.raises(ValueError):
        Settings(influx_raw_retention="30m")  # InfluxDB's minimum is 1 h


def test_init_creates_the_policies_and_is_idempotent(stack: LocalStack, run_id: str):
    db = f"ret_{run_id}"
    admin, admin_pw = stack.influx_login("admin")
    env = env_for(stack, db, URBANBRAIN_INFLUX_ADMIN_USERNAME=admin,
                  URBANBRAIN_INFLUX_ADMIN_PASSWORD=admin_pw)
    first = cli(env, "influx", "init")
    assert first.returncode == 0, first.stderr
    assert f"created database {db}" in first.stderr
    pols = shown(stack, db)
    assert set(POLICY_NAMES) <= set(pols)
    assert pols["raw"].seconds == 30 * DAY_S and pols["raw"].default
    assert pols["windows"].seconds == 395 * DAY_S and pols["longterm"].seconds == 0
    assert [p.name for p in pols.values() if p.default] == ["raw"]
    second = cli(env, "influx", "init")
    assert second.returncode == 0 and "(unchanged)" in second.stderr, second.stderr
    assert "CREATE" not in second.stderr and shown(stack, db) == pols
    # a tier made shorter in the settings is altered, nothing else
    third = cli({**env, "URBANBRAIN_INFLUX_RAW_RETENTION": "7d"}, "influx", "init")
    assert third.returncode == 0, third.stderr
    assert f'ALTER RETENTION POLICY "raw" ON "{db}" DURATION 7d' in third.stderr
    after = shown(stack, db)
    assert after["raw"].seconds == 7 * DAY_S and after["raw"].default
    assert {k: v for k, v in after.items() if k != "raw"} == \
        {k: v for k, v in pols.items() if k != "raw"}
    # the dashboards' resolution table
    from urbanbrain.influxql import InfluxQL

    rows = InfluxQL(env["URBANBRAIN_INFLUX_URL"], db, admin, admin_pw).query(
        'SELECT "rp_s", "tier" FROM "longterm"."resolution"')
    assert sorted(r[1] for r in rows[0]["values"]) == ["longterm", "raw", "windows"]


def test_only_an_admin_may_init_and_the_writer_is_told_what_is_missing(
        stack: LocalStack, run_id: str):
    db = f"bare_{run_id}"
    bare_database(stack, db)
    writer, writer_pw = stack.influx_login("writer")
    no_admin = cli(env_for(stack, db), "influx", "init")
    assert no_admin.returncode == 78 and "URBANBRAIN_INFLUX_ADMIN_USERNAME" in no_admin.stderr
    as_writer = cli(env_for(stack, db, URBANBRAIN_INFLUX_ADMIN_USERNAME=writer,
                            URBANBRAIN_INFLUX_ADMIN_PASSWORD=writer_pw), "influx", "init")
    assert as_writer.returncode == 78, as_writer.stderr
    assert as_writer.stderr.strip().count("\n") == 0, as_writer.stderr
    assert "need an InfluxDB admin" in as_writer.stderr
    assert set(shown(stack, db)) == {"autogen"}
    checked = cli(env_for(stack, db), "influx", "check")
    assert checked.returncode == 78
    assert all(p in checked.stderr for p in POLICY_NAMES) and "influx init" in checked.stderr
    with pytest.raises(InfluxSetupError, match="raw, windows"):
        asyncio.run(check(writer_settings(stack, db)))


def test_worker_refuses_to_start_without_its_policies(stack: LocalStack, run_id: str,
                                                      tmp_path):
    db = f"nostart_{run_id}"
    bare_database(stack, db)
    env = {**stack.env(), "URBANBRAIN_INFLUX_DB": db, "URBANBRAIN_DATA_DIR": str(tmp_path),
           "URBANBRAIN_STREAMS_APP_ID": f"nostart-{run_id}"}
    worker = Component("streams", ["streams", "worker"], env, tmp_path / "w.log").start()
    try:
        deadline = time.monotonic() + 60
        while not worker.exited and time.monotonic() < deadline:
            time.sleep(0.2)
        assert worker.exited and worker.proc is not None and worker.proc.returncode == 78
        assert "lacks the retention policies raw, windows" in " ".join(worker.log().split())
        assert "Traceback" not in worker.log()
    finally:
        worker.stop()


def test_points_go_to_their_policy_and_too_old_ones_are_refused(stack: LocalStack,
                                                                  run_id: str):
    db = stack.provision_database(f"land_{run_id}")
    now = int(time.time() * 1000)
    old = now - 31 * DAY_S * 1000  # beyond raw's 30 days, within windows' 13 months

    async def go() -> tuple[list, list, list]:
        async with InfluxWriter(writer_settings(stack, db)) as w:
            await w.check()
            refused_raw = await w.write([f"traffic,sensor=a speed_kmh=1.0 {now}",
                                         f"traffic,sensor=a speed_kmh=2.0 {old}"], rp=RAW)
            refused_win = await w.write([f"agg_sensor_1m,sensor=a speed_kmh_mean=2.0 {old}"],
                                        rp=WINDOWS)
            unknown = []
            try:
                await w.write([f"traffic v=1 {now}"], rp="nope")
            except InfluxSetupError as exc:
                unknown.append(str(exc))
            return refused_raw, refused_win, unknown

    refused_raw, refused_win, unknown = asyncio.run(go())
    # InfluxDB 1.x: "partial write: points beyond retention policy dropped=1" → that line only
    assert refused_raw == [(f"traffic,sensor=a speed_kmh=2.0 {old}",
                            refused_raw[0][1])] and "beyond retention policy" in refused_raw[0][1]
    assert refused_win == []
    assert unknown and "retention policy not found" in unknown[0] and "influx init" in unknown[0]
    from urbanbrain.influxql import InfluxQL

    user, pw = stack.influx_login("reader")
    client = InfluxQL(f"http://127.0.0.1:{stack.influx.port}", db, user, pw)  # type: ignore[union-attr]
    assert client.query('SELECT count("speed_kmh") FROM "raw"."traffic"')[0]["values"][0][1] == 1
    assert client.query('SELECT count("speed_kmh") FROM "traffic"')[0]["values"][0][1] == 1
    assert client.query('SELECT * FROM "windows"."traffic"') == []
    assert len(client.query('SELECT * FROM "windows"."agg_sensor_1m"')[0]["values"]) == 1
