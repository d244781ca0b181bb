"""The one interface every payload format implements, and the registry that picks one.

Like Telegraf's parsers: each format is a folder under ``decoders/`` with its module, a
sample payload and a README; registering is one decorator; the bridge knows no format by
name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from urbanbrain.ingest.rejects import Reason, Reject


@dataclass(slots=True)
class DecodedReading:
    """What a decoder extracts from a payload, before enrichment and validation.

    ``metrics`` are already canonical names and units (see urbanbrain.metrics). Fields a
    format does not carry stay None and are filled from the topic and the registry.
    ``ts`` is event time in ms since the epoch (UTC), None if the payload has none.
    """

    sensor_id: str | None
    metrics: dict[str, float]
    ts: int | None = None
    domain: str | None = None
    kind: str | None = None
    district: str | None = None
    lat: float | None = None
    lon: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Decoder(ABC):
    """A payload format. Implementations must raise :class:`Reject`, never anything else."""

    name: ClassVar[str]
    #: Content types / topic hints are optional; ``sniff`` decides for mixed topics.
    priority: ClassVar[int] = 100

    @abstractmethod
    def sniff(self, doc: Any) -> bool:
        """Cheap check on the parsed JSON document: is this my format?"""

    @abstractmethod
    def decode(self, doc: Any, topic: str) -> list[DecodedReading]:
        """Readings in the document; raise Reject(SCHEMA/UNKNOWN_METRIC/...) otherwise."""


_REGISTRY: dict[str, type[Decoder]] = {}


def register(cls: type[Decoder]) -> type[Decoder]:
    """Class decorator: make a decoder available by its ``name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"decoder {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Decoder]]:
    return dict(_REGISTRY)


def pick(decoders: list[Decoder], doc: Any) -> Decoder:
    """The first decoder (by priority) whose sniff accepts ``doc``."""
    for dec in decoders:
        if dec.sniff(doc):
            return dec
    raise Reject(Reason.UNKNOWN_FORMAT, "no decoder recognises this payload")
