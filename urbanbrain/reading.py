"""The normalised reading and the Kafka record that carries a batch of them.

A reading is a plain dict (a ``TypedDict``), not a class instance: ingest builds tens of
thousands per second and the streams side turns batches straight into numpy/pandas
columns, so an object per reading would be pure overhead.

One Kafka record carries many readings of **one partition** (see DESIGN.md, Throughput).
The partition of a sensor is Kafka's own murmur2 hash of its id, so a Java or Go producer
keyed by sensor id would land on the same partition, and Faust table state keyed by sensor
stays co-partitioned with the stream.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import orjson
from aiokafka.partitioner import murmur2

BATCH_VERSION = 1


class Reading(TypedDict):
    sensor_id: str
    domain: str
    kind: str
    district: str
    ts: int  # event time, ms since the epoch, UTC
    recv: int  # time ingest received it, ms since the epoch, UTC
    metrics: dict[str, float]
    lat: NotRequired[float | None]
    lon: NotRequired[float | None]
    flags: NotRequired[list[str]]  # e.g. ["unregistered"]
    # the MQTT topic it arrived on (crc32): one device or gateway, whose readings arrive
    # in order; a sensor's absence is judged against this source's event time, not
    # against faster sources sharing its partition
    src: NotRequired[int]


def encode_batch(readings: list[Reading]) -> bytes:
    """Serialise a batch for one Kafka record."""
    return orjson.dumps({"v": BATCH_VERSION, "readings": readings})


def decode_batch(value: bytes) -> list[Reading]:
    """Inverse of :func:`encode_batch`; raises ValueError on a foreign record."""
    doc: Any = orjson.loads(value)
    if not isinstance(doc, dict) or doc.get("v") != BATCH_VERSION:
        raise ValueError("not an urbanbrain reading batch (missing or unknown 'v')")
    readings = doc.get("readings")
    if not isinstance(readings, list):
        raise ValueError("reading batch without a 'readings' list")
    return readings


class Partitioner:
    """Stable sensor → partition mapping (Kafka's murmur2, as the Java client uses for keys).

    Cached per sensor id: the registry is bounded, and murmur2 in Python costs ~2 µs.
    """

    __slots__ = ("partitions", "_cache")

    def __init__(self, partitions: int) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self._cache: dict[str, int] = {}

    def __call__(self, sensor_id: str) -> int:
        p = self._cache.get(sensor_id)
        if p is None:
            h = murmur2(sensor_id.encode("utf-8"))
            p = (h & 0x7FFFFFFF) % self.partitions
            if len(self._cache) < 1_000_000:
                self._cache[sensor_id] = p
        return p
