"""Silences from Kafka into the worker's shared :class:`SilenceStore`.

The operations console and ``urbanbrain alerts silence`` write silences to the compacted
topic ``alerts.silences`` (key = silence id, value = ``Silence.to_dict()`` JSON, a tombstone
deletes, expiring = the same silence put again with ``ends_at`` = now). Every worker reads
the whole topic from the beginning, without a consumer group (each worker needs every
silence, not a share of them), into one store that all its evaluators share, so a silence
reaches every partition's alerts at once and survives restarts of anything.

On start the feed reads up to the current end of the topic *before* the worker's agents
run, so a restarted worker does not notify alerts that an existing silence mutes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from mode import Service
from urbanbrain.rules.silences import Silence, SilenceStore

from urbanbrain.kafka import SILENCES_TOPIC, TopicReader
from urbanbrain.settings import Settings

log = logging.getLogger(__name__)


def apply_silence_record(store: SilenceStore, key: bytes | None, value: bytes | None) -> bool:
    """Apply one ``alerts.silences`` record; False (and a log line) for a record that is not
    a silence, which is skipped rather than stopping the feed. Shared with the console."""
    if key is None:
        log.warning("alerts.silences record without a key skipped")
        return False
    if value is None:
        store.remove(key.decode("utf-8", "replace"))
        return True
    try:
        silence = Silence.from_dict(orjson.loads(value))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        log.warning("alerts.silences record %r skipped: %s", key[:64], exc)
        return False
    store.put(silence)
    return True


class SilenceFeed(Service):
    """Keeps ``store`` equal to the ``alerts.silences`` topic. ``app.service(feed)``."""

    def __init__(self, settings: Settings, store: SilenceStore, *,
                 start_timeout_s: float = 30.0, **kwargs: Any) -> None:
        self.settings = settings
        self.store = store
        self.start_timeout_s = start_timeout_s
        self.applied = 0
        self._reader: TopicReader | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self._reader = TopicReader(self.settings, [SILENCES_TOPIC])
        await self._reader.start()
        try:
            records = await self._reader.catch_up(self.start_timeout_s)
        except TimeoutError as exc:  # go on: the task below keeps reading
            log.warning("silences: %s; alerts may be notified until it has", exc)
            records = []
        for r in records:
            self.applied += apply_silence_record(self.store, r.key, r.value)
        log.info("silences: %d loaded from %s", len(self.store), SILENCES_TOPIC)

    async def on_stop(self) -> None:
        if self._reader is not None:
            await self._reader.stop()

    @Service.task
    async def _follow(self) -> None:
        while not self.should_stop:
            assert self._reader is not None
            try:
                records = await self._reader.poll(1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broker hiccup must not end the feed
                log.warning("silences: reading %s failed (%s); retrying", SILENCES_TOPIC, exc)
                await asyncio.sleep(1.0)
                continue
            for r in records:
                self.applied += apply_silence_record(self.store, r.key, r.value)
            if records:
                log.info("silences: %d record(s) applied, %d silence(s) known",
                         len(records), len(self.store))
