"""Settings of the streams room, on top of the shared :class:`urbanbrain.settings.Settings`.

Kept here (not in urbanbrain/settings.py) so the streams room can add knobs without touching
shared code; every field is read from ``URBANBRAIN_STREAMS_*`` like the rest.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from urbanbrain.settings import Settings


class StreamsSettings(Settings):
    """Window, roll-up and index parameters of the Faust app."""

    streams_lateness_s: float = Field(
        120.0, ge=0, description="allowed lateness: a 1-min pane closes when the partition's "
        "max event time passes its end by this much; later readings are dead-lettered 'late'",
    )
    streams_hop_panes: int = Field(
        5, ge=1, description="the hopping window spans this many 1-min panes (5 = 5 min / 1 min)"
    )
    streams_rollup_grace_s: float = Field(
        10.0, ge=0, description="processing-time wait for the partials of all source partitions "
        "before a district roll-up is written without the missing (idle) ones",
    )
    streams_rollup_retention_s: float = Field(
        3600.0, gt=0, description="event-time span of roll-up partials kept, so a late partition "
        "corrects its roll-up instead of overwriting it with a partial one",
    )
    streams_max_empty_panes: int = Field(
        60, ge=0, description="after a jump in event time, emit empty roll-up partials for at "
        "most this many panes",
    )
    streams_default_road_class: str = Field(
        "arterial", description="road class of a traffic sensor the registry does not know"
    )
    streams_aqi_cn_edition: Literal["auto", "2012", "2026"] = Field(
        "auto", description="China AQI edition: 'auto' follows each window's event time "
        "(HJ 633-2026 from 2026-03-01 00:00 UTC+8, HJ 633-2012 before); '2012' or '2026' "
        "pins one edition for every window (e.g. to compare a replay with old reports)",
    )
    streams_nominal_kv: float = Field(
        11.0, gt=0, description="nominal voltage of a substation whose registry row has no "
        "nominal_kv (the registry's value wins)")
    streams_nominal_hz: float = Field(50.0, gt=0, description="nominal grid frequency")
    streams_report_interval_s: float = Field(
        5.0, gt=0, description="how often the worker writes its ``pipeline`` point"
    )
    streams_windows: bool = Field(
        True, description="windows, indices and roll-ups; false: raw points and alert rules "
        "only (an edge or archive deployment, and the Node-RED-equivalent bench flow)",
    )
    streams_aggregates: Literal["all", "1m", "off"] = Field(
        "all", description="which closed windows go to the ``aggregates`` topic: ``all`` "
        "(1-min and hopping), ``1m`` (tumbling only: a consumer can merge hops itself), "
        "``off``. Nothing in urbanbrain reads the topic; it is for downstream consumers, and "
        "it is the largest Kafka output (every sensor's hopping window every minute: 78 % of "
        "the bytes of a one-day replay, 18x its readings; docs/SCALING.md)",
    )
    streams_sensor_hops: Literal["all", "aligned"] = Field(
        "aligned", description="which hopping windows of each sensor are stored in "
        "``agg_sensor_5m``: ``all`` (one every minute) or ``aligned`` (those that start on a "
        "multiple of their length: one every 5 min, which is what the dashboards' 5-min "
        "buckets read). Index points, the ``aggregates`` topic and the rules keep every hop. "
        "influxd's CPU grows with the fields it is sent, ~2.5 us each, and a sensor's hop "
        "point has 5 per metric: ``aligned`` cuts the window fields stored by 40 % "
        "(docs/PERFORMANCE.md)",
    )
    streams_raw_points: Literal["worker", "own-group"] = Field(
        "worker", description="who stores each reading as a raw point: ``worker`` (the "
        "streams worker, in its readings batch) or ``own-group`` (``urbanbrain streams "
        "store-raw``, a consumer group of its own, in its own process: storage no longer "
        "waits behind windows and rules, and runs on another core or machine; the worker "
        "then skips raw points; streams/raw_store.py)",
    )
    streams_take_records: int = Field(200, ge=1, description="Kafka records per agent batch")
    streams_take_within_s: float = Field(0.2, gt=0, description="max wait to fill a batch")
    streams_fetch_stall_s: float = Field(
        30.0, gt=0, description="a readings partition with records left in Kafka that "
        "Faust no longer fetches, while the readings agent has waited this long with no "
        "batch, is fetched again (with a warning); the broker's end offsets are asked for "
        "every sixth of it")
    streams_batch_warn_s: float = Field(
        90.0, ge=0, description="a batch still running after this long logs where it waits "
        "(the stack of its awaits), again as often, until it ends; 0: never")
    streams_yield_readings: int = Field(
        5000, ge=1, description="a partition's records in a batch go through the stages in "
        "runs of at most this many readings, with the event loop free between runs: a "
        "catch-up batch of full records must not hold heartbeats and timers for tens of "
        "seconds (the outputs of all runs still share one durable cycle)",
    )

    @classmethod
    def from_base(cls, base: Settings) -> StreamsSettings:
        """Our settings with the shared ones taken from ``base`` (streams fields from env)."""
        if isinstance(base, cls):
            return base
        return cls(**{k: getattr(base, k) for k in Settings.model_fields})
