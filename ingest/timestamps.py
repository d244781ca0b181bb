"""Event-time parsing shared by decoders: epoch numbers and ISO 8601 strings → ms UTC."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from urbanbrain.ingest.rejects import Reason, Reject


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the double range (Python's json makes those)
        return False


def ms_from_epoch_seconds(value: float) -> int:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not _finite(value):
        raise Reject(Reason.BAD_TIMESTAMP, f"timestamp {value!r} is not a finite number")
    return int(round(value * 1000.0))


def ms_from_iso(value: str) -> int:
    """ISO 8601 / RFC 3339; a timestamp without zone is refused (ambiguous)."""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError, TypeError) as exc:
        raise Reject(Reason.BAD_TIMESTAMP, f"unparseable timestamp {value!r}") from exc
    if dt.tzinfo is None:
        raise Reject(Reason.BAD_TIMESTAMP, f"timestamp {value!r} has no time zone")
    return int(dt.astimezone(timezone.utc).timestamp() * 1000)


def ms_from_any(value: object) -> int:
    """Integer/float → ms since the epoch; string → ISO 8601."""
    if isinstance(value, str):
        return ms_from_iso(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Reject(Reason.BAD_TIMESTAMP, f"timestamp of type {type(value).__name__}")
    if not _finite(value):
        raise Reject(Reason.BAD_TIMESTAMP, "timestamp is not a finite number")
    return int(value)
