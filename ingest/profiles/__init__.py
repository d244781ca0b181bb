"""Device profiles: vendor payloads → canonical readings, configured in YAML, no code.

See README.md beside this file for the format; ``samples/`` holds one profile per vendor
shape, each with a README, a payload and a test file for ``urbanbrain devices test``.
"""

from __future__ import annotations

from urbanbrain.ingest.profiles.loader import (
    ProfileFileError,
    check_files,
    check_text,
    load_profiles,
    loads,
)
from urbanbrain.ingest.profiles.model import FieldProblem, Profile, ProfileReading, ProfileSet
from urbanbrain.ingest.profiles.watcher import ProfileWatcher

__all__ = ["FieldProblem", "Profile", "ProfileFileError", "ProfileReading", "ProfileSet",
           "ProfileWatcher", "check_files", "check_text", "load_profiles", "loads"]
