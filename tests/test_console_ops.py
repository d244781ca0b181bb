"""Alert operations: the view's fold, users and roles, the console's access control, the
worker's silence feed and the `alerts`/`silences`/`rules list` commands, on real servers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import orjson
import pytest
from conftest import role_settings

from urbanbrain.components import role_env
from urbanbrain.console.audit import AuditRecord
from urbanbrain.console.auth import ProxyTrust, User, UserStore, hash_password, may
from urbanbrain.console.view import AlertView
from urbanbrain.kafka import ALERTS_TOPIC, AUDIT_TOPIC, SILENCES_TOPIC, ensure_topics
from urbanbrain.rules.alerts import AlertEvent, fingerprint
from urbanbrain.rules.silences import Silence, SilenceStore


def event(labels: dict[str, str], status: str, starts_at: int, at: int) -> AlertEvent:
    return AlertEvent(status, f"g/{labels['alertname']}", labels, {"summary": "s"}, 1.0,
                      starts_at, at if status == "resolved" else None, fingerprint(labels), at=at)


def rec(topic: str, value: object, ts: int, key: bytes | None = None) -> SimpleNamespace:
    raw = value if value is None or isinstance(value, bytes) else orjson.dumps(value)
    return SimpleNamespace(topic=topic, key=key, value=raw, timestamp=ts)


# -- the fold ----------------------------------------------------------------------------
def test_view_joins_actions_to_episodes_whatever_the_read_order():
    labels = {"alertname": "Slow", "severity": "warning", "sensor": "tl-1", "district": "a"}
    fp = fingerprint(labels)
    fire1 = rec(ALERTS_TOPIC, event(labels, "firing", 1000, 1000).to_dict(), 10_000)
    ack = rec(AUDIT_TOPIC, AuditRecord("ack", fp, "olga", "operator", at=11_000,
                                       starts_at=1000).to_dict(), 11_000)
    resolved = rec(ALERTS_TOPIC, event(labels, "resolved", 1000, 5000).to_dict(), 12_000)
    fire2 = rec(ALERTS_TOPIC, event(labels, "firing", 9000, 9000).to_dict(), 13_000)
    for order in ([fire1, ack, resolved, fire2], [ack, fire1, fire2, resolved]):
        view = AlertView()
        view.apply(order[:2])
        (a,) = view.active(20_000)
        assert a["acked_by"] == "olga" and a["starts_at"] == 1000
        view.apply(order[2:])
        (a,) = view.active(20_000)
        # the newer episode stands, even when an older transition is read after it;
        # the acknowledgement belonged to the first episode only
        assert a["starts_at"] == 9000 and a["acked_by"] is None


def test_resolve_by_hand_hides_until_the_next_transition():
    labels = {"alertname": "Dead", "severity": "critical", "sensor": "wm-1", "district": "b"}
    fp = fingerprint(labels)
    view = AlertView()
    view.apply([rec(ALERTS_TOPIC, event(labels, "firing", 1000, 1000).to_dict(), 10_000)])
    view.apply([rec(AUDIT_TOPIC, AuditRecord("resolve", fp, "ada", "admin", "decommissioned",
                                             at=20_000, starts_at=1000).to_dict(), 20_000)])
    assert view.active(30_000) == []
    (r,) = view.recent_resolved(30_000)
    assert r["resolved_by_hand"]["user"] == "ada" and r["status"] == "firing"
    # the engine speaks again (e.g. the notification after a silence): shown again
    view.apply([rec(ALERTS_TOPIC, event(labels, "firing", 1000, 25_000).to_dict(), 25_000)])
    assert [a["fingerprint"] for a in view.active(30_000)] == [fp]


def test_silences_in_the_view_follow_puts_tombstones_and_expiry():
    labels = {"alertname": "Slow", "severity": "warning", "district": "c"}
    view = AlertView()
    view.apply([rec(ALERTS_TOPIC, event(labels, "firing", 1000, 1000).to_dict(), 1000)])
    s = Silence.create(['district="c"'], 0, 10_000, created_by="olga", comment="works")
    view.apply([rec(SILENCES_TOPIC, s.to_dict(), 2000, s.id.encode())])
    (a,) = view.active(5000)
    assert a["silenced_by"] == [s.id]
    assert view.silence_list(5000)[0]["alerts"] == [a["fingerprint"]]
    assert view.active(10_000)[0]["silenced_by"] == []  # ended: no longer muting
    view.apply([rec(SILENCES_TOPIC, None, 3000, s.id.encode()),
                rec(SILENCES_TOPIC, b"not json", 3000, b"x")])
    assert view.silence_list(5000) == [] and view.skipped == 1


# -- users and roles ----------------------------------------------------------------------
def test_users_are_hashed_roles_limit_actions_and_proxies_must_be_trusted(tmp_path):
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$") and "correct" not in h
    store = UserStore([User("olga", "operator", h)])
    assert store.authenticate("olga", "correct horse").role == "operator"
    assert store.authenticate("olga", "wrong") is None
    assert store.authenticate("nobody", "correct horse") is None
    with pytest.raises(ValueError, match="argon2"):
        User("eve", "admin", "plaintext")
    with pytest.raises(ValueError, match="role"):
        User("eve", "root", h)
    store.save(tmp_path / "users.json")
    assert oct((tmp_path / "users.json").stat().st_mode & 0o777) == "0o600"
    env = UserStore.load(None, f"vic:viewer:{h};ada:admin:{h}")
    assert env.get("vic").role == "viewer" and len(env) == 2
    assert UserStore.load(tmp_path / "users.json", None).get("olga").password_hash == h
    assert not may("viewer", "silence") and may("operator", "silence")
    assert not may("operator", "resolve") and may("admin", "resolve")
    trust = ProxyTrust("X-Forwarded-User", "10.0.0.0/8")
    assert trust.user_from("10.1.2.3", {"X-Forwarded-User": "olga"}) == "olga"
    assert trust.user_from("192.168.1.1", {}) is None
    with pytest.raises(PermissionError):
        trust.user_from("192.168.1.1", {"X-Forwarded-User": "olga"})


# -- on the servers -----------------------------------------------------------------------
def cli(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "urbanbrain.cli", *args], capture_output=True,
                       text=True, env=role_env({**os.environ, **env}, "console"), timeout=60)
    if ok:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


async def produce(settings, topic: str, values: list[dict]) -> None:  # noqa: ANN001
    from aiokafka import AIOKafkaProducer

    from urbanbrain.kafka import client_options

    prod = AIOKafkaProducer(**client_options(settings))
    await prod.start()
    try:
        for v in values:
            await prod.send_and_wait(topic, orjson.dumps(v), key=v["fingerprint"].encode())
    finally:
        await prod.stop()


@pytest.mark.servers
def test_silence_feed_keeps_a_worker_store_equal_to_the_topic(stack, run_id):
    from urbanbrain.console.ops import Operations
    from urbanbrain.streams.silence_feed import SilenceFeed

    settings = role_settings(stack, "streams")

    async def main() -> None:
        await ensure_topics(settings)
        async with Operations(settings) as ops:
            before = await ops.silence([f'district="d{run_id}"'], ends_at=int(time.time() * 1000)
                                       + 600_000, user="t", role="cli", comment="before start")
        store = SilenceStore()
        feed = SilenceFeed(settings, store)
        await feed.start()  # returns after catching up: the silence is there before agents run
        try:
            assert store.get(before.id) is not None
            async with Operations(settings) as ops:
                later = await ops.silence([f'sensor="x{run_id}"'], ends_at=int(time.time() * 1000)
                                          + 600_000, user="t", role="cli", comment="later")
                for _ in range(50):
                    if store.get(later.id):
                        break
                    await asyncio.sleep(0.1)
                assert store.get(later.id) is not None
                await ops.expire(later, user="t", role="cli")
                for _ in range(50):
                    if not store.get(later.id).active(int(time.time() * 1000)):
                        break
                    await asyncio.sleep(0.1)
                assert not store.get(later.id).active(int(time.time() * 1000))
        finally:
            await feed.stop()

    asyncio.run(main())


@pytest.mark.servers
def test_alert_commands_against_the_running_system(stack, run_id, tmp_path):
    env = stack.env()
    settings = role_settings(stack, "console")
    district = f"d{run_id}"
    labels = {"alertname": "ConsoleCliSlow", "severity": "critical", "sensor": f"tl-{run_id}",
              "district": district}
    now = int(time.time() * 1000)
    ev = event(labels, "firing", now - 60_000, now - 60_000)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, ALERTS_TOPIC, [ev.to_dict()]))

    def mine() -> list[dict]:
        out = cli(env, "alerts", "list", "--json").stdout.splitlines()
        return [a for a in map(orjson.loads, out) if a["labels"].get("district") == district]

    (a,) = mine()
    assert a["fingerprint"] == ev.fingerprint and a["acked_by"] is None
    cli(env, "alerts", "ack", ev.fingerprint[:10], "--comment", "on it")
    cli(env, "alerts", "assign", ev.fingerprint, "crew-7")
    p = cli(env, "alerts", "silence", f'district="{district}"', "alertname=~\"ConsoleCli.*\"",
            "--for", "10m", "--comment", "road works")
    sid = p.stdout.split()[1].rstrip(":")
    (a,) = mine()
    assert a["acked_by"].endswith("@" + os.uname().nodename) and a["assignee"] == "crew-7"
    assert a["silenced_by"] == [sid]
    sil = [orjson.loads(x) for x in cli(env, "silences", "list", "--json").stdout.splitlines()]
    (mine_s,) = [s for s in sil if s["id"] == sid]
    assert mine_s["state"] == "active" and mine_s["alerts"] == [ev.fingerprint]
    cli(env, "silences", "expire", sid, "--comment", "done")
    (a,) = mine()
    assert a["silenced_by"] == []
    audit = cli(env, "alerts", "audit", ev.fingerprint).stdout
    assert "ack" in audit and "assign" in audit and "on it" in audit

    # rules list: firing count from the alerts topic, cold rules flagged
    rules = tmp_path / "rules.yaml"
    rules.write_text("groups:\n  - name: g\n    rules:\n"
                     "      - {alert: ConsoleCliSlow, kind: threshold, selector: {domain: traffic},"
                     " metric: speed_kmh, condition: {op: '<', value: 20}}\n"
                     "      - {alert: Nowhere, kind: threshold, selector: {district: nowhere},"
                     " metric: speed_kmh, condition: {op: '<', value: 20}}\n")
    registry = tmp_path / "registry.csv"
    registry.write_text(f"sensor_id,domain,kind,district\ntl-{run_id},traffic,loop,{district}\n")
    rows = {r["rule"]: r for r in map(orjson.loads, cli(
        env, "rules", "list", str(rules), "--registry", str(registry), "--json")
        .stdout.splitlines())}
    assert rows["g/ConsoleCliSlow"]["firing"] >= 1 and rows["g/ConsoleCliSlow"]["watches"] == 1
    assert rows["g/Nowhere"]["cold"] == ["no sensors", "never fired"]

    # errors a person can act on: one line, non-zero exit
    for args, why in (((("alerts", "ack", "zzzz-no-such"),), "no alert"),
                      ((("alerts", "silence", 'a="b"', "--for", "3hours", "--comment", "x"),),
                       "--for")):
        p = cli(env, *args[0], ok=False)
        assert p.returncode != 0 and why in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = cli({**env, "URBANBRAIN_KAFKA_BOOTSTRAP": "127.0.0.1:9"}, "alerts", "list", ok=False)
    assert p.returncode != 0 and "unreachable" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
