"""Alert rules inside the worker: rule files, the two rule stages and where alerts go.

    readings.* ──▶ process_readings: SensorRules (alert_stage.py; one Evaluator per source
        │          topic-partition; state: table ``alert-state``, changelog partition =
        │          source partition), fed raw readings *and* the index samples of the
        │          partition's closed windows (AQI, congestion index: urbanbrain/indexes.py)
        └─ DistrictInterest.forward ──▶ <app id>-alerts-district-readings (partition =
                                        murmur2(district), with the source's watermark)
               ──▶ alert_districts: DistrictRules (clock = min of the sources' watermarks;
                                    state: table ``alert-district-state``)
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
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import urbanbrain.rules
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from urbanbrain.rules import RuleSet, RuleWatcher, load_registry_csv
from urbanbrain.rules.silences import SilenceStore

from urbanbrain.influx import InfluxWriter
from urbanbrain.settings import Settings, comma_list

from .alert_stage import DistrictInterest, DistrictRules, SensorRules
from .alerting_outputs import AlertOutputs, AlertStore

log = logging.getLogger(__name__)

DEFAULT_RULES_PATH = Path(urbanbrain.rules.__file__).parent / "city"
DISTRICT_TOPIC_SUFFIX = "alerts-district-readings"


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
    state_checkpoint_s: float = Field(
        30.0, ge=0, description="write a partition's rule state (and its window marks) at "
        "most this often, and commit its input no further than the last write: Kafka "
        "Streams' commit interval. A crash, a stop or a rebalance re-reads up to this much "
        "of the input and evaluates it again (transitions already sent are not sent "
        "again); in exchange a sensor's state entry is written once per interval instead "
        "of once per reading (streams/README.md, docs/PERFORMANCE.md). 0: every batch")
    warmup_s: float = Field(
        7200.0, ge=0, description="warm start: a source partition with no rule state at all "
        "(a new deploy) first folds in this much of its sensors' raw history from InfluxDB "
        "(streams/warmup.py); 0: start cold")
    status_interval_s: float = Field(
        30.0, gt=0, description="how often each worker publishes pending, firing and "
        "warming-up keys per rule on alerts.rules (urbanbrain rules list)")
    district_step_s: float = Field(
        60.0, gt=0, description="event-time grid of district rule evaluation")
    idle_s: float = Field(
        30.0, gt=0, description="a source (partition) that sent nothing for this long is "
        "idle: a caught-up partition's rule clock then follows processing time, and an idle "
        "source no longer holds the district clock back")
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
        return comma_list(v)


class Alerting:
    """The worker's alerting: rule files (hot reloaded), the sensor and district rule
    stages over their state stores, and the outputs. Faust-free except for the stores
    and the alerts topic it is given."""

    def __init__(self, settings: Settings, writer: InfluxWriter, alerts_topic: Any, *,
                 sensor_store: Any, district_store: Any, own_writer: bool = False) -> None:
        from .settings import StreamsSettings

        ss = StreamsSettings.from_base(settings)
        self.cfg = cfg = AlertSettings()
        self.registry: dict[str, Mapping[str, Any]] = {}
        if settings.registry_path is not None:
            try:
                self.registry = load_registry_csv(settings.registry_path)
            except OSError as exc:
                log.warning("registry %s unreadable (%s): rules see readings only",
                            settings.registry_path, exc)
        # The registry is not given to the loader: its cross-checks (selectors matching no
        # sensor, unknown districts) are `urbanbrain rules check --registry` lint, not a
        # reason for a worker to refuse to start.
        self.watcher = RuleWatcher([str(p) for p in cfg.rules_path], None)
        log.info("alert rules: %d rules from %s", len(self.watcher.ruleset.rules),
                 ", ".join(map(str, cfg.rules_path)))
        n = settings.kafka_partitions
        self.silences = SilenceStore()

        def rules() -> RuleSet:
            return self.watcher.ruleset

        self.sensors = SensorRules(sensor_store, self.registry, rules, n,
                                   checkpoint_s=cfg.state_checkpoint_s, silences=self.silences,
                                   lateness_ms=int(ss.streams_lateness_s * 1000),
                                   idle_s=cfg.idle_s)
        self.districts = DistrictRules(district_store, self.registry, rules, n,
                                       checkpoint_s=cfg.state_checkpoint_s,
                                       silences=self.silences,
                                       step_ms=int(cfg.district_step_s * 1000))
        self.interest = DistrictInterest(n)
        self.districts.interest = self.interest
        self.outputs = AlertOutputs(settings, writer, alerts_topic,
                                    webhook_urls=cfg.webhook_urls,
                                    external_url=cfg.external_url, close_writer=own_writer)
        self.store = AlertStore(writer, self.outputs.sent)

    async def reload(self, app: Any) -> None:
        """Poll the rule files; on a change, swap the rule set in every live evaluator
        (alerts of removed or relabelled rules resolve)."""
        changed, err = self.watcher.poll()
        if err is not None:
            log.error("alert rules NOT reloaded, keeping the previous set: %s", err)
            return
        if not changed:
            return
        log.info("alert rules reloaded: %d rules", len(self.watcher.ruleset.rules))
        if app.rebalancing or app.in_recovery:
            return  # evaluators are rebuilt with the new set after the rebalance
        for stage in (self.sensors, self.districts):
            for source, partition, events in stage.reload(self.watcher.ruleset):
                await self.outputs.emit(events)
                stage.persist(source, partition)

def main() -> None:
    """``python -m urbanbrain.streams.alerting``: a worker that only evaluates rules
    (its own consumer group ``<id>-alerting``; no raw storage, no windows)."""
    from .app import run_worker

    run_worker(Settings(), alerting_only=True)


if __name__ == "__main__":
    main()
