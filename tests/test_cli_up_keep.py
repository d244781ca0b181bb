"""``urbanbrain up --keep --rules ... --webhook ...`` and ``urbanbrain down``, for real.

One short ``up`` on its own data folder: the servers it leaves running answer afterwards
(InfluxDB holds the run's points, readable with the reader's settings file it prints), the
workers loaded the starter rules *and* ours, a second ``up`` on the same folder refuses in
one line, and ``down`` stops exactly those servers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from urbanbrain import kept
from urbanbrain.influxql import InfluxQL
from urbanbrain.rules.deploy import check_rules, starter_rules

pytestmark = [pytest.mark.servers, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "rules" / "examples"


def urbanbrain(*args: str, data: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("URBANBRAIN_", "UB_ROLE"))}
    env["URBANBRAIN_DATA_DIR"] = str(data)
    return subprocess.run([sys.executable, "-m", "urbanbrain.cli", *args], cwd=data.parent,
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_up_keep_then_down(tmp_path: Path) -> None:
    data = tmp_path / "var"
    up = urbanbrain("up", "--duration", "10", "--size", "tiny", "--rate", "1000", "--keep",
                    "--rules", str(EXAMPLES), "--webhook", "http://127.0.0.1:9/hook", data=data)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "Traceback" not in up.stdout + up.stderr
        out = up.stdout
        assert "servers kept running" in out and "urbanbrain down" in out
        servers = kept.load(data)
        assert sorted(s.name for s in servers) == ["influxd", "mosquitto", "tansu"]
        assert all(s.running for s in servers)
        # the reader's settings file it points at reads what the run stored
        env = dict(line.split("=", 1) for line in
                   (data / "stack" / kept.READER_ENV).read_text().splitlines())
        assert env["URBANBRAIN_INFLUX_USERNAME"] == "grafana"
        assert oct((data / "stack" / kept.READER_ENV).stat().st_mode & 0o777) == "0o600"
        client = InfluxQL(env["URBANBRAIN_INFLUX_URL"], env["URBANBRAIN_INFLUX_DB"],
                          env["URBANBRAIN_INFLUX_USERNAME"], env["URBANBRAIN_INFLUX_PASSWORD"])
        rows = client.query('SELECT count("speed_kmh") FROM "traffic"')
        assert rows and rows[0]["values"][0][1] > 0
        assert "PASSWORD" not in json.dumps(json.loads(
            (data / "stack" / kept.KEPT_FILE).read_text()))
        # the worker loaded the starter rules and ours, and was given our webhook
        log = (data / "logs" / "streams-0.log").read_text()
        n = check_rules([starter_rules(), EXAMPLES])
        assert f"alert rules: {n} from {starter_rules()}, {EXAMPLES}" in log
        assert "alert webhooks: http://127.0.0.1:9/hook" in log
        # a second run on the same folder would fight the kept servers: one line instead
        again = urbanbrain("up", "--duration", "5", data=data, timeout=60)
        lines = [ln for ln in again.stderr.splitlines() if ln.strip()]
        assert again.returncode == 1 and len(lines) == 1, again.stderr
        assert "urbanbrain down" in lines[0] and "Traceback" not in again.stderr
    finally:
        down = urbanbrain("down", data=data, timeout=60)
    assert down.returncode == 0 and "stopped" in down.stderr, down.stderr
    deadline = time.monotonic() + 10
    while any(s.running for s in servers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(s.running for s in servers)
    assert kept.load(data) == []
    assert "nothing kept running" in urbanbrain("down", data=data, timeout=60).stderr
