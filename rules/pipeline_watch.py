"""The pipeline watches itself: its own metrics, as readings of pseudo-sensors, through the
ordinary rule engine, evaluated in the process that has them.

Why in process and not in InfluxDB or Grafana: the faults an operator most needs to hear
about (InfluxDB down, a hung worker, a broker that lost ingest's session) are exactly the
ones that stop the stored ``pipeline`` measurement from flowing. Here every ``every_s``
seconds the process samples :class:`urbanbrain.observability.Metrics` (the numbers its
``/metrics`` shows), turns the sample into one reading of the pseudo-sensor
``pipeline-<stage>-<id>`` (domain and district ``pipeline``, kind = the stage), feeds it to
an :class:`urbanbrain.rules.Evaluator` loaded with ``rules/pipeline/*.yaml`` and hands the
transitions to ``emit``: the worker's :class:`AlertOutputs` (Kafka ``alerts``, MQTT
``city/alerts/pipeline/...``, webhooks), none of which goes through InfluxDB.

Event time here is the wall clock: these readings are measured now, by us.

The metrics the rules may name are registered with the rule checker as indices of a
``pipeline`` domain (:data:`PIPELINE_METRICS`), so a typo in a pipeline rule is still
refused by ``check``. State is in memory: after a restart the rules start afresh, which
for "is the pipeline sick right now" is what we want.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from urbanbrain.health import BackgroundLoop
from urbanbrain.observability import Metrics
from urbanbrain.rules import names
from urbanbrain.settings import comma_list

log = logging.getLogger(__name__)

DOMAIN = "pipeline"
DEFAULT_RULES = Path(__file__).parent / "pipeline"

#: pseudo-sensor metric -> (how it is derived from a Metrics snapshot, description)
PIPELINE_METRICS: dict[str, str] = {
    "pipeline_lag_records": "Kafka records of readings.* not yet read by this worker",
    "pipeline_readings_in_per_s": "readings taken in per second (ingest: decoded from MQTT; "
                                  "worker: consumed from Kafka)",
    "pipeline_points_per_s": "readings stored per second (worker: raw points InfluxDB "
                             "acknowledged; ingest: readings Kafka acknowledged)",
    "pipeline_dead_letters_total": "dead letters since the process started, all reasons",
    "pipeline_influx_retries_total": "failed InfluxDB write attempts since start",
    "pipeline_influx_auth_failures_total": "InfluxDB writes refused 401/403 since start",
    "pipeline_mqtt_connected": "1 while ingest's MQTT connection is up",
    "pipeline_mqtt_sessions_lost_total": "reconnects on which the broker had lost ingest's "
                                         "session (possible loss)",
    "pipeline_kafka_reachable": "1 while Kafka answers a metadata request",
    "pipeline_puback_backlog": "QoS 1 messages ingest received and has not acknowledged",
    "pipeline_district_clock_stalled_s": "seconds the longest-waiting district clock of "
                                         "this worker has not moved while a source is "
                                         "ahead of it",
}
for _name, _desc in PIPELINE_METRICS.items():
    names.register_index(_name, DOMAIN, _desc)


class PipelineSettings(BaseSettings):
    """``URBANBRAIN_PIPELINE_*``: the self-monitoring rules."""

    model_config = SettingsConfigDict(env_prefix="URBANBRAIN_PIPELINE_", extra="ignore",
                                      frozen=True)

    rules_path: Path = Field(DEFAULT_RULES, description="rule file or folder of the pipeline's "
                             "own rules; an empty folder turns self-monitoring off")
    interval_s: float = Field(5.0, gt=0, description="sample and evaluate this often")
    webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="receivers of pipeline alerts; default: "
        "URBANBRAIN_ALERT_WEBHOOK_URLS")

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return comma_list(v)

    def webhooks(self) -> list[str]:
        """Our receivers, or the city alerts' ones (one Alertmanager gets both)."""
        if self.webhook_urls:
            return list(self.webhook_urls)
        return comma_list(os.environ.get("URBANBRAIN_ALERT_WEBHOOK_URLS", ""))


class ProducerTopic:
    """The ``send(key=, value=, headers=)`` of a Faust topic over a plain aiokafka producer,
    so a process without Faust (ingest) delivers through the same
    :class:`urbanbrain.streams.alerting_outputs.AlertOutputs` as the workers."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer, self.topic = producer, topic

    async def send(self, key: bytes | None = None, value: bytes | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> None:
        fut = await self.producer.send(self.topic, value, key=key, headers=headers)
        await fut


#: snapshot key (Metrics.snapshot) of a counter -> pseudo metric of its per-second rate
_RATES = {"readings_in": "pipeline_readings_in_per_s", "readings_out": "pipeline_points_per_s"}
#: snapshot key -> pseudo metric, copied as is
_VALUES = {
    "influx_write_retries": "pipeline_influx_retries_total",
    "influx_auth_failures": "pipeline_influx_auth_failures_total",
    "mqtt_connected": "pipeline_mqtt_connected",
    "mqtt_sessions_lost": "pipeline_mqtt_sessions_lost_total",
    "kafka_reachable": "pipeline_kafka_reachable",
    "mqtt_puback_backlog": "pipeline_puback_backlog",
    "district_clock_stalled_seconds": "pipeline_district_clock_stalled_s",
}


class PipelineWatch(BackgroundLoop):
    """Samples ``metrics`` into pseudo-sensor readings and evaluates the pipeline rules."""

    def __init__(self, metrics: Metrics, stage: str, instance: str,
                 emit: Callable[[Sequence[Any]], Awaitable[None]],
                 settings: PipelineSettings | None = None) -> None:
        from urbanbrain.rules import Evaluator, RuleSet

        self.settings = settings or PipelineSettings()
        self.metrics, self.stage, self.emit = metrics, stage, emit
        self.sensor_id = f"pipeline-{stage}-{instance}"
        self.ruleset = RuleSet.load([str(self.settings.rules_path)])
        self.evaluator = Evaluator(self.ruleset, {self.sensor_id: self.attrs})
        self.evaluations = 0
        self.transitions: dict[str, int] = {"firing": 0, "resolved": 0}
        self._last: tuple[float, dict[str, float]] | None = None
        self._undelivered: list[Any] = []

    @property
    def attrs(self) -> dict[str, str]:
        return {"domain": DOMAIN, "kind": self.stage, "district": DOMAIN}

    def reading(self, snapshot: Mapping[str, float], now_ms: int) -> dict[str, Any]:
        """One pseudo-sensor reading from a :meth:`Metrics.snapshot` (rates from the
        previous snapshot; the first has none)."""
        m: dict[str, float] = {}
        for key, name in _VALUES.items():
            if key in snapshot:
                m[name] = snapshot[key]
        dead = [v for k, v in snapshot.items() if k.startswith("dead_letters")]
        if dead:
            m["pipeline_dead_letters_total"] = sum(dead)
        lag = [v for k, v in snapshot.items() if k.startswith("kafka_lag_records{")]
        if lag:
            m["pipeline_lag_records"] = sum(lag)
        t = now_ms / 1000.0
        if self._last is not None:
            t0, prev = self._last
            dt = max(t - t0, 1e-3)
            for key, name in _RATES.items():
                if key in snapshot and key in prev:
                    m[name] = max(0.0, snapshot[key] - prev[key]) / dt
        self._last = (t, dict(snapshot))
        return {"sensor_id": self.sensor_id, "ts": now_ms, "metrics": m, **self.attrs}

    async def step(self, now_ms: int | None = None) -> list[Any]:
        """Sample, observe, evaluate, deliver; returns the transitions."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        self.evaluator.observe([self.reading(self.metrics.snapshot(), now)])
        events = self.evaluator.tick(now)
        self.evaluations += 1
        for ev in events:
            self.transitions[ev.status] = self.transitions.get(ev.status, 0) + 1
            log.warning("pipeline alert %s %s: %s", ev.alertname, ev.status,
                        ev.annotations.get("summary", ""))
        batch = self._undelivered + events
        if batch:
            try:
                await self.emit(batch)
                self._undelivered = []
            except Exception as exc:  # noqa: BLE001 - kept and sent again at the next step
                # e.g. the broker or Kafka is down right when the pipeline is sick: a
                # transition the evaluator already made must not be lost with the delivery
                self._undelivered = batch[-1000:]
                log.warning("pipeline alerts not delivered (%r); %d kept for the next try",
                            exc, len(self._undelivered))
        return events

    def register_metrics(self, metrics: Metrics) -> None:
        metrics.counter("rule_evaluations", "evaluations of the pipeline's own rules",
                        lambda: self.evaluations)
        metrics.gauge("pipeline_alerts", "the pipeline's own alerts, by state",
                      lambda: self._by_state(), labels=("state",))
        metrics.counter("pipeline_alert_transitions", "pipeline alert transitions emitted",
                        lambda: {(k,): v for k, v in self.transitions.items()},
                        labels=("status",))

    def _by_state(self) -> dict[tuple[str, ...], int]:
        out = {("pending",): 0, ("firing",): 0}
        for a in self.evaluator.active_alerts():
            out[(a["s"],)] = out.get((a["s"],), 0) + 1
        return out

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval_s)
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - self-monitoring must never stop the process
                log.exception("pipeline rules: evaluation failed")


def load_watch(metrics: Metrics, stage: str, instance: str,
               emit: Callable[[Sequence[Any]], Awaitable[None]]) -> PipelineWatch | None:
    """A watch over the configured rules, or None (logged) when there are none or they do
    not load: a broken self-monitoring rule must not keep the pipeline from running."""
    settings = PipelineSettings()
    path = settings.rules_path
    if not path.exists() or (path.is_dir() and not any(path.glob("*.y*ml"))):
        log.info("pipeline rules: none at %s, self-monitoring off", path)
        return None
    try:
        watch = PipelineWatch(metrics, stage, instance, emit, settings)
    except Exception as exc:  # noqa: BLE001 - RuleFileError and friends
        log.error("pipeline rules at %s not loaded, self-monitoring off: %s", path, exc)
        return None
    log.info("pipeline rules: %d rules from %s, every %gs", len(watch.ruleset.rules), path,
             settings.interval_s)
    return watch
