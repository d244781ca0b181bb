"""Payload format plugins. Importing this package registers every format it ships.

A new format is a sub-package here with a ``@register``-ed :class:`Decoder`; add its import
below and :func:`all_decoders` hands it to the bridge, in priority order.
"""

from __future__ import annotations

from urbanbrain.ingest.decoders import fiware as _fiware  # noqa: F401  (registers itself)
from urbanbrain.ingest.decoders import json_reading as _json_reading  # noqa: F401
from urbanbrain.ingest.decoders import senml as _senml  # noqa: F401
from urbanbrain.ingest.decoders.base import DecodedReading, Decoder, pick, registered

__all__ = ["DecodedReading", "Decoder", "all_decoders", "pick", "registered"]


def all_decoders() -> list[Decoder]:
    """One instance of every registered decoder, lowest ``priority`` first (ties by name)."""
    classes = sorted(registered().values(), key=lambda cls: (cls.priority, cls.name))
    return [cls() for cls in classes]
