"""The production security model, on the real servers: each account can do its job and
nothing more, and the writer works without admin rights.

Why this file exists: compose gave the stream workers a least-privileged InfluxDB user,
but the writer ran an admin-only ``CREATE DATABASE`` before its first write and then
retried the 403 forever, so the production stack stored nothing. The tests ran with
authentication off and could not see it. Now every server in the tests runs with the
production users, passwords and ACL (urbanbrain/localstack.py), and this file pins the
boundaries down.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import role_settings
from harness import Component

from urbanbrain.influx import InfluxSetupError, InfluxWriter
from urbanbrain.localstack import LocalStack

pytestmark = pytest.mark.servers

DEVICE = "tl-0007"
DEVICE_PASSWORD = secrets.token_urlsafe(12)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory):
    """mosquitto + InfluxDB with production accounts, plus one device account."""
    # a device account in the password file, as deploy/mosquitto/devices.passwd adds them;
    # the production ACL's `pattern` lines confine it to its own topic
    s = LocalStack(tmp_path_factory.mktemp("secured"),
                   extra_mqtt_accounts={DEVICE: DEVICE_PASSWORD}).start(kafka=False)
    yield s
    s.stop()


def _influx(stack: LocalStack, path: str, params: dict[str, str], account: str,
            body: bytes | None = None) -> tuple[int, str]:
    user, pw = stack.influx_login(account)
    assert stack.influx is not None
    req = urllib.request.Request(
        f"http://127.0.0.1:{stack.influx.port}{path}?{urllib.parse.urlencode(params)}",
        data=body if body is not None else None, method="POST" if body is not None else "GET")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_influx_reader_reads_but_cannot_write(secured: LocalStack) -> None:
    db = secured.influx_db
    status, _ = _influx(secured, "/write", {"db": db}, "writer", b"probe v=1")
    assert status == 204
    status, text = _influx(secured, "/write", {"db": db}, "reader", b"probe v=2")
    assert status == 403 and "not authorized to write" in text
    status, text = _influx(secured, "/query", {"db": db, "q": "SELECT v FROM probe"}, "reader")
    assert status == 200 and '"values":[[' in text


def test_old_writer_path_is_refused_and_the_new_one_needs_no_admin(secured: LocalStack) -> None:
    """The 403 of the issue, reproduced: the writer may not CREATE DATABASE, even one that
    exists. The writer's start check finds the database with SHOW DATABASES instead."""
    db = secured.influx_db
    status, text = _influx(secured, "/query", {"q": f'CREATE DATABASE "{db}"'}, "writer",
                           body=b"")
    assert status == 403 and "requires admin privilege" in text

    async def write() -> tuple[str, int]:
        settings = role_settings(secured, "streams")
        async with InfluxWriter(settings) as w:
            version = await w.check()
            refused = await w.write([f"probe,run=new v=3 {int(time.time() * 1000)}"])
            assert refused == []
            return version, w.stats.points

    version, points = asyncio.run(write())
    assert version.startswith("1.") and points == 1


def test_missing_database_is_one_clear_error_not_a_retry(secured: LocalStack) -> None:
    async def check() -> None:
        settings = role_settings(secured, "streams", influx_db="nowhere")
        async with InfluxWriter(settings) as w:
            await asyncio.wait_for(w.check(), 10)

    with pytest.raises(InfluxSetupError, match="'nowhere' does not exist and user 'urbanbrain' "
                                               "may not create it"):
        asyncio.run(check())


def test_worker_refuses_to_start_with_one_line(secured: LocalStack, tmp_path: Path) -> None:
    """A missing database or a wrong password: exit 78 (EX_CONFIG) and one line saying what
    to fix; no traceback, no endless retry."""
    env = {**secured.env(), "URBANBRAIN_INFLUX_DB": "nowhere",
           "URBANBRAIN_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    worker = Component("streams", ["streams", "worker"], env, tmp_path / "w.log").start()
    assert worker.proc is not None
    assert worker.proc.wait(60) == 78
    out = worker.log()
    assert "database 'nowhere' does not exist" in out and "Traceback" not in out
    env = {**env, "URBANBRAIN_INFLUX_DB": secured.influx_db,
           "UB_ROLE__ingest__URBANBRAIN_INFLUX_PASSWORD": "wrong"}
    ingest = Component("ingest", ["ingest"], env, tmp_path / "i.log").start()
    assert ingest.proc is not None
    assert ingest.proc.wait(60) == 78
    out = ingest.log()
    assert "refused the login of urbanbrain" in out and "Traceback" not in out


# ---------------------------------------------------------------------------- MQTT

def _client(stack: LocalStack, user: str, password: str) -> mqtt.Client:
    assert stack.mqtt is not None
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-{secrets.token_hex(3)}")
    c.username_pw_set(user, password)
    c.connect("127.0.0.1", stack.mqtt.port)
    c.loop_start()
    return c


def _delivered(stack: LocalStack, sub_login: tuple[str, str], sub_topic: str,
               pub_login: tuple[str, str], pub_topic: str) -> bool:
    """Whether a QoS 1 message published as ``pub_login`` reaches ``sub_login``'s
    subscription (mosquitto acks a denied publish and drops it: only delivery tells)."""
    got = threading.Event()
    subscribed = threading.Event()
    sub = _client(stack, *sub_login)
    sub.on_message = lambda c, u, m: got.set()
    sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    sub.subscribe(sub_topic, qos=1)
    assert subscribed.wait(5)
    pub = _client(stack, *pub_login)
    try:
        pub.publish(pub_topic, b'{"metrics": {}}', qos=1).wait_for_publish(5)
        return got.wait(1.5)
    finally:
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()


def test_ingest_reads_readings_but_cannot_publish_alerts(secured: LocalStack) -> None:
    ingest, console, sim = (secured.mqtt_login(r) for r in ("ingest", "console", "simulator"))
    assert _delivered(secured, ingest, "city/#", sim, "city/d1/traffic/loop/tl-1")
    assert _delivered(secured, console, "city/alerts/#", secured.mqtt_login("alerts"),
                      "city/alerts/d1/warning/Test")
    assert not _delivered(secured, console, "city/alerts/#", ingest, "city/alerts/d1/warning/X")
    assert not _delivered(secured, console, "city/alerts/#", sim, "city/alerts/d1/warning/Y")


def test_device_publishes_only_its_own_topic_and_cannot_read_the_city(
        secured: LocalStack) -> None:
    ingest = secured.mqtt_login("ingest")
    device = (DEVICE, DEVICE_PASSWORD)
    assert _delivered(secured, ingest, "city/#", device, f"city/d1/traffic/loop/{DEVICE}")
    assert not _delivered(secured, ingest, "city/#", device, "city/d1/traffic/loop/tl-9999")
    # a device subscribing to the whole city gets nothing: the ACL grants it no read
    assert not _delivered(secured, device, "city/#", secured.mqtt_login("simulator"),
                          "city/d1/traffic/loop/tl-1")


def test_anonymous_and_wrong_passwords_are_refused(secured: LocalStack) -> None:
    assert secured.mqtt is not None
    for user, pw in ((None, None), ("urbanbrain-ingest", "wrong")):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if user:
            c.username_pw_set(user, pw)
        codes: list[object] = []
        c.on_connect = lambda cl, u, f, rc, p: codes.append(rc)
        c.connect("127.0.0.1", secured.mqtt.port)
        deadline = time.monotonic() + 5
        while not codes and time.monotonic() < deadline:
            c.loop(0.1)
        assert codes and codes[0].is_failure, (user, codes)
        c.disconnect()
