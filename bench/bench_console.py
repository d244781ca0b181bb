"""The operations console with 20,000 sensors on the map: page load and update latency.

Real tansu and influxd (local stack), a real ``urbanbrain console`` subprocess, Debian's
chromium driven by playwright. The city is the simulator's ``xl`` city (20,000 sensors)
with its district polygons. Alerts are produced to the ``alerts`` topic in the engine's own
record format (``AlertEvent.to_dict``, keyed by fingerprint), the console's only input for
them, so what is timed is exactly the console's path: Kafka → fold → SSE → DOM and map.

* page load: navigation start → the map drawn and the state rendered (``ub-ready`` mark),
  median of 5 loads, with 300 alerts firing; the ``/api/map`` payload size;
* update latency: an alert's Kafka record timestamp (producer clock) → the page has
  rendered it (browser clock, same machine): singles every 100 ms, then a burst of 1,000.

With ``--screenshots DIR`` it also writes the README's pictures (overview, drill-down).
The KPI tiles and the drill-down's series need roll-ups and readings in InfluxDB: for the
pictures only, a few synthetic ``district_1m``/``city_1m`` points and one sensor's last hour
are written as the writer user (the workers' job in production).

    .venv/bin/python bench/bench_console.py [--sensors xl] [--screenshots docs/img]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


async def produce(bootstrap: str, events: list[dict], spacing_s: float = 0.0) -> list[int]:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await p.start()
    stamps = []
    try:
        for ev in events:
            md = await p.send_and_wait("alerts", orjson.dumps(ev), key=ev["fingerprint"].encode())
            stamps.append(md.timestamp)
            if spacing_s:
                await asyncio.sleep(spacing_s)
    finally:
        await p.stop()
    return stamps


def in_thread(coro_fn, *args):  # noqa: ANN001, ANN201
    """Run an async function in a thread of its own: playwright's sync API owns this
    thread's event loop. Returns the future."""
    from concurrent.futures import ThreadPoolExecutor

    ex = ThreadPoolExecutor(1)
    fut = ex.submit(lambda: asyncio.run(coro_fn(*args)))
    ex.shutdown(wait=False)
    return fut


def alert_events(city, rules, n: int, rng: random.Random) -> list[dict]:  # noqa: ANN001
    from urbanbrain.rules.alerts import AlertEvent, fingerprint

    now = int(time.time() * 1000)
    by_domain: dict[str, list] = {}
    for s in city.sensors:
        by_domain.setdefault(s.domain, []).append(s)
    sensor_rules = [r for r in rules if r.scope == "sensor" and r.selector.domain]
    out = []
    for _ in range(n):
        r = rng.choice(sensor_rules)
        s = rng.choice(by_domain[next(iter(r.selector.domain))])
        labels = {**{k: v for k, v in r.labels.items()}, "alertname": r.alert,
                  "sensor": s.sensor_id, "district": s.district}
        start = now - rng.randint(30, 3600) * 1000
        ev = AlertEvent("firing", r.id, labels,
                        {"summary": f"{r.alert} at {s.sensor_id} ({s.district})"},
                        round(rng.uniform(1, 300), 2), start, None, fingerprint(labels), at=start)
        out.append(ev.to_dict())
    return out


def write_pictures_data(stack, db: str, city, sensor) -> None:  # noqa: ANN001
    """Synthetic roll-ups and one sensor's hour, for the screenshots only."""
    import base64

    user, pw = stack.influx_login("writer")
    now = int(time.time())
    lines = []
    vals = {"traffic": "congestion_index_mean=0.{c},speed_kmh_mean={s},sensors={n}i",
            "environment": "aqi_us_max={a},pm25_ugm3_mean={p},noise_dba_mean=61.2",
            "water": "pressure_kpa_min={w},flow_ls_total=812.5,sensors={n}i",
            "power": "load_mw_total=184.2,frequency_hz_mean=50.01,sensors={n}i"}
    rng = random.Random(1)
    for d in city.district_ids:
        for dom, tpl in vals.items():
            f = tpl.format(c=rng.randint(10, 70), s=rng.randint(18, 55), n=rng.randint(20, 400),
                           a=rng.randint(30, 160), p=round(rng.uniform(5, 40), 1),
                           w=rng.randint(240, 420))
            lines.append(f"district_1m,district={d},domain={dom} {f} {now}")
    for dom, tpl in vals.items():
        lines.append(f"city_1m,domain={dom} " + tpl.format(c=34, s=37, n=5000, a=118, p=17.5,
                                                            w=255) + f" {now}")
    metric = {"water": "pressure_kpa", "traffic": "speed_kmh", "power": "voltage_kv",
              "environment": "pm25_ugm3"}[sensor.domain]
    for i in range(360):
        t = now - 3600 + i * 10
        v = 420 - (180 if i > 300 else 0) + 8 * ((i * 7919) % 13) / 13
        lines.append(f"{sensor.domain},district={sensor.district},kind={sensor.kind},"
                     f"sensor={sensor.sensor_id} {metric}={v:.1f} {t}")
    req = urllib.request.Request(
        f"http://127.0.0.1:{stack.influx.port}/write?db={db}&precision=s",
        data="\n".join(lines).encode(), method="POST",
        headers={"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()})
    urllib.request.urlopen(req, timeout=10).read()


def main() -> None:  # noqa: C901 - a script reads best top to bottom
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", default="xl", help="city size (xl = 20,000 sensors)")
    ap.add_argument("--alerts", type=int, default=300, help="alerts firing at load")
    ap.add_argument("--singles", type=int, default=100)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--screenshots", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "console.json")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT / "tests"))
    from playwright.sync_api import sync_playwright

    from urbanbrain.components import Component
    from urbanbrain.console.auth import User, UserStore, hash_password
    from urbanbrain.kafka import ensure_topics
    from urbanbrain.localstack import LocalStack, free_port
    from urbanbrain.rules import RuleSet
    from urbanbrain.settings import Settings
    from urbanbrain.simulators.city import City

    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    stack = LocalStack(work / "stack").start(mqtt=False)
    console = None
    try:
        env = stack.env()
        asyncio.run(ensure_topics(Settings(kafka_bootstrap=env["URBANBRAIN_KAFKA_BOOTSTRAP"])))
        city = City.generate(7, args.sensors)
        city.write_registry(work / "registry.csv")
        (work / "districts.geojson").write_text(json.dumps(city.districts_geojson()))
        password = "bench-password-1"
        UserStore([User("operator", "admin", hash_password(password))]).save(work / "users.json")
        port = free_port()
        env.update(URBANBRAIN_REGISTRY_PATH=str(work / "registry.csv"),
                   URBANBRAIN_CONSOLE_DISTRICTS_PATH=str(work / "districts.geojson"),
                   URBANBRAIN_CONSOLE_USERS_FILE=str(work / "users.json"),
                   URBANBRAIN_CONSOLE_PORT=str(port), URBANBRAIN_CONSOLE_KPI_INTERVAL_S="2")
        rng = random.Random(42)
        rules = RuleSet.load([str(ROOT / "rules" / "city")]).rules
        initial = alert_events(city, rules, args.alerts, rng)
        bootstrap = env["URBANBRAIN_KAFKA_BOOTSTRAP"]
        asyncio.run(produce(bootstrap, initial))
        if args.screenshots:
            water = next(e for e in initial if e["rule"] == "water/LowWaterPressure") \
                if any(e["rule"] == "water/LowWaterPressure" for e in initial) else initial[0]
            sensor = next(s for s in city.sensors if s.sensor_id == water["labels"]["sensor"])
            write_pictures_data(stack, stack.influx_db, city, sensor)
        console = Component("console", ["console"], env, work / "console.log").start()
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        results: dict[str, object] = {"sensors": len(city.sensors), "alerts_at_load": len(initial),
                                      "districts": len(city.districts)}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(base + "/")
            page.fill("#login-user", "operator")
            page.fill("#login-password", password)
            page.click("#login-submit")
            page.wait_for_function("() => window.ubStats && window.ubStats.ready !== null", timeout=60_000)
            loads, draws, fetches = [], [], []
            for _ in range(5):
                page.reload()
                page.wait_for_function("() => window.ubStats && window.ubStats.ready !== null",
                                       timeout=60_000)
                st = page.evaluate("() => window.ubStats")
                loads.append(st["ready"])
                draws.append(st["mapDrawMs"])
                fetches.append(st["mapFetchMs"])
            assert st["sensors"] == len(city.sensors), st
            size = page.evaluate("""async () => { const r = await fetch('/api/map');
                return (await r.arrayBuffer()).byteLength; }""")
            gz = len(urllib.request.urlopen(urllib.request.Request(
                base + "/api/map", headers={"Accept-Encoding": "gzip",
                                            "Cookie": "; ".join(f"{c['name']}={c['value']}"
                                                                for c in page.context.cookies())}
            )).read())
            results["page_load_ms"] = {"median": statistics.median(loads), "min": min(loads),
                                       "max": max(loads)}
            results["map_draw_ms_median"] = statistics.median(draws)
            results["map_fetch_parse_ms_median"] = statistics.median(fetches)
            results["map_payload_bytes"] = {"json": size, "gzip": gz}

            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                page.wait_for_timeout(2500)
                page.screenshot(path=str(args.screenshots / "console-overview.png"))
                page.fill("#filter", water["labels"]["sensor"])
                row = page.locator("#alerts li.alert", has_text=water["labels"]["sensor"]).first
                row.locator("button[data-act=ack]").click()
                page.wait_for_timeout(800)
                row.locator("button[data-act=details]").click()
                page.wait_for_selector("#drill-rule", timeout=10_000)
                page.wait_for_timeout(1200)
                page.screenshot(path=str(args.screenshots / "console-drilldown.png"))
                page.locator("#drill-close").click()
                row.locator("button[data-act=silence]").click()
                page.fill("#silence-comment", "crew on site, valve being replaced")
                page.wait_for_timeout(300)
                page.screenshot(path=str(args.screenshots / "console-silence.png"))
                page.click("#silence-cancel")
                page.fill("#filter", "")
            # singles: one alert every 100 ms
            page.evaluate("() => { window.ubStats.lags.length = 0; }")
            singles = alert_events(city, rules, args.singles, rng)
            in_thread(produce, bootstrap, singles, 0.1).result()
            want = len({e["fingerprint"] for e in singles})  # a repeated alert is one row
            page.wait_for_function(
                f"() => new Set(window.ubStats.lags.flatMap(l => l.fps)).size >= {want}",
                                   timeout=60_000)
            lags = [x["lag"] for x in page.evaluate("() => window.ubStats.lags")]
            results["update_latency_ms_singles"] = {
                "n": len(singles), "p50": pct(lags, 50), "p95": pct(lags, 95), "max": max(lags),
                "messages": len(lags)}
            # burst: 1,000 alerts at once
            page.evaluate("() => { window.ubStats.lags.length = 0; }")
            burst = alert_events(city, rules, args.burst, rng)
            t0 = time.time()
            in_thread(produce, bootstrap, burst).result()
            produced_s = time.time() - t0
            try:
                page.wait_for_function(
                    "() => new Set(window.ubStats.lags.flatMap(l => l.fps)).size >= "
                    f"{len({e['fingerprint'] for e in burst})}",
                    timeout=60_000)
            except Exception:  # noqa: BLE001 - report what arrived
                print("burst incomplete:", page.evaluate(
                    "() => [window.ubStats.updates, window.ubStats.lags.length, "
                    "window.ubStats.lags.flatMap(l => l.fps).length]"))
            lags = [x["lag"] for x in page.evaluate("() => window.ubStats.lags")]
            results["update_latency_ms_burst"] = {
                "n": len(burst), "producer_s": round(produced_s, 2), "p50": pct(lags, 50),
                "p95": pct(lags, 95), "max": max(lags), "messages": len(lags)}
            results["alerts_firing_at_end"] = page.evaluate(
                "() => document.querySelectorAll('#alerts li.alert').length")
            browser.close()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        print(json.dumps(results, indent=1))
    finally:
        if console is not None:
            console.stop()
        stack.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
