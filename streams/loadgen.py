"""Produce reading batches straight to Kafka, on the partition ingest would pick.

For window tests and the benchmark: explicit event times, exact control of what lands in
which record, no MQTT in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from urbanbrain.kafka import readings_topic
from urbanbrain.reading import Partitioner, Reading, encode_batch


def batches_by_partition(readings: Iterable[Reading], partitions: int, batch_size: int = 500
                         ) -> list[tuple[str, int, list[Reading]]]:
    """Group readings (order kept) into records of one topic/partition, like ingest does."""
    part = Partitioner(partitions)
    open_: dict[tuple[str, int], list[Reading]] = {}
    out: list[tuple[str, int, list[Reading]]] = []
    for r in readings:
        key = (readings_topic(r["domain"]), part(r["sensor_id"]))
        buf = open_.setdefault(key, [])
        buf.append(r)
        if len(buf) >= batch_size:
            out.append((key[0], key[1], buf))
            open_[key] = []
    out.extend((t, p, b) for (t, p), b in open_.items() if b)
    return out


async def produce(bootstrap: str, records: Sequence[tuple[str, int, list[Reading]]], *,
                  linger_ms: int = 5) -> int:
    """Send records (topic, partition, readings) in order; returns readings sent."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms,
                                max_request_size=8 * 1024 * 1024, acks="all")
    await producer.start()
    n = 0
    try:
        futs = []
        for topic, partition, batch in records:
            futs.append(await producer.send(topic, encode_batch(batch), partition=partition))
            n += len(batch)
            if len(futs) >= 200:
                await asyncio.gather(*futs)
                futs.clear()
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return n


def produce_sync(bootstrap: str, records: Sequence[tuple[str, int, list[Reading]]]) -> int:
    return asyncio.run(produce(bootstrap, records))


_METRICS = {
    "traffic": ("loop", ("vehicle_count", "speed_kmh", "occupancy_pct")),
    "environment": ("air", ("pm25_ugm3", "no2_ugm3", "o3_ugm3")),
    "water": ("main", ("pressure_kpa", "flow_ls")),
    "power": ("substation", ("voltage_kv", "frequency_hz", "load_mw")),
}
_BASE = {"vehicle_count": 8.0, "speed_kmh": 45.0, "occupancy_pct": 12.0, "pm25_ugm3": 14.0,
         "no2_ugm3": 35.0, "o3_ugm3": 60.0, "pressure_kpa": 420.0, "flow_ls": 30.0,
         "voltage_kv": 11.0, "frequency_hz": 50.0, "load_mw": 20.0}


def steady_readings(prefix: str, t0: int, *, sensors_per_domain: int, seconds: int,
                    period_s: int = 10, districts: int = 3,
                    domains: Sequence[str] = ("traffic", "environment", "water", "power"),
                    ) -> list[Reading]:
    """Every sensor reports every ``period_s`` from t0 for ``seconds``, in event-time order.
    Values are deterministic (no randomness: tests recompute them)."""
    out: list[Reading] = []
    for step in range(seconds // period_s):
        ts = t0 + step * period_s * 1000
        for domain in domains:
            kind, metrics = _METRICS[domain]
            for i in range(sensors_per_domain):
                wiggle = ((step * 7 + i * 3) % 11) / 10.0
                out.append({
                    "sensor_id": f"{prefix}-{domain[:2]}-{i:05d}", "domain": domain,
                    "kind": kind, "district": f"{prefix}-d{i % districts}", "ts": ts + i % 997,
                    "recv": ts, "metrics": {m: _BASE[m] + wiggle for m in metrics},
                })
    return out


def ticks(prefix: str, ts: int, partitions: int,
          domains: Sequence[str] = ("traffic", "environment", "water", "power")) -> list[Reading]:
    """One reading per (domain, partition) at ``ts``: advances every partition's watermark so
    that all earlier windows close (district ``<prefix>-tick``, so queries can leave it out)."""
    part = Partitioner(partitions)
    out: list[Reading] = []
    for domain in domains:
        kind, metrics = _METRICS[domain]
        found: dict[int, str] = {}
        j = 0
        while len(found) < partitions:
            sid = f"{prefix}-tick-{domain[:2]}-{j}"
            found.setdefault(part(sid), sid)
            j += 1
        for sid in found.values():
            out.append({"sensor_id": sid, "domain": domain, "kind": kind,
                        "district": f"{prefix}-tick", "ts": ts, "recv": ts,
                        "metrics": {metrics[0]: _BASE[metrics[0]]}})
    return out
