"""Silences: time-boxed label matchers that mute notifications, never state.

Same semantics as Alertmanager: matchers ``=``, ``!=``, ``=~``, ``!~``; regexes are fully
anchored; a silence applies from ``starts_at`` (inclusive) to ``ends_at`` (exclusive); a
label that is absent has the value "". Silenced alerts keep their lifecycle (pending,
firing, resolved) so that when the silence ends a still-firing alert is notified then.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_MATCHER = re.compile(
    r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(.*?))\s*$'
)


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str

    def __post_init__(self) -> None:
        if self.op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"bad matcher operator {self.op!r}")
        if self.op in ("=~", "!~"):
            re.compile(self.value)

    @classmethod
    def parse(cls, text: str | Mapping[str, Any]) -> Matcher:
        """``severity="critical"``, ``district=~"north|south"`` or an API v2 dict."""
        if isinstance(text, Mapping):
            is_re = bool(text.get("isRegex"))
            is_eq = bool(text.get("isEqual", True))
            op = ("=~" if is_eq else "!~") if is_re else ("=" if is_eq else "!=")
            return cls(str(text["name"]), op, str(text["value"]))
        m = _MATCHER.match(text)
        if not m:
            raise ValueError(f'bad matcher {text!r} (expected e.g. severity="critical")')
        value = m.group(3) if m.group(3) is not None else m.group(4)
        if m.group(3) is not None:
            value = re.sub(r"\\(.)", lambda x: {"n": "\n"}.get(x.group(1), x.group(1)), value)
        return cls(m.group(1), m.group(2), value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = re.fullmatch(self.value, v) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


@dataclass(frozen=True)
class Silence:
    matchers: tuple[Matcher, ...]
    starts_at: int  # ms
    ends_at: int  # ms
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_by: str = ""
    comment: str = ""

    def __post_init__(self) -> None:
        if not self.matchers:
            raise ValueError("a silence needs at least one matcher")
        if self.ends_at <= self.starts_at:
            raise ValueError("a silence must end after it starts")

    @classmethod
    def create(
        cls, matchers: Iterable[str | Mapping | Matcher], starts_at: int, ends_at: int, **kw: Any
    ) -> Silence:
        ms = tuple(m if isinstance(m, Matcher) else Matcher.parse(m) for m in matchers)
        return cls(ms, int(starts_at), int(ends_at), **kw)

    def active(self, now_ms: int) -> bool:
        return self.starts_at <= now_ms < self.ends_at

    def matches(self, labels: Mapping[str, str], now_ms: int) -> bool:
        return self.active(now_ms) and all(m.matches(labels) for m in self.matchers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Silence:
        return cls.create(
            d["matchers"],
            d["starts_at"],
            d["ends_at"],
            id=d.get("id") or uuid.uuid4().hex[:12],
            created_by=d.get("created_by", ""),
            comment=d.get("comment", ""),
        )


class SilenceStore:
    """The silences the engine consults, by id: one store may be shared by every evaluator
    of a worker and fed from outside (the operations console and ``urbanbrain silences``
    publish to the ``alerts.silences`` topic; a worker-side feed applies them here), so a
    silence reaches every partition's alerts at once and survives restarts in Kafka."""

    def __init__(self, silences: Iterable[Silence] = ()) -> None:
        self._by_id: dict[str, Silence] = {s.id: s for s in silences}
        #: bumped on every change, so holders of derived state know when to refresh it
        self.version = 0

    def put(self, silence: Silence) -> None:
        self._by_id[silence.id] = silence
        self.version += 1

    def remove(self, silence_id: str) -> None:
        if self._by_id.pop(silence_id, None) is not None:
            self.version += 1

    def get(self, silence_id: str) -> Silence | None:
        return self._by_id.get(silence_id)

    def expire(self, silence_id: str, now_ms: int) -> Silence | None:
        """End a silence now (kept, for the record, as Alertmanager keeps expired ones)."""
        s = self._by_id.get(silence_id)
        if s is None:
            return None
        ended = Silence(s.matchers, s.starts_at, max(s.starts_at + 1, int(now_ms)), s.id,
                        s.created_by, s.comment)
        self.put(ended)
        return ended

    def matching(self, labels: Mapping[str, str], now_ms: int) -> list[str]:
        """Ids of the silences active at ``now_ms`` whose matchers all match ``labels``."""
        return [s.id for s in self._by_id.values() if s.matches(labels, now_ms)]

    def __iter__(self):  # noqa: ANN204 - Iterator[Silence]
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)
