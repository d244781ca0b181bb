"""The operations console in a real browser against a live pipeline.

Debian's chromium, driven by playwright, talks to `urbanbrain console`; real mosquitto,
tansu and influxd; ingest and a streams worker as subprocesses; readings published over
MQTT. Through the page an operator sees an alert appear, acknowledges it and silences it;
the test then proves the silence reached the alert engine (the alert flaps while silenced:
its transitions reach Kafka marked silenced, and neither MQTT nor the webhook hears of
them; after the silence ends the still-firing alert is notified again), reloads the page
and finds the audit trail, and checks that the server refuses a viewer's silence.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from conftest import component_env
from harness import Component, Publisher, read_topic, wait_until
from test_alerting_e2e import Hook

from urbanbrain.components import role_env
from urbanbrain.localstack import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SILENCE_S = 25

RULES = """
groups:
  - name: console
    rules:
      - alert: SlowTraffic
        kind: threshold
        selector: {{domain: traffic, sensors: [{sensor}]}}
        metric: speed_kmh
        condition: {{op: '<', value: 20, clear: 30}}
        for: 0s
        labels: {{severity: critical}}
        annotations: {{summary: 'Slow traffic {{{{ $value }}}} km/h at {{{{ $labels.sensor }}}}'}}
"""

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (make setup)")


def records(bootstrap: str, topic: str) -> list[dict]:
    """A topic's JSON records, read in a thread: playwright's sync API owns this thread's
    event loop, so ``asyncio.run`` cannot run here."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        pairs = ex.submit(read_topic, bootstrap, topic).result()
    return [orjson.loads(v) for _, v in pairs if v is not None]


def add_user(env: dict[str, str], name: str, role: str, password: str) -> None:
    subprocess.run([sys.executable, "-m", "urbanbrain.cli", "console", "user", "add", name,
                    "--role", role, "--password-stdin"], input=password + "\n", text=True,
                   env=role_env({**os.environ, **env}, "console"), check=True,
                   capture_output=True)


def login(page, base: str, user: str, password: str) -> None:  # noqa: ANN001
    page.goto(base + "/")
    page.fill("#login-user", user)
    page.fill("#login-password", password)
    page.click("#login-submit")
    page.wait_for_selector("#live.on", timeout=20_000)


@pytest.mark.servers
@pytest.mark.slow
def test_console_operates_alerts_in_a_browser(private_stack, run_id, components, tmp_path):
    from playwright.sync_api import sync_playwright

    stack = private_stack
    sensor, district = f"tl-{run_id}", f"d{run_id}"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(sensor=sensor))
    registry = tmp_path / "registry.csv"
    registry.write_text("sensor_id,domain,kind,district,lat,lon\n" + "".join(
        f"{s},traffic,loop,{district},{45.76 + i * 0.003:.4f},{4.84 + (i % 3) * 0.004:.4f}\n"
        for i, s in enumerate([sensor, f"tl-{run_id}-b", f"tl-{run_id}-c", f"tl-{run_id}-d"])))
    hook = Hook()
    port = free_port()
    env = component_env(stack, run_id, URBANBRAIN_ALERT_RULES_PATH=str(rules),
                        URBANBRAIN_ALERT_WEBHOOK_URLS=hook.url,
                        URBANBRAIN_ALERT_RELOAD_INTERVAL_S="1",
                        URBANBRAIN_REGISTRY_PATH=str(registry),
                        URBANBRAIN_DATA_DIR=str(tmp_path / "var"),
                        URBANBRAIN_CONSOLE_USERS_FILE=str(tmp_path / "users.json"),
                        URBANBRAIN_CONSOLE_PORT=str(port),
                        URBANBRAIN_CONSOLE_KPI_INTERVAL_S="2")
    add_user(env, "olga", "operator", "olga-secret-1")
    add_user(env, "vic", "viewer", "vic-secret-12")
    bootstrap = env["URBANBRAIN_KAFKA_BOOTSTRAP"]
    ingest = Component("ingest", ["ingest"], env, tmp_path / "ingest.log")
    worker = Component("streams", ["streams", "worker"], env, tmp_path / "streams.log")
    console = Component("console", ["console"], env, tmp_path / "console.log")
    components += [ingest.start(), worker.start(), console.start()]

    notified: list[dict] = []  # MQTT notifications of our district
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.username_pw_set(*stack.mqtt_login("console"))
    sub.on_message = lambda c, u, m: notified.append(orjson.loads(m.payload))
    sub.connect("127.0.0.1", stack.mqtt.port)
    sub.subscribe(f"city/alerts/{district}/#", qos=1)
    sub.loop_start()
    pub = Publisher(stack.mqtt.port, auth=stack.mqtt_login("simulator"))
    topic = f"city/{district}/traffic/loop/{sensor}"

    def send(speed: float) -> None:  # event time = now: silences are wall-clock times
        pub.publish(topic, {"ts": int(time.time() * 1000), "metrics": {"speed_kmh": speed}})
        pub.flush()

    def engine_events() -> list[dict]:
        return [r for r in records(bootstrap, "alerts") if r["labels"].get("sensor") == sensor]

    def hooked() -> list[tuple[str, bool]]:
        return [(a["status"], a["labels"]["sensor"]) for b in list(hook.bodies)
                for a in b["alerts"] if a["labels"].get("sensor") == sensor]

    keep_sending = threading.Event()
    speed = [15.0]

    def feeder() -> None:  # the engine evaluates when readings arrive: keep them coming
        while not keep_sending.is_set():
            send(speed[0])
            time.sleep(0.5)

    base = f"http://127.0.0.1:{port}"
    try:
        ingest.wait_for_log("MQTT connected", timeout=60)
        worker.wait_for_log("Ready", timeout=90)
        worker.wait_for_log("silences: 0 loaded", timeout=30)
        console.wait_for_log("console ready", timeout=60)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 850})
            login(page, base, "olga", "olga-secret-1")
            assert page.locator("#count-firing").inner_text() == "0 firing"

            # 1. An alert appears, pushed live (no reload).
            send(50)
            send(15)
            row = page.locator("#alerts li.alert", has_text="SlowTraffic")
            row.wait_for(timeout=30_000)
            assert sensor in row.inner_text()
            wait_until(lambda: len(notified) == 1 and len(hooked()) == 1, 20,
                       what="the first firing on MQTT and the webhook")
            assert notified[0]["status"] == "firing" and hooked() == [("firing", sensor)]

            # 2. Acknowledge and silence it through the page.
            row.locator("button[data-act=ack]").click()
            page.locator("#alerts .badge.ack", has_text="acknowledged by olga").wait_for()
            row.locator("button[data-act=silence]").click()
            matchers = page.locator("#silence-matchers").input_value()
            assert 'alertname="SlowTraffic"' in matchers and f'sensor="{sensor}"' in matchers
            page.select_option("#silence-duration", "custom")
            page.fill("#silence-seconds", str(SILENCE_S))
            page.fill("#silence-comment", "crew on site, sensor being recalibrated")
            page.click("#silence-submit")
            page.locator("#alerts .badge.sil").wait_for(timeout=10_000)
            silences = records(bootstrap, "alerts.silences")
            assert len(silences) == 1 and silences[0]["created_by"] == "olga"
            ends_at = silences[0]["ends_at"]
            worker.wait_for_log("silences: 1 record(s) applied", timeout=15)

            # 3. The engine has it: the alert flaps while silenced, nobody is notified.
            before = len(engine_events())
            speed[0] = 35.0
            threading.Thread(target=feeder, daemon=True).start()
            wait_until(lambda: [e["status"] for e in engine_events()[before:]] == ["resolved"],
                       30, what="the silenced resolution")
            speed[0] = 15.0
            wait_until(lambda: len(engine_events()) >= before + 2, 30, what="the re-fire")
            flapped = engine_events()[before:]
            assert [e["status"] for e in flapped] == ["resolved", "firing"]
            assert all(e["silenced"] and e["silenced_by"] == [silences[0]["id"]]
                       for e in flapped), flapped
            assert time.time() * 1000 < ends_at - 3000, "silence ended too early for the check"
            time.sleep(2.0)  # anything sent would have arrived by now
            assert len(notified) == 1 and len(hooked()) == 1, (notified, hooked())

            # 4. After the silence ends, the still-firing alert is notified again.
            wait_until(lambda: time.time() * 1000 > ends_at, SILENCE_S + 5, what="silence end")
            wait_until(lambda: len(notified) == 2 and len(hooked()) == 2, 30,
                       what="the notification after the silence")
            assert notified[1]["status"] == "firing" and hooked()[1] == ("firing", sensor)
            last = engine_events()[-1]
            assert last["status"] == "firing" and not last["silenced"]
            keep_sending.set()

            # 5. Reload: the audit trail is there, with who and why.
            page.reload()
            page.wait_for_selector("#live.on", timeout=20_000)
            page.click("#tab-audit")
            audit = page.locator("#audit")
            audit.locator("li[data-action=ack]").wait_for(timeout=10_000)
            text = audit.inner_text()
            assert "olga" in text and "operator" in text
            assert "crew on site, sensor being recalibrated" in text
            assert audit.locator("li[data-action=silence]").count() == 1
            page.screenshot(path=str(tmp_path / "console-operator.png"))

            # 6. A viewer sees the alert but may not silence it: hidden, and refused.
            viewer = browser.new_context(viewport={"width": 1400, "height": 850}).new_page()
            login(viewer, base, "vic", "vic-secret-12")
            vrow = viewer.locator("#alerts li.alert", has_text="SlowTraffic")
            vrow.wait_for(timeout=10_000)
            assert vrow.locator("button[data-act=silence]").count() == 0
            assert vrow.locator("button[data-act=ack]").count() == 0
            refused = viewer.evaluate("""async () => {
                const me = await (await fetch('/api/me')).json();
                const post = (url, body) => fetch(url, {method: 'POST', body: JSON.stringify(body),
                    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf}});
                const s = await post('/api/silences', {matchers: ['alertname="SlowTraffic"'],
                                                       duration_s: 600, comment: 'viewer'});
                const fp = document.querySelector('#alerts li.alert').dataset.fp;
                const a = await post('/api/alerts/' + fp + '/ack', {});
                return [me.role, s.status, (await s.json()).error, a.status];
            }""")
            assert refused == ["viewer", 403, "role viewer may not silence", 403]
            # The operator, without the CSRF token, is refused as well.
            no_csrf = page.evaluate("""async () => (await fetch('/api/silences', {method: 'POST',
                body: JSON.stringify({matchers: ['alertname="X"'], duration_s: 60,
                comment: 'x'}), headers: {'Content-Type': 'application/json'}})).status""")
            assert no_csrf == 403
            browser.close()
        silences = records(bootstrap, "alerts.silences")
        assert len(silences) == 1, "a refused request must not have written a silence"
    finally:
        keep_sending.set()
        pub.close()
        sub.loop_stop()
        sub.disconnect()
        hook.close()
