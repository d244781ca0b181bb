"""Summarise a py-spy ``--format raw`` profile: inclusive and self time per function.

``python bench/pyspy_top.py FILE [--top 30] [--idle]``: the raw format is one collapsed
stack per line with a sample count; idle samples (the event loop waiting) are dropped
unless ``--idle``, so the percentages are of the busy time.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def summarise(path: Path, top: int = 30, idle: bool = False) -> str:
    incl: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    total = 0
    for raw in path.read_text().splitlines():
        stack, _, n = raw.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        if not idle and any(f.startswith(("select (selectors", "_run_once", "poll (")) for f in frames[-2:]):
            continue
        count = int(n)
        total += count
        for f in set(frames):
            incl[_short(f)] += count
        self_[_short(frames[-1])] += count
    lines = [f"busy samples: {total}", "", "inclusive:"]
    lines += [f"{100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{100 * c / total:5.1f}%  {f}" for f, c in self_.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"
    name, _, where = frame.partition(" (")
    file = where.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{name} ({file})"


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("file", type=Path)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--idle", action="store_true")
    a = ap.parse_args()
    print(summarise(a.file, a.top, a.idle))
