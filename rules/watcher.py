"""Hot reload: re-load rule files when they change, never swap in a broken set.

``poll()`` is cheap (one ``stat`` per file plus a directory listing) so a Faust timer can
call it every few seconds. A new or deleted file counts as a change.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from urbanbrain.rules.loader import RuleFileError, expand_paths, load_rules
from urbanbrain.rules.model import RuleSet


class RuleWatcher:
    """Holds the current good :class:`RuleSet` for some paths (files, dirs, globs)."""

    def __init__(
        self, paths: Iterable[str] | str, registry: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        self.paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        self.registry = registry
        self.error: RuleFileError | None = None
        self._stamp = self._snapshot()
        self.ruleset: RuleSet = load_rules(self.paths, registry)  # the first load must succeed

    def _snapshot(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for f in expand_paths(self.paths):
            try:
                st = os.stat(f)
                out.append((f, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((f, -1, -1))
        return tuple(out)

    def poll(self) -> tuple[bool, RuleFileError | None]:
        """(reloaded, error). On error the previous rule set stays in ``ruleset``;
        the same broken files are not re-parsed until they change again."""
        stamp = self._snapshot()
        if stamp == self._stamp:
            return False, None
        self._stamp = stamp
        try:
            rs = load_rules(self.paths, self.registry)
        except RuleFileError as exc:
            self.error = exc
            return False, exc
        self.ruleset = rs
        self.error = None
        return True, None
