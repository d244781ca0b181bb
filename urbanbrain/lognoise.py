"""Log lines that say "working as designed" many times a second, counted instead of printed.

Issue #14: "producer buffer full" appeared dozens of times at normal load (Faust's table
writes of one agent batch fill its producer buffer and the conductor waits for the flush:
backpressure by design, not a fault), and a worker resumed after a pause logged eleven
``OffsetCommit failed ... UnknownMemberIdError, will rejoin`` (one per partition: the group
had moved on without it, and it rejoins, as it should). Operators learned to ignore such
lines, and then missed real ones.

:func:`quiet` installs one filter per noisy logger: the first occurrence in each
``every_s`` window still passes (with how many were held back since), the rest are counted
in :data:`SUPPRESSED` (``urbanbrain_log_lines_suppressed_total`` on /metrics).
"""

from __future__ import annotations

import logging
import time
from collections import Counter

#: logger name -> (message prefix, short name)
NOISY: dict[str, tuple[tuple[str, str], ...]] = {
    "faust.transport.producer": (("producer buffer full", "producer_buffer_full"),
                                 ("producer flush took", "producer_flush_took")),
    "aiokafka.consumer.group_coordinator": (
        ("OffsetCommit failed for group", "offset_commit_failed_rejoin"),),
}
SUPPRESSED: Counter = Counter()


class _RateLimit(logging.Filter):
    def __init__(self, patterns: tuple[tuple[str, str], ...], every_s: float) -> None:
        super().__init__()
        self.patterns, self.every_s = patterns, every_s
        self.last: dict[str, float] = {}
        self.held: Counter = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        for prefix, name in self.patterns:
            if not msg.startswith(prefix):
                continue
            if name == "offset_commit_failed_rejoin" and "will rejoin" not in msg:
                return True  # other commit failures are real news
            now = time.monotonic()
            if now - self.last.get(name, -1e9) < self.every_s:
                self.held[name] += 1
                SUPPRESSED[name] += 1
                return False
            self.last[name] = now
            if self.held[name]:
                record.msg = f"{record.msg} ({self.held[name]} similar lines held back)"
                self.held[name] = 0
            return True
        return True


def quiet(every_s: float = 60.0) -> None:
    """Install the filters (idempotent)."""
    for name, patterns in NOISY.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RateLimit) for f in logger.filters):
            logger.addFilter(_RateLimit(patterns, every_s))
