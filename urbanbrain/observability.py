"""Prometheus metrics of an urbanbrain process, read from the counters it already keeps.

Why a collector over callbacks instead of ``Counter.inc()`` calls on the hot paths: ingest
and the streams agents already count everything they do (``BridgeStats``,
``WriterStats``, ``StageStats``, the alert outputs' ``sent``) for their logs and for the
``pipeline`` measurement. Reading those same numbers at scrape time keeps one source of
truth (a metric cannot disagree with the log line), costs nothing per reading, and keeps
the metrics alive while InfluxDB is down, which is when an operator needs them.

Each process builds one :class:`Metrics` (its own ``CollectorRegistry``: two bridges in
one test process never collide), registers callbacks with :meth:`Metrics.counter` /
:meth:`Metrics.gauge`, and hands :meth:`Metrics.render` to
:class:`urbanbrain.health.HealthServer` as its ``/metrics`` renderer.
:meth:`Metrics.snapshot` gives the same values as a flat dict, which is what the pipeline's
own alert rules observe (:mod:`urbanbrain.rules.pipeline_watch`).

Metric names follow Prometheus conventions: ``urbanbrain_`` prefix, ``_total`` for
counters, base units (seconds, bytes) in the name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

#: A value, or {label values: value} for a labelled family; None: not known right now.
Value = float | int | None | Mapping[tuple[str, ...], float | int]
Source = Callable[[], Value]


@dataclass(frozen=True)
class _Family:
    name: str  # without the _total suffix for counters (prometheus_client adds it)
    help: str
    kind: str  # "counter" | "gauge"
    labels: tuple[str, ...]
    source: Source


class Metrics:
    """The metrics of one process; ``const_labels`` (e.g. ``stage="ingest"``) go on all."""

    def __init__(self, **const_labels: str) -> None:
        self.const = dict(const_labels)
        self.families: list[_Family] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def counter(self, name: str, help: str, source: Source,
                labels: tuple[str, ...] = ()) -> None:
        """A monotonically increasing count; ``name`` without ``_total``."""
        self.families.append(_Family(name.removesuffix("_total"), help, "counter", labels,
                                     source))

    def gauge(self, name: str, help: str, source: Source, labels: tuple[str, ...] = ()) -> None:
        self.families.append(_Family(name, help, "gauge", labels, source))

    def render(self) -> bytes:
        """Prometheus text exposition format (version 0.0.4)."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, float]:
        """Every current value as ``name`` or ``name{label=value,...}`` → float (counters
        without ``_total``), for rules that watch the process itself."""
        out: dict[str, float] = {}
        for fam, values in self._values():
            for labels, v in values.items():
                key = fam.name
                if labels:
                    key += "{" + ",".join(f"{k}={x}" for k, x in zip(fam.labels, labels)) + "}"
                out[key] = float(v)
        return out

    def _values(self) -> Iterator[tuple[_Family, dict[tuple[str, ...], float]]]:
        for fam in self.families:
            try:
                raw = fam.source()
            except Exception as exc:  # noqa: BLE001 - a metric must never break a scrape
                log.debug("metric %s unavailable: %r", fam.name, exc)
                continue
            if raw is None:
                continue
            if isinstance(raw, Mapping):
                values = {tuple(str(x) for x in k): float(v) for k, v in raw.items()
                          if v is not None}
            else:
                values = {(): float(raw)}
            yield fam, values


class _Collector:
    """Turns :class:`Metrics` families into prometheus_client metric families at scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        const = self.metrics.const
        names = tuple(const)
        for fam, values in self.metrics._values():
            labels = [*names, *fam.labels]
            cls = CounterMetricFamily if fam.kind == "counter" else GaugeMetricFamily
            mf = cls(f"urbanbrain_{fam.name}", fam.help, labels=labels)
            for lv, v in values.items():
                mf.add_metric([*const.values(), *lv], v)
            yield mf


def writer_metrics(metrics: Metrics, stats_of: Callable[[], object]) -> None:
    """InfluxDB writer counters (``urbanbrain.influx.WriterStats``): points, latency of the
    last batch, retries (each failed attempt: an outage shows as a climbing count) and
    authentication failures (a rotated password: no retry heals it)."""
    metrics.counter("influx_points_written", "points InfluxDB acknowledged",
                    lambda: stats_of().points)
    metrics.counter("influx_write_batches", "write requests InfluxDB acknowledged",
                    lambda: stats_of().batches)
    metrics.gauge("influx_write_seconds", "duration of the last acknowledged write request",
                  lambda: stats_of().last_batch_ms / 1000.0)
    metrics.counter("influx_write_retries", "failed write attempts retried (outage, 5xx)",
                    lambda: stats_of().retries)
    metrics.counter("influx_auth_failures", "writes refused with 401/403",
                    lambda: stats_of().auth_failures)
    metrics.counter("influx_lines_rejected", "lines InfluxDB refused (400) and dead-lettered",
                    lambda: stats_of().rejected)


def gc_metrics(metrics: Metrics) -> None:
    """Python's garbage collector, per generation: collections, the time they stopped the
    process, and the longest single pause (``urbanbrain.gctune``). A full collection walks
    the whole heap, so a worker holding a larger city pauses longer: when the longest
    generation-2 pause nears the latency budget, the thresholds no longer fit."""
    from urbanbrain import gctune

    p = gctune.pauses()

    def by_generation(values: list) -> Callable[[], Value]:
        return lambda: {(str(g),): v for g, v in enumerate(values)}

    gen = ("generation",)
    metrics.counter("gc_collections", "garbage collections, by generation",
                    by_generation(p.collections), labels=gen)
    metrics.counter("gc_pause_seconds", "time spent in garbage collections, by generation",
                    by_generation(p.seconds), labels=gen)
    metrics.gauge("gc_longest_pause_seconds", "the longest single collection since the "
                  "process started, by generation", by_generation(p.longest), labels=gen)
