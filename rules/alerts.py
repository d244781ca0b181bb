"""Alert events, their fingerprint, and the timestamp format notifications use.

The fingerprint is computed exactly as Prometheus/Alertmanager compute a label set's
(FNV-1a 64 over sorted ``name 0xff value 0xff``, printed as 16 hex digits): it depends
only on the labels (alertname included), so it is stable across restarts, workers and
rule-file edits that don't touch labels, and matches what Alertmanager would show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"
_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's label-set fingerprint (model.LabelSet.Fingerprint), hex."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for chunk in (name.encode(), b"\xff", str(labels[name]).encode(), b"\xff"):
            for byte in chunk:
                h ^= byte
                h = (h * _FNV_PRIME) & _MASK
    return f"{h:016x}"


def rfc3339(ms: int | None) -> str:
    """``2024-05-01T08:00:00.123Z``; None -> Alertmanager's zero time."""
    if ms is None:
        return ZERO_TIME
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


@dataclass(slots=True)
class AlertEvent:
    """A state transition worth telling someone about (emitted once per transition).

    ``silenced`` events are still returned (history, InfluxDB) but must not be notified.
    """

    status: str  # firing | resolved
    rule: str  # rule id: group/alert
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float | None
    starts_at: int  # ms: when the alert started firing... Prometheus: when it became active
    ends_at: int | None  # ms, set on resolved
    fingerprint: str
    generator_url: str = ""
    silenced: bool = False
    silenced_by: list[str] = field(default_factory=list)
    at: int = 0  # event time of the transition (ms)

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "none")

    @property
    def district(self) -> str:
        return self.labels.get("district", "")

    @property
    def notify(self) -> bool:
        return not self.silenced

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlertEvent:
        return cls(**dict(d))

    def to_alertmanager(self) -> dict[str, Any]:
        """One entry of a webhook payload's ``alerts`` (or an API v2 PostableAlert)."""
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(self.ends_at if self.status == "resolved" else None),
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }
