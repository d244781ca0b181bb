"""Hot reload of device profiles: re-load when a file changes, never swap in a broken set.

``poll()`` is one ``stat`` per file plus a directory listing, cheap enough for the bridge's
5-second report loop. A new or deleted file counts as a change; a set that fails the check
is reported once (until the files change again) and the previous set stays in force.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from urbanbrain.ingest.profiles.loader import ProfileFileError, load_profiles
from urbanbrain.ingest.profiles.model import ProfileSet
from urbanbrain.rules.loader import expand_paths


class ProfileWatcher:
    """Holds the current good :class:`ProfileSet` of some paths (files, dirs, globs)."""

    def __init__(self, paths: Iterable[str | os.PathLike] | str | os.PathLike) -> None:
        self.paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        self.error: ProfileFileError | None = None
        self._stamp = self._snapshot()
        self.profiles: ProfileSet = load_profiles(self.paths)  # the first load must succeed

    def _snapshot(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for f in expand_paths(self.paths):
            try:
                st = os.stat(f)
                out.append((f, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((f, -1, -1))
        return tuple(out)

    def poll(self) -> tuple[bool, ProfileFileError | None]:
        """(reloaded, error). On error the previous profiles stay in ``profiles``."""
        stamp = self._snapshot()
        if stamp == self._stamp:
            return False, None
        self._stamp = stamp
        try:
            ps = load_profiles(self.paths)
        except ProfileFileError as exc:
            self.error = exc
            return False, exc
        self.profiles = ps
        self.error = None
        return True, None
