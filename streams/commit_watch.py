"""Say so when a partition's committed offset stops while its records have been read.

Faust commits a partition up to the first offset not acknowledged (our patched
``Consumer._new_offset``, see faust_patches.py): one record that is read and never acked
holds the commit there for good. Nothing is lost while the worker runs, but everything
after it is read again by the partition's next owner, and a test or an operator waiting
for "everything committed" waits forever without a word. This watch tells which record
holds which partition, with Faust's own bookkeeping for it, so the cause can be found
from the log of the run that showed it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .faust_patches import commit_ceiling

log = logging.getLogger(__name__)


@dataclass
class CommitWatch:
    """Per partition: the committed offset last seen and since when (monotonic)."""

    seen: dict[tuple[str, int], tuple[int | None, float]] = field(default_factory=dict)
    reported: set[tuple[str, int, int | None]] = field(default_factory=set)
    #: partitions reported stalled so far (worker metric)
    stalls: int = 0

    def check(self, consumer: Any, topics: Iterable[str], stall_s: float,
              now: float | None = None, broker: Mapping[Any, int | None] | None = None,
              hold_s: float = 0.0) -> list[str]:
        """Reports (and returns) one line per partition of ``topics`` whose commit has
        not moved for ``stall_s`` although records past it were read, or whose offset
        committed at the broker (``broker``, when asked) is behind what Faust believes it
        committed: Faust ignores acks below its belief, so such a commit never moves. A
        commit held at the first record whose state is not written yet (checkpointed
        state, faust patch 6) waits by design for up to ``hold_s`` more."""
        now = time.monotonic() if now is None else now
        topics = set(topics)
        lines = []
        for tp in list(consumer.assignment()):
            if tp.topic not in topics:
                continue
            key = (tp.topic, tp.partition)
            committed = consumer._committed_offset.get(tp)  # noqa: SLF001 - no accessor
            read = consumer._read_offset.get(tp)  # noqa: SLF001
            last, since = self.seen.get(key, (None, now))
            if committed != last or key not in self.seen:
                self.seen[key] = (committed, now)
                continue
            at_broker = (broker or {}).get(tp, committed)
            behind_belief = committed is not None and (at_broker or 0) < committed
            ceiling = commit_ceiling(consumer, tp.topic, tp.partition)
            held = ceiling is not None and (committed or 0) >= ceiling
            if now - since < stall_s + (hold_s if held else 0.0) or read is None or not (
                    behind_belief or _read_past(consumer, tp, committed or 0, read)):
                continue
            if (*key, committed) in self.reported:
                continue
            self.reported.add((*key, committed))
            self.stalls += 1
            line = describe(consumer, tp, committed, read, now - since)
            if behind_belief:
                line += f"; the broker has it committed at {at_broker} only"
            log.warning("%s", line)
            lines.append(line)
        return lines


def _read_past(consumer: Any, tp: Any, committed: int, read: int) -> bool:
    """Whether the record at ``committed`` was read. Faust's read offset is the last record
    read, but a seek sets it to the offset sought, nothing read yet: equal to the committed
    one, it says "read" only if Faust tracks that record as unacked."""
    if read > committed:
        return True
    return read == committed and any(
        m.tp == tp and m.offset == committed
        for m in list(consumer._unacked_messages))  # noqa: SLF001


def describe(consumer: Any, tp: Any, committed: int | None, read: int, for_s: float) -> str:
    """Faust's view of one stalled partition: what is acked, what is tracked unacked."""
    acked = sorted(consumer._acked.get(tp, ()))  # noqa: SLF001
    gaps = sorted((g.begin, g.end) for g in consumer._gap.get(tp, ()))  # noqa: SLF001
    unacked = sorted(
        (m.offset, m.refcount, m.generation_id, m.acked)
        for m in list(consumer._unacked_messages)  # noqa: SLF001
        if m.tp == tp)
    head = committed or 0
    return (f"commit of {tp.topic}[{tp.partition}] stalled at offset {committed} for "
            f"{for_s:.0f} s although records up to {read} were read: offset {head} is "
            f"{'acked' if head in acked else 'not acked'}; acked {len(acked)} "
            f"(first {acked[:5]}), gaps {gaps[:5]}, tracked unacked (offset, refcount, "
            f"generation, acked) {unacked[:10]} of {len(unacked)}; consumer generation "
            f"{consumer.app.consumer_generation_id}")
