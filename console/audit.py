"""The audit trail: one record per operator action, on the append-only ``alerts.audit``.

A record keeps who (the authenticated user and the role they acted with), when (wall clock
ms), what (``action`` on ``target``: an alert fingerprint or a silence id) and why
(``text``). For actions on an alert, ``starts_at`` names the alert's episode: an
acknowledgement or an assignee belongs to one firing episode, and a later episode of the
same alert (same labels, so the same fingerprint) starts unacknowledged.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

#: Actions on an alert (target = fingerprint) and on a silence (target = silence id).
ALERT_ACTIONS = ("ack", "unack", "assign", "comment", "resolve")
SILENCE_ACTIONS = ("silence", "expire")
ACTIONS = ALERT_ACTIONS + SILENCE_ACTIONS


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    action: str
    target: str
    user: str
    role: str
    text: str = ""
    at: int = field(default_factory=now_ms)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    starts_at: int | None = None  # the alert episode acted on (alert actions)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r} (one of {', '.join(ACTIONS)})")
        if not self.target:
            raise ValueError("an audit record needs a target")
        if not self.user:
            raise ValueError("an audit record needs a user")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditRecord:
        return cls(action=str(d["action"]), target=str(d["target"]), user=str(d["user"]),
                   role=str(d.get("role", "")), text=str(d.get("text") or ""),
                   at=int(d["at"]), id=str(d.get("id") or uuid.uuid4().hex[:16]),
                   starts_at=None if d.get("starts_at") is None else int(d["starts_at"]))
