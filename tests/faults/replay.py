"""The fault suite's replay: deterministic readings with scripted alert episodes, a paced
publisher that waits at gates, and the counting that proves "exactly N, nothing lost".

Kept apart from the scenario (test_fault_replay.py) so the scenario reads as a timeline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from harness import Influx, Publisher, read_topic, wait_until

from urbanbrain.kafka import READINGS_TOPICS
from urbanbrain.reading import decode_batch

SENSORS_PER_DOMAIN = 25
STEP_MS = 1_000  # event time between two readings of a sensor

# domain → (kind, metric, normal value); normal values stay far from every threshold
DOMAINS = {
    "traffic": ("loop", "speed_kmh", 50.0),
    "environment": ("air", "pm25_ugm3", 15.0),
    "water": ("main", "pressure_kpa", 400.0),
    "power": ("substation", "frequency_hz", 50.0),
}
JITTER = {"traffic": 1.0, "environment": 0.5, "water": 4.0, "power": 0.005}

# Threshold rules with hysteresis. Selectors cover whole domains, so every sensor is
# evaluated and a false alert would show; HighPM25 has a `for` (pending state across a
# fault); SlowDistrict is district scope (the re-keyed district stage and its own table).
RULES = """
groups:
  - name: faults
    rules:
      - alert: SlowTraffic
        kind: threshold
        selector: {{domain: traffic}}
        metric: speed_kmh
        condition: {{op: '<', value: 20, clear: 30}}
        labels: {{severity: warning}}
      - alert: HighPM25
        kind: threshold
        selector: {{domain: environment}}
        metric: pm25_ugm3
        condition: {{op: '>', value: 150, clear: 100}}
        for: 5s
        labels: {{severity: warning}}
      - alert: LowPressure
        kind: threshold
        selector: {{domain: water}}
        metric: pressure_kpa
        condition: {{op: '<', value: 150, clear: 250}}
        labels: {{severity: critical}}
      - alert: LowFrequency
        kind: threshold
        selector: {{domain: power}}
        metric: frequency_hz
        condition: {{op: '<', value: 49.5, clear: 49.8}}
        labels: {{severity: critical}}
      - alert: SlowDistrict
        kind: threshold
        scope: district
        across: mean
        selector: {{domain: traffic, district: {district}}}
        metric: speed_kmh
        condition: {{op: '<', value: 20, clear: 30}}
        labels: {{severity: critical}}
"""


@dataclass(frozen=True)
class Episode:
    """``sensors`` report ``value`` from fraction ``start`` of the replay up to ``end``."""

    name: str
    alerts: tuple[tuple[str, str], ...]  # expected (alertname, sensor or district)
    sensors: tuple[str, ...]
    value: float
    start: float
    end: float


@dataclass
class Replay:
    prefix: str
    t0: int
    steps: int
    episodes: dict[str, Episode]
    messages: list[tuple[str, bytes]]
    keys: set[tuple[str, int]]
    sensors: dict[str, tuple[str, str]]  # sensor → (domain, district)

    @property
    def n(self) -> int:
        return len(self.messages)

    def step_of(self, fraction: float) -> int:
        return int(fraction * self.steps)

    def ts_of(self, fraction: float) -> int:
        return self.t0 + self.step_of(fraction) * STEP_MS

    def index_of(self, fraction: float) -> int:
        """The message that starts the step at ``fraction`` (message order = step order)."""
        return self.step_of(fraction) * len(self.sensors)

    @property
    def expected_alerts(self) -> dict[tuple[str, str], Episode]:
        return {a: ep for ep in self.episodes.values() for a in ep.alerts}


def build_replay(run_id: str, steps: int, spans: dict[str, tuple[float, float]]) -> Replay:
    """100 sensors × ``steps`` readings, one per MQTT message, in step order; event times
    2 h ago, 1 s apart, so every (sensor, ts) is unique. ``spans``: the fractions of the
    replay each episode covers (keys: traffic, district, environment, water, power)."""
    prefix = f"f{run_id}"
    t0 = (int(time.time() * 1000) - 2 * 3_600_000) // 60_000 * 60_000
    sensors: dict[str, tuple[str, str]] = {}
    for domain in DOMAINS:
        for j in range(SENSORS_PER_DOMAIN):
            sensors[f"{domain[:2]}-{prefix}-{j:02d}"] = (domain, f"{prefix}-d{j % 3}")
    tr = [s for s in sensors if s.startswith("tr-")]
    dz = f"{prefix}-dz"
    for s in tr[1:4]:  # the district of the district-scope rule: three loops
        sensors[s] = ("traffic", dz)
    first = {d: next(s for s, (dd, _) in sensors.items() if dd == d) for d in DOMAINS}
    episodes = {
        "traffic": Episode("traffic", (("SlowTraffic", tr[0]),), (tr[0],), 10.0,
                           *spans["traffic"]),
        "district": Episode("district", (("SlowDistrict", dz),)
                            + tuple(("SlowTraffic", s) for s in tr[1:4]), tuple(tr[1:4]), 8.0,
                            *spans["district"]),
        "environment": Episode("environment", (("HighPM25", first["environment"]),),
                               (first["environment"],), 300.0, *spans["environment"]),
        "water": Episode("water", (("LowPressure", first["water"]),), (first["water"],),
                         100.0, *spans["water"]),
        "power": Episode("power", (("LowFrequency", first["power"]),), (first["power"],),
                         49.0, *spans["power"]),
    }
    special: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for ep in episodes.values():
        for s in ep.sensors:
            special[s].append((int(ep.start * steps), int(ep.end * steps), ep.value))
    messages, keys = [], set()
    for k in range(steps):
        ts = t0 + k * STEP_MS
        for i, (sensor, (domain, district)) in enumerate(sensors.items()):
            kind, metric, normal = DOMAINS[domain]
            value = normal + JITTER[domain] * ((k * 7 + i * 3) % 11 - 5) / 5
            for a, b, v in special.get(sensor, ()):
                if a <= k < b:
                    value = v
            topic = f"city/{district}/{domain}/{kind}/{sensor}"
            messages.append((topic, orjson.dumps({"ts": ts, "metrics": {metric: value}})))
            keys.add((sensor, ts))
    return Replay(prefix, t0, steps, episodes, messages, keys, sensors)


class PacedPublisher(threading.Thread):
    """Publishes the replay at ``rate`` messages/s (QoS 1). Before message ``i`` in
    ``gates`` it waits until that gate is set; time spent waiting is not caught up."""

    def __init__(self, port: int, messages: list[tuple[str, bytes]], rate: float,
                 gates: dict[int, threading.Event], client_id: str,
                 auth: tuple[str, str] | None = None) -> None:
        super().__init__(name="replay", daemon=True)
        self.port, self.messages, self.rate, self.gates = port, messages, rate, gates
        self.client_id = client_id
        self.auth = auth
        self.progress = 0
        self.waiting = False  # held at a gate right now
        self.error: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            pub = Publisher(self.port, client_id=self.client_id, auth=self.auth)
            try:
                self._publish(pub)
            finally:
                pub.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            self.error = exc

    def _publish(self, pub: Publisher) -> None:
        start, paused = time.monotonic(), 0.0
        for i, (topic, payload) in enumerate(self.messages):
            gate = self.gates.get(i)
            if gate is not None and not gate.is_set():
                t = time.monotonic()
                pub.flush(60)  # everything before the gate is at the broker
                self.waiting = True
                while not gate.wait(0.2):
                    if self.stopping.is_set():
                        return
                self.waiting = False
                paused += time.monotonic() - t
            if self.stopping.is_set():
                return
            delay = start + paused + i / self.rate - time.monotonic()
            if delay > 0.005:
                time.sleep(delay)
            pub.publish(topic, payload)
            self.progress = i + 1
            if i % 1000 == 999:
                pub.flush(60)  # bound paho's outgoing queue; mosquitto acks at once

    def wait_progress(self, count: int, timeout: float) -> None:
        def reached() -> bool:
            if self.error is not None:
                raise AssertionError(f"publisher failed: {self.error!r}")
            return self.progress >= count

        wait_until(reached, timeout, interval=0.05, what=f"{count} readings published")


class Timeline:
    """What happened when (seconds since it was made), printed with the result."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.rows: list[str] = []

    def __call__(self, what: str, **facts: object) -> None:
        extra = " ".join(f"{k}={v}" for k, v in facts.items())
        self.rows.append(f"{time.monotonic() - self.t0:7.1f}s  {what} {extra}")

    def __str__(self) -> str:
        return "\n".join(self.rows)


def raw_counter(influx: Influx) -> Callable[[], int]:
    """Stored raw points of the four domains (-1 while InfluxDB does not answer).

    ``count(field)`` counts points, i.e. distinct (series, time): a point written twice
    with the same tags and timestamp is one point, so this is the number of distinct
    readings stored, never more than were sent."""
    def count() -> int:
        try:
            return sum(influx.count(d, metric) for d, (_, metric, _) in DOMAINS.items())
        except Exception:  # noqa: BLE001 - down, or the database does not exist yet
            return -1
    return count


def points_per_sensor(influx: Influx) -> Counter:
    got: Counter = Counter()
    for d, (_, metric, _) in DOMAINS.items():
        for row in influx.rows(f'SELECT count("{metric}") FROM "{d}" GROUP BY sensor'):
            got[row["sensor"]] = int(row["count"])
    return got


def missing_points(influx: Influx, replay: Replay) -> set[tuple[str, int]]:
    """The expected (sensor, ts) that InfluxDB does not hold."""
    have: set[tuple[str, int]] = set()
    for d, (_, metric, _) in DOMAINS.items():
        for row in influx.rows(f'SELECT "{metric}", "sensor" FROM "{d}"'):
            have.add((row["sensor"], int(row["time"])))
    return replay.keys - have


def kafka_readings(bootstrap: str) -> dict[tuple[str, int], list[tuple[str, int, int]]]:
    """(sensor, ts) → every (topic, partition, offset) of readings.* that carries it."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def scan() -> dict[tuple[str, int], list[tuple[str, int, int]]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()  # as harness.read_topic does
            tps = [TopicPartition(t, p) for t in READINGS_TOPICS
                   for p in sorted(cluster.partitions_for_topic(t) or ())]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            out: dict[tuple[str, int], list[tuple[str, int, int]]] = defaultdict(list)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if all([await consumer.position(tp) >= end[tp] for tp in tps]):
                    break
                for tp, recs in (await consumer.getmany(timeout_ms=200)).items():
                    for rec in recs:
                        for r in decode_batch(rec.value):
                            out[(r["sensor_id"], r["ts"])].append(
                                (tp.topic, tp.partition, rec.offset))
            return out
        finally:
            await consumer.stop()

    return asyncio.run(scan())


def committed_offsets(bootstrap: str, group: str, tps: set[tuple[str, int]]
                      ) -> dict[tuple[str, int], int | None]:
    """The consumer group's committed offsets (where a restarted worker would resume)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def fetch() -> dict[tuple[str, int], int | None]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            return {tp: await consumer.committed(TopicPartition(*tp)) for tp in sorted(tps)}
        finally:
            await consumer.stop()

    return asyncio.run(fetch())


def alert_records(bootstrap: str, *, pipeline: bool = False) -> list[dict]:
    """The city's alert records (``pipeline=True``: the pipeline's own ones instead, e.g.
    InfluxWriteRetries during an InfluxDB outage; see rules/pipeline/pipeline.yaml)."""
    recs = [orjson.loads(v) for _, v in read_topic(bootstrap, "alerts", timeout=15)]
    return [r for r in recs if (r["labels"].get("district") == "pipeline") == pipeline]


def alert_key(rec: dict) -> tuple[str, str]:
    labels = rec["labels"]
    return labels["alertname"], labels.get("sensor") or labels.get("district", "")


def transitions(recs: list[dict]) -> Counter:
    """(alert key, status) → how many records say it."""
    return Counter((alert_key(r), r["status"]) for r in recs)
