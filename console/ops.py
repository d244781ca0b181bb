"""Operator actions as Kafka records: the one write path of the console and the CLI.

A silence is a record on ``alerts.silences`` (key = id, value = ``Silence.to_dict()``),
which every streams worker applies; expiring it puts it again with ``ends_at`` = now
(Alertmanager keeps expired silences too). Every action, silences included, is also an
:class:`~.audit.AuditRecord` on ``alerts.audit``. Who may do what is decided by the caller
(the console's roles, the CLI's Kafka credentials); this module only writes, and only
after validating what it writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from urbanbrain.kafka import AUDIT_TOPIC, SILENCES_TOPIC, client_options
from urbanbrain.rules.silences import Silence
from urbanbrain.settings import Settings

from .audit import AuditRecord, now_ms


class Operations:
    """Writes silences and audit records; ``async with Operations(settings) as ops``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        # acks=all: an action the operator saw accepted is on the broker.
        self._producer = AIOKafkaProducer(**client_options(self.settings), acks="all",
                                          enable_idempotence=False)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> Operations:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def record(self, rec: AuditRecord) -> AuditRecord:
        await self._producer.send_and_wait(AUDIT_TOPIC, orjson.dumps(rec.to_dict()),
                                           key=rec.target.encode())
        return rec

    async def alert_action(self, action: str, fingerprint: str, starts_at: int, *, user: str,
                           role: str, text: str = "") -> AuditRecord:
        """ack, unack, assign (text = assignee, "" unassigns), comment, resolve."""
        if action not in ("ack", "unack", "assign", "comment", "resolve"):
            raise ValueError(f"not an alert action: {action!r}")
        if action == "comment" and not text.strip():
            raise ValueError("a comment needs text")
        return await self.record(AuditRecord(action, fingerprint, user, role, text.strip(),
                                             starts_at=starts_at))

    async def silence(self, matchers: Iterable[str], *, ends_at: int, user: str, role: str,
                      comment: str, starts_at: int | None = None) -> Silence:
        """Create a silence (Alertmanager matchers, e.g. ``alertname="SlowTraffic"``)."""
        start = now_ms() if starts_at is None else int(starts_at)
        if not comment.strip():
            raise ValueError("a silence needs a comment: say why")
        s = Silence.create(list(matchers), start, int(ends_at), created_by=user,
                           comment=comment.strip())
        await self._put(s)
        await self.record(AuditRecord("silence", s.id, user, role,
                                      f"{' '.join(str(m) for m in s.matchers)} until "
                                      f"{s.ends_at}: {s.comment}"))
        return s

    async def expire(self, silence: Silence, *, user: str, role: str, text: str = "") -> Silence:
        """End a silence now (kept, with its new end, for the record)."""
        at = now_ms()
        ended = Silence(silence.matchers, silence.starts_at, max(silence.starts_at + 1, at),
                        silence.id, silence.created_by, silence.comment)
        await self._put(ended)
        await self.record(AuditRecord("expire", silence.id, user, role, text.strip()))
        return ended

    async def _put(self, s: Silence) -> None:
        await self._producer.send_and_wait(SILENCES_TOPIC, orjson.dumps(s.to_dict()),
                                           key=s.id.encode())
