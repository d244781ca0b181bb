"""Alert rules inside the Faust app: readings → rule engine → alerts topic/InfluxDB/MQTT/webhook.

    readings.* ──▶ alert_sensors  (Evaluator scope=sensor, one per source topic-partition,
        │          state: table ``alert-state``, changelog partition = source partition)
        └─ regroup by district ──▶ <app id>-alerts-district-readings (key = district,
                                   partition = murmur2(district))
                                       ──▶ alert_districts (Evaluator scope=district, one per
                                           partition, state: table ``alert-district-state``)
    both ──▶ AlertOutputs: MQTT city/alerts/... · webhooks (handed off) · Kafka ``alerts``
    Kafka ``alerts`` ──▶ store_alerts (AlertStore) ──▶ InfluxDB ``alerts``
    timer ──▶ RuleWatcher.poll(): hot reload (a broken file keeps the old rule set)

Why two stages: a sensor-scope rule needs one sensor's readings, which ingest keeps on one
partition, so the evaluator can live next to its source partition. A district rule (mean
over a district, "all sensors silent", composite over neighbours) needs every sensor of the
district, and those sensors hash to *all* partitions; evaluating district rules per source
partition would see a fraction of the district and fire on partial data (and N workers
would each fire their own copy). So readings are re-keyed by district through an internal
topic, where one partition holds all of a district's readings. Only readings a district
rule could use (by domain and kind, :class:`DistrictInterest`) are forwarded.

State: the evaluator hands out the JSON entries it changed (``take_changes``); they are
written to the table under ``<topic>|<partition>|<key>`` with the source partition as the
changelog partition, so the worker that gets the partition after a rebalance or restart
recovers exactly that state and rebuilds the evaluator from it (``Evaluator.from_state``)
the first time the partition is used in a new consumer generation. Outputs are sent before
the state: a crash in between re-sends a transition (at least once), never loses one.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import faust
import orjson
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing import Annotated

import urbanbrain.rules
from urbanbrain.influx import InfluxWriter
from urbanbrain.kafka import ALERTS_TOPIC, READINGS_TOPICS
from urbanbrain.reading import Partitioner, decode_batch, encode_batch
from urbanbrain.rules import AlertEvent, Evaluator, RuleSet, RuleWatcher, load_registry_csv
from urbanbrain.rules.model import AbsenceCond
from urbanbrain.settings import Settings

from .alerting_outputs import AlertOutputs, AlertStore
from .decoded import DecodedBatches
from .state import TableStore, flush_durably

log = logging.getLogger(__name__)

DEFAULT_RULES_PATH = Path(urbanbrain.rules.__file__).parent / "city"
DISTRICT_TOPIC_SUFFIX = "alerts-district-readings"
DISTRICT_SOURCE = "district"
DISTRICT_RECORD_READINGS = 500  # as ingest's batch_max: records stay far below 1 MB


class AlertSettings(BaseSettings):
    """``URBANBRAIN_ALERT_*``: where the rules are, where webhooks go, how often to reload."""

    model_config = SettingsConfigDict(env_prefix="URBANBRAIN_ALERT_", extra="ignore",
                                      frozen=True)

    rules_path: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [DEFAULT_RULES_PATH],
        description="rule files and folders, merged (comma- or colon-separated); default: "
        "the starter rules (`urbanbrain up/streams worker --rules` add to them)")
    webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated Alertmanager-compatible receivers"
    )
    reload_interval_s: float = Field(5.0, gt=0, description="rule file poll interval")
    eval_step_s: float = Field(
        5.0, ge=0, description="a backlog batch is evaluated at least every this much event "
        "time (live batches span less and are one evaluation); 0: once per batch",
    )
    state_checkpoint_s: float = Field(
        10.0, ge=0, description="write per-sensor rule state at most this often (0: every batch)"
    )
    external_url: str = Field("http://localhost:9093", description="externalURL in webhooks")

    @field_validator("rules_path", mode="before")
    @classmethod
    def _split_paths(cls, v: Any) -> Any:
        if isinstance(v, (str, Path)):
            return [p.strip() for p in str(v).replace(os.pathsep, ",").split(",") if p.strip()]
        return v

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [u.strip() for u in v.split(",") if u.strip()]
        return v


def eval_time(ev: Evaluator) -> int | None:
    """The evaluator's latest event time: its watermark, or a later tick time (absence
    rules tick past the last reading). Used as "now" for ``replace_ruleset``."""
    ticks = list(getattr(ev, "_group_last", {}).values())  # no public accessor yet
    times = [t for t in (ev.watermark, *ticks) if t is not None]
    return max(times) if times else None


def _domain_of(topic: str) -> str | None:
    return topic.split(".", 1)[1] if topic.startswith("readings.") else None


class PartitionEvaluators:
    """One :class:`Evaluator` per (source, partition), persisted to a key/value store.

    ``source`` is a readings topic (sensor scope) or ``"district"``. Each evaluator sees
    only the registry entries that belong to its partition, so absence rules ("registered
    sensors that never reported") fire once, on the partition that owns the sensor or
    district, not on every partition.
    """

    def __init__(self, scope: str, store: Any, registry: Mapping[str, Mapping[str, Any]],
                 ruleset: Callable[[], RuleSet], partitions: int,
                 checkpoint_s: float = 0.0, eval_step_s: float = 0.0) -> None:
        self.scope = scope
        self.checkpoint_s = checkpoint_s
        self.eval_step_ms = int(eval_step_s * 1000)
        self._checkpointed: dict[tuple[str, int], float] = {}
        self.store = store
        self.registry = registry
        self.ruleset = ruleset
        self.part = Partitioner(partitions)
        self.live: dict[tuple[str, int], Evaluator] = {}
        self.generation: Any = object()

    def reset(self, generation: Any) -> None:
        """A new consumer generation: partitions may have moved, rebuild lazily."""
        self.live.clear()
        self.generation = generation

    def _registry_for(self, source: str, partition: int) -> dict[str, Mapping[str, Any]]:
        if self.scope == "district":
            return {s: a for s, a in self.registry.items()
                    if a.get("district") is not None and self.part(str(a["district"])) == partition}
        domain = _domain_of(source)
        return {s: a for s, a in self.registry.items()
                if a.get("domain") == domain and self.part(s) == partition}

    def get(self, source: str, partition: int) -> tuple[Evaluator, list[AlertEvent]]:
        """The evaluator, rebuilt from the store on first use; plus resolved events of
        alerts whose rules disappeared while it was not live."""
        key = (source, partition)
        ev = self.live.get(key)
        if ev is not None:
            return ev, []
        prefix = f"{source}|{partition}|"
        items = [(k[len(prefix):], orjson.loads(v)) for k, v in self.store.items()
                 if k.startswith(prefix)]
        rs = self.ruleset()
        reg = self._registry_for(source, partition)
        ev = Evaluator.from_state(rs, reg, items, scope=self.scope)
        events = ev.replace_ruleset(rs, eval_time(ev)) if items else []
        if items:
            log.info("alert state of %s[%d] rebuilt from %d entries", source, partition,
                     len(items))
        self.live[key] = ev
        return ev, events

    def persist(self, source: str, partition: int, ev: Evaluator, *, force: bool = False) -> int:
        """Write changed state: alert lifecycle entries always (so a restart neither
        re-sends nor forgets a transition), per-sensor sample entries only every
        ``checkpoint_s``. Why: a sensor entry holds its whole rule window (minutes of
        samples) and changes with every reading; writing it per batch made the changelog
        the worker's largest cost. The price, on a crash only: up to ``checkpoint_s`` of
        samples are missing from the recovered windows (revocation and shutdown force a
        full write, see :meth:`persist_all`)."""
        now = time.monotonic()
        key = (source, partition)
        full = force or now - self._checkpointed.get(key, 0.0) >= self.checkpoint_s
        if full:
            self._checkpointed[key] = now
        changes = ev.take_changes(sensors=full)
        prefix = f"{source}|{partition}|"
        for k, v in changes.items():
            if v is None:
                self.store.delete(partition, prefix + k)
            else:
                self.store.put(partition, prefix + k, orjson.dumps(v))
        return len(changes)

    def process(self, source: str, partition: int,
                readings: list[Mapping[str, Any]]) -> list[AlertEvent]:
        """Observe and tick, at least every ``eval_step_ms`` of event time. State is *not*
        persisted yet: call :meth:`persist` after the events are delivered.

        Live, a batch spans a fraction of a second and is one tick at its newest event
        time. A backlog batch (catching up after a crash or an outage, or one record
        holding minutes of a gateway's samples) can span minutes: it is observed in
        event-time steps, ticking after each, so an episode inside it still fires and
        resolves (late, once) instead of being skipped by a single tick at the end. The
        step is Prometheus' evaluation interval: in a backlog an episode shorter than a
        step may be missed, live one shorter than a batch (≤ ``streams_take_within_s``)."""
        ev, events = self.get(source, partition)
        if not readings:
            return events
        ts = [int(r["ts"]) for r in readings]
        lo, hi = min(ts), max(ts)
        step = self.eval_step_ms
        if step <= 0 or hi // step == lo // step:
            ev.observe(readings)
            return events + ev.tick(hi)
        order = sorted(range(len(ts)), key=ts.__getitem__)  # stable: arrival order kept
        i, n = 0, len(order)
        while i < n:
            bucket = ts[order[i]] // step
            j = i + 1
            while j < n and ts[order[j]] // step == bucket:
                j += 1
            ev.observe([readings[k] for k in order[i:j]])
            events += ev.tick(ts[order[j - 1]])
            i = j
        return events

    def persist_all(self) -> int:
        """Full write of every live evaluator (partitions revoked, worker stopping)."""
        return sum(self.persist(src, part, ev, force=True)
                   for (src, part), ev in list(self.live.items()))

    def reload(self, rs: RuleSet) -> list[tuple[str, int, list[AlertEvent]]]:
        out = []
        for (source, partition), ev in self.live.items():
            out.append((source, partition, ev.replace_ruleset(rs, eval_time(ev))))
        return out


class DistrictInterest:
    """Which readings a district rule could use, by domain and kind (cached per rule set).

    Why: forwarding every reading through the district topic costs an encode, a Kafka
    round trip and a decode per reading; the starter set's district rules only look at
    traffic loops and power meters, so everything else would be forwarded to be ignored.
    A selector on other attributes (district, sensors, registry columns) is not
    prefiltered: the evaluator still applies the full selector."""

    def __init__(self) -> None:
        self._rs: RuleSet | None = None
        self._any_kind: set[str | None] = set()  # domains (None = any) with an any-kind rule
        self._kinds: set[tuple[str | None, str]] = set()
        self._metrics: set[str] = set()

    def _build(self, rs: RuleSet) -> None:
        self._rs = rs
        self._any_kind, self._kinds, self._metrics = set(), set(), set()
        for r in rs.rules:
            if r.scope != "district":
                continue
            self._metrics.update(r.retention_ms())
            if isinstance(r.condition, AbsenceCond) and r.condition.metric:
                self._metrics.add(r.condition.metric)
            sel = r.selector
            for d in (sel.domain or {None}):
                if sel.kind is None:
                    self._any_kind.add(d)
                else:
                    self._kinds.update((d, k) for k in sel.kind)

    def domain(self, rs: RuleSet, domain: str | None) -> bool:
        if rs is not self._rs:
            self._build(rs)
        return bool({domain, None} & self._any_kind) or any(
            d in (domain, None) for d, _ in self._kinds)

    def select(self, rs: RuleSet, domain: str | None,
               readings: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        if rs is not self._rs:
            self._build(rs)
        if {domain, None} & self._any_kind:
            return readings
        kinds = {k for d, k in self._kinds if d in (domain, None)}
        return [r for r in readings if r.get("kind") in kinds]

    def slim(self, readings: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Only what the district evaluator reads: identity, time and the metrics district
        rules use (a reading without them still says "seen" to absence rules)."""
        want = self._metrics
        return [{"sensor_id": r["sensor_id"], "ts": r["ts"], "domain": r.get("domain"),
                 "kind": r.get("kind"), "district": r.get("district"),
                 "metrics": {m: v for m, v in (r.get("metrics") or {}).items() if m in want}}
                for r in readings]


def by_district(readings: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in readings:
        d = r.get("district")
        if d:
            out[str(d)].append(r)
    return out


def _take_settings(settings: Settings) -> tuple[int, float]:
    """Records per agent batch and the longest wait to fill one (the streams' settings)."""
    from .settings import StreamsSettings

    ss = StreamsSettings.from_base(settings)
    return ss.streams_take_records, ss.streams_take_within_s


def _by_partition(events: Iterable[Any], decoded: DecodedBatches | None = None
                  ) -> dict[tuple[str, int], list[Mapping[str, Any]]]:
    """Readings of a batch of Kafka events, per source (topic, partition), in offset order.

    Why batches: :meth:`Evaluator.tick` costs O(sensors of the partition); ticking once
    per Kafka record made alerting the worker's bottleneck. One tick per partition per
    batch (at most ``streams_take_within_s`` of delay) keeps the cost per reading flat.
    Undecodable records are skipped here: ``store_readings`` dead-letters them.
    """
    out: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for event in events:
        msg = event.message
        try:
            readings = (decoded.get(msg.topic, msg.partition, msg.offset, event.value)
                        if decoded is not None else decode_batch(event.value))
        except ValueError:
            log.debug("undecodable record at %s[%d]@%d", msg.topic, msg.partition, msg.offset)
            continue
        out[(msg.topic, msg.partition)].extend(readings)
    return out


def register_alerting(app: faust.App, settings: Settings, writer: InfluxWriter, *,
                      own_writer: bool = False, decoded: DecodedBatches | None = None) -> None:
    """Add the alerting agents, tables, reload timer and outputs to ``app``.

    ``writer`` is shared with the caller; ``own_writer=True`` closes it when the app stops.
    ``decoded``: the cache shared with another agent reading the same topics."""
    cfg = AlertSettings()
    registry: dict[str, Mapping[str, Any]] = {}
    if settings.registry_path is not None:
        try:
            registry = load_registry_csv(settings.registry_path)
        except OSError as exc:
            log.warning("registry %s unreadable (%s): rules see readings only",
                        settings.registry_path, exc)
    # The registry is not given to the loader: its cross-checks (selectors matching no
    # sensor, unknown districts) are `urbanbrain rules check --registry` lint, not a reason
    # for a worker to refuse to start.
    watcher = RuleWatcher([str(p) for p in cfg.rules_path], None)
    log.info("alert rules: %d rules from %s", len(watcher.ruleset.rules),
             ", ".join(map(str, cfg.rules_path)))
    n = settings.kafka_partitions

    readings_topic = app.topic(*READINGS_TOPICS, key_type=bytes, value_type=bytes,
                               value_serializer="raw", key_serializer="raw")
    district_topic = app.topic(f"{app.conf.id}-{DISTRICT_TOPIC_SUFFIX}", internal=True,
                               partitions=n, key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw")
    alerts_topic = app.topic(ALERTS_TOPIC, key_serializer="raw", value_serializer="raw")
    sensor_table = app.Table("alert-state", key_type=str, value_type=bytes, partitions=n)
    district_table = app.Table("alert-district-state", key_type=str, value_type=bytes,
                               partitions=n)

    outputs = AlertOutputs(settings, writer, alerts_topic, webhook_urls=cfg.webhook_urls,
                           external_url=cfg.external_url, close_writer=own_writer)
    app.service(outputs)  # type: ignore[arg-type]  # an instance is accepted too
    sensors = PartitionEvaluators("sensor", TableStore(sensor_table), registry,
                                  lambda: watcher.ruleset, n, cfg.state_checkpoint_s,
                                  cfg.eval_step_s)
    districts = PartitionEvaluators("district", TableStore(district_table), registry,
                                    lambda: watcher.ruleset, n, cfg.state_checkpoint_s,
                                  cfg.eval_step_s)
    district_part = Partitioner(n)
    app.urbanbrain_alerting = {  # type: ignore[attr-defined]
        "sensors": sensors, "districts": districts, "outputs": outputs, "watcher": watcher,
    }

    def _generation(pe: PartitionEvaluators) -> None:
        if pe.generation != app.consumer_generation_id:
            pe.reset(app.consumer_generation_id)

    take_n, take_within = _take_settings(settings)
    interest = DistrictInterest()

    @app.agent(readings_topic, name="alert_sensors")
    async def alert_sensors(stream: faust.StreamT) -> None:
        async for events in stream.take_events(take_n, within=take_within):
            _generation(sensors)
            ruleset = watcher.ruleset
            for (topic, partition), readings in _by_partition(events, decoded).items():
                out = sensors.process(topic, partition, readings)
                await outputs.emit(out)
                sensors.persist(topic, partition, sensors.live[(topic, partition)])
                domain = _domain_of(topic)
                if interest.domain(ruleset, domain):
                    wanted = interest.slim(interest.select(ruleset, domain, readings))
                    for district, rs in by_district(wanted).items():
                        for i in range(0, len(rs), DISTRICT_RECORD_READINGS):
                            await district_topic.send(
                                key=district.encode(),
                                value=encode_batch(rs[i:i + DISTRICT_RECORD_READINGS]),  # type: ignore[arg-type]
                                partition=district_part(district))

    @app.agent(district_topic, name="alert_districts")
    async def alert_districts(stream: faust.StreamT) -> None:
        async for events in stream.take_events(take_n, within=take_within):
            _generation(districts)
            for (_, partition), readings in _by_partition(events).items():
                out = districts.process(DISTRICT_SOURCE, partition, readings)
                await outputs.emit(out)
                districts.persist(DISTRICT_SOURCE, partition,
                                  districts.live[(DISTRICT_SOURCE, partition)])

    store = AlertStore(writer, outputs.sent)

    @app.agent(alerts_topic, name="store_alerts")
    async def store_alerts(stream: faust.StreamT) -> None:
        async for events in stream.take_events(take_n, within=take_within):
            await store.store([e.value for e in events])

    @app.on_partitions_revoked.connect
    async def checkpoint_on_revoke(sender: Any, revoked: set, **kwargs: Any) -> None:
        # The next owner of these partitions starts from the table: give it everything.
        n_keys = sensors.persist_all() + districts.persist_all()
        if n_keys:
            await flush_durably(app)
            log.info("alert state checkpointed on revocation: %d entries", n_keys)

    @app.timer(cfg.reload_interval_s)
    async def reload_rules() -> None:
        changed, err = watcher.poll()
        if err is not None:
            log.error("alert rules NOT reloaded, keeping the previous set: %s", err)
            return
        if not changed:
            return
        log.info("alert rules reloaded: %d rules", len(watcher.ruleset.rules))
        if app.rebalancing or app.in_recovery:
            return  # evaluators are rebuilt with the new set after the rebalance
        for pe in (sensors, districts):
            _generation(pe)
            for source, partition, events in pe.reload(watcher.ruleset):
                await outputs.emit(events)
                pe.persist(source, partition, pe.live[(source, partition)])


def create_alerting_app(settings: Settings) -> faust.App:
    """A Faust app that runs only the alerting part (own consumer group ``<id>-alerting``)."""
    from . import faust_patches
    from .app import faust_config, stop_on_config_error

    faust_patches.apply()
    app = faust.App(f"{settings.streams_app_id}-alerting", **faust_config(settings))
    register_alerting(app, settings, InfluxWriter(settings, on_config_error=stop_on_config_error),
                      own_writer=True)
    return app


def main() -> None:
    """``python -m urbanbrain.streams.alerting``: one alerting-only worker."""
    import asyncio

    from urbanbrain.kafka import ensure_topics

    settings = Settings()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ensure_topics(settings))
    finally:
        loop.close()
    app = create_alerting_app(settings)
    worker = faust.Worker(app, loglevel="info", redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
