"""A streams worker's metrics, Kafka readiness and self-monitoring rules, attached to the
Faust app from the outside so the topology in app.py stays a topology.

What :func:`observe_worker` adds:

* ``/metrics`` (when the health server runs): readings in and out, dead letters by reason,
  Kafka lag per partition, InfluxDB writer counters, alerts by state and the transitions
  handed to each output, rule evaluations, events fenced off after a rebalance;
* a ``kafka_reachable`` readiness check (:class:`urbanbrain.health.KafkaProbe`), so
  ``/readyz`` turns 503 while the cluster does not answer, which a Faust consumer that
  keeps its assignment and retries quietly would not show;
* the pipeline rules (:mod:`urbanbrain.rules.pipeline_watch`) over those metrics, their alerts
  delivered by the worker's ``AlertOutputs`` (Kafka, MQTT, webhooks; never InfluxDB).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import faust

from urbanbrain import lognoise
from urbanbrain.health import HealthServer, KafkaProbe
from urbanbrain.kafka import READINGS_TOPICS, client_options
from urbanbrain.observability import Metrics, gc_metrics, writer_metrics
from urbanbrain.settings import Settings

log = logging.getLogger(__name__)


def lag_by_partition(app: faust.App, log_end: Mapping[tuple[str, int], int] | None = None
                     ) -> dict[tuple[str, str], float] | None:
    """Records of readings.* not yet read by this worker, per (topic, partition).
    ``log_end``: the end offsets the broker last reported (StreamsWorker.check_fetching);
    aiokafka's highwater is only the last fetch's, frozen while a partition is not fetched,
    so alone it shows no lag exactly when a partition stopped being read."""
    log_end = log_end or {}
    try:
        consumer = app.consumer
        out: dict[tuple[str, str], float] = {}
        for tp in consumer.assignment():
            if tp.topic not in READINGS_TOPICS:
                continue
            hw = max(consumer.highwater(tp) or 0, log_end.get((tp.topic, tp.partition), 0))
            read = consumer._read_offset.get(tp)  # noqa: SLF001 - no public accessor
            out[(tp.topic, str(tp.partition))] = float(
                max(0, hw - (read + 1 if read is not None else 0)))
        return out
    except Exception:  # noqa: BLE001 - before the consumer exists
        return None


def _alerts_by_state(alerting: Any) -> dict[tuple[str, ...], int]:
    out = {("pending",): 0, ("firing",): 0}
    for stage in (alerting.sensors, alerting.districts):
        for ev in list(getattr(stage, "live", {}).values()):
            for a in ev.active_alerts():
                out[(a["s"],)] = out.get((a["s"],), 0) + 1
    return out


def _rule_state(alerting: Any) -> dict[tuple[str, ...], int]:
    """Sensors whose rule state this worker holds, per stage: what its memory grows with."""
    out: dict[tuple[str, ...], int] = {}
    for name in ("sensors", "districts"):
        live = list(getattr(getattr(alerting, name), "live", {}).values())
        out[(name,)] = sum(ev.sensor_count() for ev in live)
    return out


def _forgotten(alerting: Any) -> int:
    """Sensors the live evaluators forgot (unregistered, silent past FORGET_UNREGISTERED_MS);
    a rebalance rebuilds the evaluators, which Prometheus reads as a counter reset."""
    return sum(ev.forgotten for stage in (alerting.sensors, alerting.districts)
               for ev in list(getattr(stage, "live", {}).values()))


def _district_lag(alerting: Any) -> dict[tuple[str, ...], float]:
    districts = alerting.districts
    out: dict[tuple[str, ...], float] = {}
    for _, partition in list(districts.live):
        lag = districts.lag_ms(partition)
        if lag is not None:
            out[(str(partition),)] = lag / 1000.0
    return out


def worker_metrics(app: faust.App, metrics: Metrics, *, writer: Any, stats: Any,
                   stage: Any, alerting: Any, fence: Any = None, worker: Any = None) -> Metrics:
    """Register the worker's families on ``metrics`` (values read at scrape time).
    ``stage``: the window stage, None when windows are off (alerting-only replicas);
    ``worker``: the StreamsWorker (broker end offsets, commit watch), when there is one."""
    m = metrics
    windows = stage if stage is not None else SimpleNamespace(
        stats=SimpleNamespace(late=0, windows=0, replayed=0), open_panes=0)
    m.counter("kafka_records_consumed", "Kafka records (batches of readings) processed",
              lambda: stats.records)
    m.counter("readings_in", "readings taken from Kafka and processed (a late reading's "
              "raw point is stored too; only its window refuses it)", lambda: stats.readings)
    m.counter("readings_out", "readings whose raw point InfluxDB acknowledged",
              lambda: stats.readings - stats.refused)
    m.counter("dead_letters", "readings or records dead-lettered by the worker, by reason",
              lambda: {("late",): windows.stats.late, ("sink_refused",): stats.refused,
                       ("malformed",): stats.bad_records}, labels=("reason",))
    m.gauge("kafka_lag_records", "records of readings.* not yet read, per partition",
            lambda: lag_by_partition(app, getattr(worker, "log_end", None)),
            labels=("topic", "partition"))
    if worker is not None:
        m.counter("kafka_commit_stalls", "partitions whose committed offset stopped behind "
                  "records already read, a record never acknowledged holding it (the log "
                  "says which: 'commit of ... stalled')", lambda: worker.commit_watch.stalls)
        m.counter("kafka_partitions_refetched", "partitions put back into the fetch set "
                  "after they stopped being fetched with records left",
                  lambda: worker.refetched)
        m.counter("batches_abandoned", "batches (readings, district, idle ticks) a "
                  "rebalance overtook, stopped before they wrote outputs or state; their "
                  "records are read again by the partitions' owners",
                  lambda: worker.fence.abandoned)
    m.gauge("kafka_partitions_assigned", "partitions of readings.* assigned to this worker",
            lambda: len([tp for tp in app.consumer.assignment()
                         if tp.topic in READINGS_TOPICS]))
    m.gauge("windows_open_panes", "1-min panes open in this worker",
            lambda: windows.open_panes)
    m.counter("windows_emitted", "windows closed and written", lambda: windows.stats.windows)
    m.counter("windows_replayed_readings", "readings of re-read records the window state "
              "already held (after a crash or rebalance): skipped, not late",
              lambda: windows.stats.replayed)
    m.gauge("agent_batch_seconds", "duration of the last store_readings batch",
            lambda: stats.batch_ms / 1000.0)
    writer_metrics(m, lambda: writer.stats)
    gc_metrics(m)
    m.gauge("alerts", "city alerts of this worker's partitions, by state",
            lambda: _alerts_by_state(alerting), labels=("state",))
    m.gauge("rule_state_sensors", "sensors whose rule state this worker holds, by stage",
            lambda: _rule_state(alerting), labels=("stage",))
    m.counter("district_late_readings", "readings that reached a district partition behind "
              "its clock, so district rules were evaluated without them (should stay 0: a "
              "reading older than its source's watermark)",
              lambda: alerting.districts.late)
    m.gauge("district_clock_lag_seconds", "event time between a district partition's most "
            "advanced source and its clock (the slowest source it waits for)",
            lambda: _district_lag(alerting), labels=("partition",))
    m.gauge("district_clock_stalled_seconds", "processing time the longest-waiting district "
            "clock has not moved while a source is ahead of it (a stuck source worker)",
            lambda: alerting.districts.stalled_s(time.monotonic()))
    m.counter("rule_state_forgotten", "sensors missing from the registry whose rule state "
              "was dropped after a day without readings", lambda: _forgotten(alerting))
    m.counter("alert_resends_suppressed", "alert transitions a replay from a rule state "
              "checkpoint produced again and did not send twice (they were sent before "
              "the restart)", lambda: alerting.sensors.resends_suppressed
              + alerting.districts.resends_suppressed)
    m.counter("alert_notifications", "alert transitions handed to each output",
              lambda: {(k,): v for k, v in alerting.outputs.sent.items()},
              labels=("output",))
    if fence is not None:
        m.counter("events_fenced", "events of an older consumer generation dropped "
                  "unprocessed (their partitions' owners re-read them)", lambda: fence.dropped)
    return m


def observe_worker(app: faust.App, settings: Settings, *, writer: Any, stats: Any,
                   stage: Any, alerting: Any, worker_id: str,
                   health: HealthServer | None = None, fence: Any = None,
                   worker: Any = None) -> Metrics:
    """Metrics, Kafka readiness and pipeline rules for this worker (see the module doc)."""
    from urbanbrain.rules.pipeline_watch import load_watch

    metrics = worker_metrics(app, Metrics(stage="streams", worker=worker_id), writer=writer,
                             stats=stats, stage=stage, alerting=alerting, fence=fence,
                             worker=worker)
    lognoise.quiet()
    metrics.counter("log_lines_suppressed", "by-design log lines counted instead of printed",
                    lambda: {(k,): v for k, v in lognoise.SUPPRESSED.items()}, labels=("what",))
    probe = KafkaProbe(client_options(settings)) if health is not None else None
    if health is not None and probe is not None:
        health.add_check("kafka_reachable", probe.check)
        metrics.gauge("kafka_reachable", "1 while a Kafka metadata request succeeds",
                      lambda: float(bool(probe.ok)))
        health.register_metrics(metrics)

    watch = load_watch(metrics, "streams", worker_id, alerting.outputs.emit)
    if watch is not None:
        watch.register_metrics(metrics)

    @app.task
    async def start_observability() -> None:
        if probe is not None:
            probe.start()
        if watch is not None:
            watch.start()

    app.urbanbrain_metrics = metrics  # type: ignore[attr-defined]
    return metrics
