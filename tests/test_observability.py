"""Issue #14 without servers: the metrics a process exposes, the pipeline's own rules over
them, the generation fence, the log-noise filter, and the Prometheus/Grafana files that
name those metrics.

The metric families are read from the real objects (an :class:`IngestBridge`, a Faust app
from :func:`create_app`), not from a list kept here, so a renamed metric fails the
dashboard check instead of leaving an empty panel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from urbanbrain.observability import Metrics
from urbanbrain.rules.pipeline_watch import PIPELINE_METRICS, PipelineSettings, PipelineWatch
from urbanbrain.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_800_000_000_000


@pytest.fixture(scope="module")
def exposed(tmp_path_factory) -> set[str]:
    """Every metric name ingest and a worker render (samples, as Prometheus stores them)."""
    from urbanbrain.ingest.bridge import IngestBridge
    from urbanbrain.streams.app import create_app

    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    names: set[str] = set()
    bridge = IngestBridge(settings)
    app = create_app(settings)
    for text in (bridge.metrics.render(), app.urbanbrain_metrics.render()):
        for fam in text_string_to_metric_families(text.decode()):
            names.update(s.name for s in fam.samples)
    return names


def test_ingest_and_worker_expose_the_families_the_issue_names(exposed):
    for name in ("urbanbrain_readings_in_total", "urbanbrain_readings_out_total",
                 "urbanbrain_mqtt_connected", "urbanbrain_mqtt_session_present",
                 "urbanbrain_mqtt_sessions_lost_total", "urbanbrain_mqtt_puback_backlog",
                 "urbanbrain_influx_write_retries_total", "urbanbrain_dead_letters_total",
                 "urbanbrain_alerts", "urbanbrain_rule_evaluations_total"):
        assert name in exposed, name


def test_collector_pauses_are_measured_and_exposed(exposed):
    """A full collection is counted and timed, and both processes expose the families."""
    import gc

    from urbanbrain import gctune

    for name in ("urbanbrain_gc_collections_total", "urbanbrain_gc_pause_seconds_total",
                 "urbanbrain_gc_longest_pause_seconds"):
        assert name in exposed, name
    p = gctune.pauses()
    before, spent = p.collections[2], p.seconds[2]
    junk = [[i] for i in range(200_000)]  # something for the collector to walk
    gc.collect()
    del junk
    assert p.collections[2] >= before + 1  # ours, and any the allocations triggered
    assert p.seconds[2] > spent and p.longest[2] > 0
    m = Metrics()
    from urbanbrain.observability import gc_metrics

    gc_metrics(m)
    fams = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    full = [s for s in fams["urbanbrain_gc_collections"].samples
            if s.labels.get("generation") == "2" and s.name.endswith("_total")]
    assert full and full[0].value == p.collections[2]


def test_dashboard_queries_name_only_exposed_metrics(exposed):
    dash = json.loads((ROOT / "dashboards" / "prometheus" / "pipeline-health.json").read_text())
    assert dash["uid"] == "pipeline-prometheus"
    used = set()
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "urbanbrain-prometheus", panel["title"]
        for target in panel["targets"]:
            used.update(re.findall(r"\burbanbrain_\w+", target["expr"]))
    # gauges/counters whose series appear only once something happened (labels) are
    # declared by the families; the lag per partition needs an assignment.
    late = {"urbanbrain_kafka_lag_records", "urbanbrain_dead_letters_total",
            "urbanbrain_mqtt_sessions_lost_total", "urbanbrain_influx_auth_failures_total",
            "urbanbrain_events_fenced_total", "urbanbrain_log_lines_suppressed_total",
            "urbanbrain_alert_notifications_total", "urbanbrain_kafka_reachable",
            "urbanbrain_ready", "urbanbrain_influx_write_seconds",
            "urbanbrain_influx_write_retries_total"}
    missing = used - exposed - late
    assert not missing, f"dashboard queries metrics nobody exposes: {sorted(missing)}"
    assert len(used) >= 12


def test_prometheus_scrapes_the_port_compose_serves():
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("ingest", "streams", "raw-store"):
        env = services[name]["environment"]
        assert env["URBANBRAIN_METRICS_PORT"] == "9108" and env["URBANBRAIN_METRICS_HOST"] \
            == "0.0.0.0", name
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["urbanbrain-ingest"]["static_configs"][0]["targets"] == ["ingest:9108"]
    for job, service in (("urbanbrain-streams", "streams"), ("urbanbrain-raw-store", "raw-store")):
        sd = jobs[job]["dns_sd_configs"][0]
        assert sd["names"] == [service] and sd["port"] == 9108
    ds = yaml.safe_load((ROOT / "dashboards" / "provisioning" / "datasources" /
                         "prometheus.yaml").read_text())["datasources"][0]
    assert ds["uid"] == "urbanbrain-prometheus"
    var = re.fullmatch(r"\$\{(\w+)\}", ds["url"]).group(1)
    assert services["grafana"]["environment"][var] == "http://prometheus:9090"


# -- the pipeline's own rules -------------------------------------------------------------------
class _Counters:
    def __init__(self) -> None:
        self.v = {"readings_out": 0, "lag": 0, "retries": 0, "lost": 0, "dead": 0,
                  "stalled": 0.0}


def _watch(stage: str, c: _Counters, got: list) -> PipelineWatch:
    m = Metrics(stage=stage)
    m.counter("readings_out", "", lambda: c.v["readings_out"])
    m.counter("readings_in", "", lambda: c.v["readings_out"])
    m.counter("influx_write_retries", "", lambda: c.v["retries"])
    m.counter("mqtt_sessions_lost", "", lambda: c.v["lost"])
    m.counter("dead_letters", "", lambda: {("malformed",): c.v["dead"]}, labels=("reason",))
    m.gauge("kafka_lag_records", "", lambda: {("readings.power", "0"): c.v["lag"]},
            labels=("topic", "partition"))
    m.gauge("district_clock_stalled_seconds", "", lambda: c.v["stalled"])

    async def emit(events):  # noqa: ANN001
        got.extend(events)

    return PipelineWatch(m, stage, "t", emit, PipelineSettings())


def _run(watch: PipelineWatch, c: _Counters, steps: int, change) -> list:  # noqa: ANN001
    out = []
    for i in range(steps):
        change(i)
        out += asyncio.run(watch.step(T0 + i * 5_000))
    return out


def test_starter_rules_load_and_name_only_pipeline_metrics():
    watch = _watch("streams", _Counters(), [])
    assert {r.alert for r in watch.ruleset.rules} >= {
        "KafkaLagGrowing", "NothingStored", "IngestSessionLost", "DeadLetterSpike",
        "InfluxWriteRetries"}
    text = (ROOT / "rules" / "pipeline" / "pipeline.yaml").read_text()
    for name in re.findall(r"metric: (\w+)", text):
        assert name in PIPELINE_METRICS, name


def test_session_lost_fires_once_and_resolves_after_its_window():
    c, got = _Counters(), []
    watch = _watch("ingest", c, got)

    def change(i: int) -> None:
        c.v["readings_out"] += 100
        if i == 3:
            c.v["lost"] += 1

    events = _run(watch, c, 200, change)
    lost = [(e.alertname, e.status) for e in events if e.alertname == "IngestSessionLost"]
    assert lost == [("IngestSessionLost", "firing"), ("IngestSessionLost", "resolved")]
    assert got == events
    fired = next(e for e in events if e.status == "firing")
    assert fired.labels["district"] == "pipeline"
    assert fired.labels["sensor"] == "pipeline-ingest-t"
    assert not [e for e in events if e.alertname != "IngestSessionLost"]


def test_influx_outage_fires_retries_nothing_stored_and_lag_growing():
    c, got = _Counters(), []
    watch = _watch("streams", c, got)

    def change(i: int) -> None:
        if i < 10:
            c.v["readings_out"] += 500
        else:  # InfluxDB down: nothing stored, writes retried, the backlog grows
            c.v["retries"] += 2
            c.v["lag"] += 300

    events = _run(watch, c, 40, change)
    firing = {e.alertname for e in events if e.status == "firing"}
    assert firing == {"InfluxWriteRetries", "NothingStored", "KafkaLagGrowing"}
    assert watch.evaluations == 40
    assert watch.transitions["firing"] == 3


def test_a_district_clock_waiting_ten_minutes_fires_and_resolves():
    c, got = _Counters(), []
    watch = _watch("streams", c, got)

    def change(i: int) -> None:
        c.v["readings_out"] += 500
        c.v["stalled"] = 5.0 * i if i < 200 else 0.0  # waits 16 min, then its source speaks

    events = _run(watch, c, 220, change)
    assert [(e.alertname, e.status) for e in events] == [
        ("DistrictRulesStalled", "firing"), ("DistrictRulesStalled", "resolved")]
    assert T0 + 600_000 < events[0].starts_at <= T0 + 640_000


def test_dead_letter_spike_needs_a_spike():
    c, got = _Counters(), []
    watch = _watch("ingest", c, got)
    _run(watch, c, 20, lambda i: c.v.__setitem__("dead", c.v["dead"] + 5))  # 1/s: normal
    assert not got
    _run(watch, c, 20, lambda i: c.v.__setitem__("dead", c.v["dead"] + 500))  # 100/s
    assert [(e.alertname, e.status) for e in got] == [("DeadLetterSpike", "firing")]


# -- generation fence ---------------------------------------------------------------------------
def _event(gen: int | None) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(generation_id=gen, acked=False))


def test_generation_fence_drops_old_generation_unacked():
    from urbanbrain.streams.state import GenerationFence

    app = SimpleNamespace(consumer_generation_id=7)
    fence = GenerationFence(app)
    events = [_event(6), _event(7), _event(None), _event(6)]
    live = fence(events)
    assert live == [events[1], events[2]]
    assert fence.dropped == 2
    # marked so Consumer.wait_empty forgets them, never passed to Consumer.ack
    assert events[0].message.acked and events[3].message.acked
    assert not events[1].message.acked
    app.consumer_generation_id = 8
    assert fence(live) == [live[1]] and fence.dropped == 3


def test_rebalance_fence_stops_a_batch_a_rebalance_overtook():
    """An expelled worker finishing its batch must not write state after the partitions'
    new owner (streams/state.py RebalanceFence): the check raises once a rebalance has
    begun since the batch's generation was assigned, and the abandoned events are left
    unacknowledged. A batch of records fetched after the new assignment runs, although
    Faust's ``rebalancing`` flag stays set until recovery has ended (stop 27's fence
    abandoned those, and nothing read them again)."""
    from urbanbrain.streams.state import BatchAbandoned, RebalanceFence

    app = SimpleNamespace(consumer_generation_id=3, rebalancing=False, rebalancing_count=1)
    fence = RebalanceFence(app)
    fence.assigned()
    token = fence.token()
    fence.check(token, "before its outputs")  # nothing happened: goes on
    app.rebalancing, app.rebalancing_count = True, 2  # a revocation began while it ran
    with pytest.raises(BatchAbandoned, match="before its state"):
        fence.check(token, "before its state")
    # a batch that starts while that revocation runs holds records of generation 3,
    # fetched before it: overtaken from its first check
    with pytest.raises(BatchAbandoned):
        fence.check(fence.token(), "before its outputs")
    app.consumer_generation_id = 4  # the assignment; recovery still running
    fence.assigned()
    assert app.rebalancing
    fence.check(fence.token(), "before its outputs")  # records fetched after the seek run
    with pytest.raises(BatchAbandoned):
        fence.check(token, "before its state")  # the old batch's token stays stale
    app.rebalancing = False
    token = fence.token()
    app.consumer_generation_id = 5  # a whole rebalance passed meanwhile (expelled, rejoined)
    with pytest.raises(BatchAbandoned):
        fence.check(token, "before its state")
    # an assignment whose signal never came, in the same generation: once no rebalance
    # runs, batches go on instead of being abandoned forever
    app.consumer_generation_id, app.rebalancing_count = 4, 5
    fence.assigned()
    app.rebalancing_count = 6  # rebalance 6 ended without the signal
    fence.check(fence.token(), "before its outputs")
    events = [_event(3), _event(3)]
    fence.abandon(events, "readings batch", "before its state")
    assert all(e.message.acked for e in events) and fence.abandoned == 1


# -- log noise ----------------------------------------------------------------------------------
def test_noisy_lines_are_counted_and_one_passes(caplog):
    from urbanbrain import lognoise

    lognoise.quiet(every_s=60)
    before = lognoise.SUPPRESSED["offset_commit_failed_rejoin"]
    logger = logging.getLogger("aiokafka.consumer.group_coordinator")
    with caplog.at_level(logging.INFO, logger="aiokafka.consumer.group_coordinator"):
        for _ in range(11):
            logger.error("OffsetCommit failed for group %s due to group error (%s), will rejoin",
                         "g", "UnknownMemberIdError")
        logger.error("OffsetCommit failed for unauthorized topics %s", ["t"])
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("will rejoin" in m for m in msgs) <= 1
    assert any("unauthorized" in m for m in msgs), "real failures still pass"
    assert lognoise.SUPPRESSED["offset_commit_failed_rejoin"] - before >= 10


# -- replays are not late -----------------------------------------------------------------------
def _records(first_offset: int, first_step: int, n: int) -> list[tuple[int, list[dict]]]:
    """n records of one reading each, 10 s of event time apart."""
    return [(first_offset + i, [{"sensor_id": "s1", "district": "d", "kind": "k",
                                 "ts": T0 + (first_step + i) * 10_000,
                                 "metrics": {"speed_kmh": 50.0}}]) for i in range(n)]


def test_reread_records_are_skipped_not_late_and_real_late_ones_still_are():
    """What a worker sees after another advanced the partition: the state (reloaded from
    the table) has closed panes the re-read records fall in. They are replays, not late."""
    from urbanbrain.streams.windows import PartitionWindows

    def fresh() -> PartitionWindows:
        return PartitionWindows("readings.traffic", 0, lateness_ms=120_000)

    from urbanbrain.streams.state import DictStore

    a, table = fresh(), DictStore()
    for first in (0, 100):  # 1100 s of event time: many panes closed
        res = a.process(_records(first, first, 100 if first == 0 else 10))
        for key, value in {**res.delta_puts, **res.after_puts}.items():
            table.put(0, key, value)
        for key in res.deletes:
            table.delete(0, key)
    b = fresh()  # the state as another worker reloads it from the table
    b.load(table.items())
    assert b.max_offset == 109 and b.emitted_until is not None
    replay = b.process(_records(20, 20, 90))  # re-read from an old committed offset
    assert replay.late == [] and replay.replayed == 90
    late = b.process([(110, [{"sensor_id": "s1", "district": "d", "kind": "k",
                              "ts": T0, "metrics": {"speed_kmh": 1.0}}])])
    assert len(late.late) == 1, "a new record with an old event time is still late"
