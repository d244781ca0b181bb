"""Decode each readings record once, although two agents consume it.

``store_readings`` and ``alert_sensors`` subscribe to the same topics (separate agents, so
storage never waits for rule evaluation and an alerting-only worker can run the second
alone). Each would ``orjson.loads`` every record: after the changelog fix, decoding was
the worker's largest single cost. Whichever agent meets a record first decodes it and
leaves the result here for the other, keyed by (topic, partition, offset).

Bounded by readings held: when one agent runs far behind the other, entries are evicted
oldest first and the late agent simply decodes again. Consumers must not mutate readings.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from urbanbrain.reading import Reading, decode_batch


class DecodedBatches:
    def __init__(self, consumers: int = 2, max_readings: int = 200_000) -> None:
        self.consumers = consumers
        self.max_readings = max_readings
        self._held = 0
        self._entries: OrderedDict[tuple[str, int, int], list[Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, topic: str, partition: int, offset: int, value: bytes) -> list[Reading]:
        """The readings of a record; raises ValueError (not cached) like ``decode_batch``."""
        key = (topic, partition, offset)
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            entry[1] -= 1
            if entry[1] <= 0:
                del self._entries[key]
                self._held -= len(entry[0])
            return entry[0]
        self.misses += 1
        readings = decode_batch(value)
        if self.consumers > 1:
            self._entries[key] = [readings, self.consumers - 1]
            self._held += len(readings)
            while self._held > self.max_readings and self._entries:
                _, (old, _) = self._entries.popitem(last=False)
                self._held -= len(old)
        return readings
