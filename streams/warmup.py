"""Warm start: a new deploy alerts on day one.

Rule windows and baselines (time-of-day, EWMA, z-score) are state the worker builds from
the readings it sees; a fresh worker would be blind for as long as the rules look back
(hours; days for time-of-day baselines). The readings of that past are in InfluxDB: the
worker stored them (or ``urbanbrain rules warmup`` loaded them from a recording). So the
first time a worker evaluates a source partition that has **no rule state at all** (a
new deploy, a new consumer group; never after a restart or a rebalance, whose state comes
back from the changelog), it reads that partition's sensors' raw points of the
``URBANBRAIN_ALERT_WARMUP_S`` before the partition's first reading from InfluxDB and folds
them into the rule state *without evaluating them*: no alert is raised for the past. The
district evaluators get the same readings through the district forwards (marked warm).

The backtest does the same with its history (``--history warmup``), over the same span,
so live and in-process alerts agree.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from urbanbrain.rules import RuleSet

from urbanbrain.influx import InfluxError, InfluxWriter
from urbanbrain.metrics import METRICS
from urbanbrain.reading import Partitioner
from urbanbrain.retention import RAW

log = logging.getLogger(__name__)


def rule_metrics(rs: RuleSet, domain: str) -> list[str]:
    """The raw metrics of ``domain`` the rules read (the fields worth loading)."""
    names = set(rs.retention_ms())
    for r in rs.rules:
        m = getattr(r.condition, "metric", None)
        if m:
            names.add(m)
    return sorted(n for n in names if n in METRICS and METRICS[n].domain == domain)


def rows_to_readings(domain: str, tags: Mapping[str, str], columns: list[str],
                     values: Iterable[list]) -> list[dict[str, Any]]:
    """InfluxDB rows of a ``<domain>`` series → reading dicts (time ms, fields as metrics)."""
    out = []
    idx = [(i, c) for i, c in enumerate(columns) if c not in ("time", "sensor", "district",
                                                               "kind")]
    ti = columns.index("time")
    col = {c: i for i, c in enumerate(columns)}
    for row in values:
        sensor = tags.get("sensor") or (row[col["sensor"]] if "sensor" in col else None)
        if sensor is None:
            continue
        metrics = {c: float(row[i]) for i, c in idx
                   if isinstance(row[i], (int, float)) and not isinstance(row[i], bool)}
        out.append({
            "sensor_id": sensor, "ts": int(row[ti]), "domain": domain,
            "kind": tags.get("kind") or (row[col["kind"]] if "kind" in col else None),
            "district": tags.get("district") or (row[col["district"]] if "district" in col
                                                 else None),
            "metrics": metrics,
        })
    return out


class WarmStart:
    """Reads the history a fresh partition's rules need from InfluxDB (see module)."""

    def __init__(self, writer: InfluxWriter, partitions: int, span_ms: int) -> None:
        self.writer = writer
        self.part = Partitioner(partitions)
        self.span_ms = span_ms
        self.stats: dict[str, float] = {"queries": 0, "points": 0, "seconds": 0.0}

    async def history(self, rs: RuleSet, domain: str, partitions: set[int], until_ms: int,
                      ) -> dict[int, list[dict[str, Any]]]:
        """Raw readings of ``domain`` in ``[until - span, until)`` of the sensors on
        ``partitions``, per partition, in time order. An unreachable InfluxDB gives
        nothing (and a warning): the worker starts cold rather than not at all."""
        out: dict[int, list[dict[str, Any]]] = {p: [] for p in partitions}
        if self.span_ms <= 0 or not partitions:
            return out
        fields = rule_metrics(rs, domain)
        sel = ", ".join(f'"{f}"' for f in fields) if fields else "*"
        q = (f'SELECT {sel} FROM "{RAW}"."{domain}" '
             f"WHERE time >= {until_ms - self.span_ms}ms AND time < {until_ms}ms "
             "GROUP BY sensor, district, kind")
        t0 = time.perf_counter()
        n = 0
        try:
            async for _, tags, columns, values in self.writer.query_rows(q):
                p = self.part(tags.get("sensor", ""))
                if p not in out:
                    continue
                rs_ = rows_to_readings(domain, tags, columns, values)
                out[p] += rs_
                n += len(rs_)
        except (InfluxError, OSError, TimeoutError) as exc:
            log.warning("warm start of %s skipped, InfluxDB not read: %s", domain, exc)
            return {p: [] for p in partitions}
        dt = time.perf_counter() - t0
        self.stats["queries"] += 1
        self.stats["points"] += n
        self.stats["seconds"] += dt
        for v in out.values():
            v.sort(key=lambda r: r["ts"])
        log.info("warm start: %d %s readings of the %.0f min before %d for partitions %s "
                 "in %.2f s", n, domain, self.span_ms / 60_000, until_ms, sorted(partitions), dt)
        return out


async def backfill(settings: Any, readings: Iterable[Mapping[str, Any]], *,
                   chunk: int = 50_000) -> int:
    """Store readings as the worker's raw points (the same line encoder), so that a
    worker's warm start finds them: ``urbanbrain rules warmup`` from a recording. Returns
    the points written; refused lines raise (a recording is ours, not a device's)."""
    from urbanbrain.lineprotocol import ReadingLineEncoder

    encoder = ReadingLineEncoder()
    batch: list[Mapping[str, Any]] = []
    written = 0
    async with InfluxWriter(settings) as writer:
        await writer.check()

        async def flush() -> None:
            nonlocal written
            lines, bad = encoder.encode(batch)
            refused = await writer.write(lines)
            if bad or refused:
                why = (bad or refused)[0][1]
                raise InfluxError(f"{len(bad) + len(refused)} warm-up points refused: {why}")
            written += len(lines)
            batch.clear()

        for r in readings:
            batch.append(r)
            if len(batch) >= chunk:
                await flush()
        if batch:
            await flush()
    return written
