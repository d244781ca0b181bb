"""MQTT topic → tags, configurable because real deployments don't share one topic scheme.

A pattern names each topic level: ``city/{district}/{domain}/{kind}/{sensor_id}`` is ours;
``{_}`` skips a level, a literal must match, ``{*}`` at the end swallows the rest. The
first pattern that matches wins.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Topics ingest subscribes to but must not treat as readings: our own alert stream.
DEFAULT_IGNORE = ("city/alerts/{*}",)

DEFAULT_PATTERNS = (
    "city/{district}/{domain}/pack/{gateway}",
    "city/{district}/{domain}/{kind}/{sensor_id}",
)


@dataclass(frozen=True, slots=True)
class TopicPattern:
    levels: tuple[str, ...]

    @classmethod
    def parse(cls, pattern: str) -> TopicPattern:
        levels = tuple(pattern.split("/"))
        if "{*}" in levels[:-1]:
            raise ValueError(f"{{*}} only at the end of a topic pattern: {pattern!r}")
        return cls(levels)

    def match(self, topic: str) -> dict[str, str] | None:
        parts = topic.split("/")
        greedy = self.levels and self.levels[-1] == "{*}"
        fixed = self.levels[:-1] if greedy else self.levels
        if len(parts) < len(fixed) or (not greedy and len(parts) != len(fixed)):
            return None
        tags: dict[str, str] = {}
        for level, part in zip(fixed, parts):
            if level.startswith("{") and level.endswith("}"):
                name = level[1:-1]
                if not part:
                    return None
                if name != "_":
                    tags[name] = part
            elif level != part:
                return None
        return tags

    def subscription(self) -> str:
        """The MQTT filter covering this pattern (every variable level becomes ``+``)."""
        out = []
        for level in self.levels:
            if level == "{*}":
                out.append("#")
            elif level.startswith("{"):
                out.append("+")
            else:
                out.append(level)
        return "/".join(out)


class TopicMapper:
    def __init__(
        self,
        patterns: tuple[str, ...] | list[str] = DEFAULT_PATTERNS,
        ignore: tuple[str, ...] | list[str] = DEFAULT_IGNORE,
    ) -> None:
        self.patterns = [TopicPattern.parse(p) for p in patterns]
        self.ignore = [TopicPattern.parse(p) for p in ignore]

    def ignored(self, topic: str) -> bool:
        """True for topics that are not readings (acked and counted, never dead-lettered)."""
        return any(p.match(topic) is not None for p in self.ignore)

    def tags(self, topic: str) -> dict[str, str] | None:
        for p in self.patterns:
            tags = p.match(topic)
            if tags is not None:
                return tags
        return None

    def subscriptions(self) -> list[str]:
        seen: list[str] = []
        for p in self.patterns:
            s = p.subscription()
            if s not in seen:
                seen.append(s)
        # A broader filter covers narrower ones; drop those it covers to avoid duplicates.
        return [s for s in seen if not any(o != s and _covers(o, s) for o in seen)]


def _covers(broad: str, narrow: str) -> bool:
    b, n = broad.split("/"), narrow.split("/")
    for i, level in enumerate(b):
        if level == "#":
            return True
        if i >= len(n) or (level != "+" and level != n[i]):
            return False
    return len(b) == len(n)
