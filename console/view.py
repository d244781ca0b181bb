"""The operators' view of the alerts, rebuilt from Kafka: one fold, used by the console
server (live) and by ``urbanbrain alerts``/``silences``/``rules list`` (read once).

Inputs, each a whole topic read from the beginning:

* ``alerts``: every transition the engine emitted (``AlertEvent.to_dict``): the latest
  one per fingerprint says whether the alert is firing, since when (its *episode*,
  ``starts_at``), with what value, and whether a silence muted its notification;
* ``alerts.audit``: operator actions (:class:`~.audit.AuditRecord`);
* ``alerts.silences``: the silences, exactly as the streams workers see them.

Order between the three topics is not guaranteed when they are read back, so nothing here
depends on it: actions are kept by (fingerprint, episode) and joined when asked, and a
resolve-by-hand is compared by time with the alert's latest transition.

**Resolve by hand.** The engine owns an alert's lifecycle: it fires while the condition
holds and resolves when it stops holding. An operator's "resolve" is a statement about the
*view*: this episode is dealt with (a sensor taken out of service, a fault fixed whose
sensor no longer reports, so an absence rule will never see it come back). It hides the
episode from the active list, keeps it in the recently-resolved list marked "resolved by
<user>", and is recorded in the audit trail. It does not tell the engine, which would
re-fire at once if it could be told while the condition holds. Any later transition of the
same alert (a new episode, or the notification that follows the end of a silence) shows it
again. To keep a condition that still holds quiet, silence it as well.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from urbanbrain.kafka import ALERTS_TOPIC, AUDIT_TOPIC, SILENCES_TOPIC
from urbanbrain.rules.silences import SilenceStore
from urbanbrain.streams.silence_feed import apply_silence_record

from .audit import AuditRecord

SEVERITY_RANK = {"critical": 3, "warning": 2, "info": 1}
RECENT_RESOLVED = 200
AUDIT_KEPT = 5000


def severity_rank(severity: str) -> int:
    return SEVERITY_RANK.get(severity, 0)


@dataclass(slots=True)
class Episode:
    """The latest transition of one alert (fingerprint)."""

    fingerprint: str
    rule: str
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float | None
    status: str
    starts_at: int
    ends_at: int | None
    at: int  # event time of the transition
    silenced: bool
    silenced_by: list[str]
    seen_ms: int  # Kafka record time of the latest transition (wall clock)
    transitions: int = 1

    @classmethod
    def from_event(cls, d: Mapping[str, Any], seen_ms: int) -> Episode:
        return cls(fingerprint=str(d["fingerprint"]), rule=str(d.get("rule", "")),
                   labels=dict(d.get("labels") or {}), annotations=dict(d.get("annotations") or {}),
                   value=d.get("value"), status=str(d["status"]), starts_at=int(d["starts_at"]),
                   ends_at=d.get("ends_at"), at=int(d.get("at") or 0),
                   silenced=bool(d.get("silenced")), silenced_by=list(d.get("silenced_by") or []),
                   seen_ms=seen_ms)


@dataclass
class Changes:
    """What one :meth:`AlertView.apply` changed, for live updates."""

    alerts: set[str] = field(default_factory=set)  # fingerprints
    audit: list[dict[str, Any]] = field(default_factory=list)
    silences: bool = False
    latest_ms: int = 0  # newest Kafka record time among the applied records

    def __bool__(self) -> bool:
        return bool(self.alerts or self.audit or self.silences)


class AlertView:
    """Active alerts with their acknowledgements, assignees, comments and silences."""

    def __init__(self) -> None:
        self.episodes: dict[str, Episode] = {}
        self.silences = SilenceStore()
        self.audit: deque[AuditRecord] = deque(maxlen=AUDIT_KEPT)
        self._acks: dict[tuple[str, int], AuditRecord] = {}
        self._assignees: dict[tuple[str, int], AuditRecord] = {}
        self._comments: dict[tuple[str, int], list[AuditRecord]] = {}
        self._resolved_by_hand: dict[tuple[str, int], AuditRecord] = {}
        self.skipped = 0  # records that were not what their topic promises

    # ---------------------------------------------------------------- folding
    def apply(self, records: Iterable[Any]) -> Changes:
        """Fold Kafka records (anything with topic, key, value, timestamp)."""
        ch = Changes()
        for r in records:
            ch.latest_ms = max(ch.latest_ms, int(r.timestamp or 0))
            if r.topic == ALERTS_TOPIC:
                fp = self._apply_alert(r.value, int(r.timestamp or 0))
                if fp:
                    ch.alerts.add(fp)
            elif r.topic == AUDIT_TOPIC:
                rec = self._apply_audit(r.value)
                if rec is not None:
                    ch.audit.append(rec.to_dict())
                    if rec.action in ("ack", "unack", "assign", "comment", "resolve"):
                        ch.alerts.add(rec.target)
            elif r.topic == SILENCES_TOPIC:
                if apply_silence_record(self.silences, r.key, r.value):
                    ch.silences = True
                else:
                    self.skipped += 1
        return ch

    def _apply_alert(self, raw: bytes | None, seen_ms: int) -> str | None:
        try:
            ev = Episode.from_event(orjson.loads(raw or b""), seen_ms)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.skipped += 1
            return None
        old = self.episodes.get(ev.fingerprint)
        if old is not None and old.seen_ms > ev.seen_ms:
            return None  # an older transition read late: the newer one stands
        if old is not None and old.starts_at == ev.starts_at:
            ev.transitions = old.transitions + 1
        self.episodes[ev.fingerprint] = ev
        return ev.fingerprint

    def _apply_audit(self, raw: bytes | None) -> AuditRecord | None:
        try:
            rec = AuditRecord.from_dict(orjson.loads(raw or b""))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.skipped += 1
            return None
        self.audit.append(rec)
        if rec.starts_at is None:
            return rec
        key = (rec.target, rec.starts_at)
        if rec.action == "ack":
            self._acks[key] = rec
        elif rec.action == "unack":
            self._acks.pop(key, None)
        elif rec.action == "assign":
            self._assignees[key] = rec
        elif rec.action == "comment":
            self._comments.setdefault(key, []).append(rec)
        elif rec.action == "resolve":
            self._resolved_by_hand[key] = rec
        return rec

    # ---------------------------------------------------------------- queries
    def resolved_by_hand(self, ep: Episode) -> AuditRecord | None:
        """The operator's resolve of this episode, unless the engine spoke after it."""
        rec = self._resolved_by_hand.get((ep.fingerprint, ep.starts_at))
        return rec if rec is not None and rec.at >= ep.seen_ms else None

    def is_active(self, ep: Episode) -> bool:
        return ep.status == "firing" and self.resolved_by_hand(ep) is None

    def silenced_now(self, ep: Episode, now_ms: int) -> list[str]:
        """Silences muting this alert at ``now_ms`` (wall clock): what the engine will
        apply at its next evaluation; ``ep.silenced`` says what it applied last time."""
        return self.silences.matching(ep.labels, now_ms)

    def alert(self, fingerprint: str, now_ms: int) -> dict[str, Any] | None:
        ep = self.episodes.get(fingerprint)
        return None if ep is None else self.describe(ep, now_ms)

    def describe(self, ep: Episode, now_ms: int) -> dict[str, Any]:
        key = (ep.fingerprint, ep.starts_at)
        ack = self._acks.get(key)
        assignee = self._assignees.get(key)
        by_hand = self.resolved_by_hand(ep)
        return {
            "fingerprint": ep.fingerprint, "rule": ep.rule, "alertname": ep.labels.get("alertname", ""),
            "severity": ep.labels.get("severity", "none"), "labels": ep.labels,
            "annotations": ep.annotations, "value": ep.value, "status": ep.status,
            "active": self.is_active(ep), "starts_at": ep.starts_at, "ends_at": ep.ends_at,
            "at": ep.at, "seen_ms": ep.seen_ms, "notified_silenced": ep.silenced,
            "silenced_by": self.silenced_now(ep, now_ms),
            "acked_by": ack.user if ack else None, "acked_at": ack.at if ack else None,
            "assignee": (assignee.text or None) if assignee else None,
            "comments": [{"user": c.user, "at": c.at, "text": c.text}
                         for c in self._comments.get(key, [])],
            "resolved_by_hand": ({"user": by_hand.user, "at": by_hand.at, "text": by_hand.text}
                                 if by_hand else None),
        }

    def active(self, now_ms: int) -> list[dict[str, Any]]:
        """Firing alerts, most severe and newest first."""
        out = [self.describe(ep, now_ms) for ep in self.episodes.values() if self.is_active(ep)]
        out.sort(key=lambda a: (-severity_rank(a["severity"]), -a["starts_at"], a["fingerprint"]))
        return out

    def recent_resolved(self, now_ms: int, limit: int = RECENT_RESOLVED) -> list[dict[str, Any]]:
        def when(ep: Episode) -> int:
            hand = self.resolved_by_hand(ep)
            return hand.at if hand is not None else ep.seen_ms

        eps = [ep for ep in self.episodes.values() if not self.is_active(ep)]
        eps.sort(key=lambda e: -when(e))
        return [self.describe(ep, now_ms) for ep in eps[:limit]]

    def find(self, ident: str) -> Episode | None:
        """An alert by fingerprint or by a unique fingerprint prefix (as the CLI shows)."""
        if ident in self.episodes:
            return self.episodes[ident]
        hits = [ep for fp, ep in self.episodes.items() if fp.startswith(ident)]
        return hits[0] if len(hits) == 1 else None

    def silence_list(self, now_ms: int) -> list[dict[str, Any]]:
        """Silences, active first (by end), then pending, then expired (newest first)."""
        out = []
        for s in self.silences:
            state = ("active" if s.active(now_ms) else
                     "pending" if s.starts_at > now_ms else "expired")
            d = s.to_dict()
            d["state"] = state
            d["alerts"] = sorted(ep.fingerprint for ep in self.episodes.values()
                                 if self.is_active(ep) and s.matches(ep.labels, now_ms))
            out.append(d)
        order = {"active": 0, "pending": 1, "expired": 2}
        out.sort(key=lambda d: (order[d["state"]],
                                d["ends_at"] if d["state"] != "expired" else -d["ends_at"]))
        return out

    def audit_list(self, target: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        recs = [r for r in self.audit if target is None or r.target == target]
        return [r.to_dict() for r in recs[-limit:]][::-1]

    def worst_by(self, label: str, now_ms: int) -> dict[str, dict[str, Any]]:
        """Per label value (sensor, district): the worst active alert's severity, counts,
        and whether every alert there is silenced or acknowledged (how the map colours)."""
        out: dict[str, dict[str, Any]] = {}
        for ep in self.episodes.values():
            if not self.is_active(ep):
                continue
            value = ep.labels.get(label)
            if not value:
                continue
            d = out.setdefault(value, {"severity": "none", "firing": 0, "muted": 0})
            sev = ep.labels.get("severity", "none")
            if severity_rank(sev) > severity_rank(d["severity"]):
                d["severity"] = sev
            d["firing"] += 1
            key = (ep.fingerprint, ep.starts_at)
            if self.silenced_now(ep, now_ms) or key in self._acks:
                d["muted"] += 1
        return out

    def counts(self, now_ms: int) -> dict[str, int]:
        active = [ep for ep in self.episodes.values() if self.is_active(ep)]
        return {
            "firing": len(active),
            "critical": sum(ep.labels.get("severity") == "critical" for ep in active),
            "acked": sum((ep.fingerprint, ep.starts_at) in self._acks for ep in active),
            "silenced": sum(bool(self.silenced_now(ep, now_ms)) for ep in active),
            "silences": sum(s.active(now_ms) for s in self.silences),
        }

    def firing_by_rule(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for ep in self.episodes.values():
            if self.is_active(ep):
                out[ep.rule] = out.get(ep.rule, 0) + 1
        return out

    def fired_by_rule(self) -> dict[str, int]:
        """Episodes seen per rule (firing or since resolved): which rules ever fired."""
        out: dict[str, int] = {}
        for ep in self.episodes.values():
            out[ep.rule] = out.get(ep.rule, 0) + 1
        return out


async def read_view(settings: Any, timeout_s: float = 30.0) -> AlertView:
    """The view as of now, read once from Kafka (the CLI's way in)."""
    from urbanbrain.kafka import TopicReader

    view = AlertView()
    async with TopicReader(settings, [ALERTS_TOPIC, AUDIT_TOPIC, SILENCES_TOPIC]) as reader:
        view.apply(await reader.catch_up(timeout_s))
    return view
