"""Print pins for urbanbrain's runtime dependency closure, as installed in this environment.

The Docker image installs with ``pip install -c deploy/constraints.txt`` so that a build
months from now gets the versions the tests ran against, not whatever is newest. Only the
runtime closure (``[project] dependencies`` plus the extras named on the command line) is
pinned; test tools are not part of the image.

    .venv/bin/python deploy/pin_constraints.py sim > deploy/constraints.txt
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = """\
# Exact versions of urbanbrain's runtime dependencies (and the `sim` extra), the set the test
# suite ran against. The Dockerfile installs with `pip install -c deploy/constraints.txt`, so
# an image build is reproducible; a new dependency missing here still installs, unpinned.
# Regenerate after changing dependencies (see docs/DEPLOYMENT.md, "Python dependencies"):
#   .venv/bin/python deploy/pin_constraints.py sim > deploy/constraints.txt"""


def closure(pyproject: Path, extras: list[str]) -> dict[str, str]:
    """Installed version of every distribution the project needs at run time."""
    project = tomllib.loads(pyproject.read_text())["project"]
    todo = [(Requirement(r), "") for r in project["dependencies"]]
    for extra in extras:
        todo += [(Requirement(r), "") for r in project["optional-dependencies"][extra]]
    pins: dict[str, str] = {}
    done: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        req, _ = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        key = (canonicalize_name(req.name), tuple(sorted(req.extras)))
        if key in done:
            continue
        done.add(key)
        dist = metadata.distribution(req.name)
        pins[key[0]] = dist.version
        for spec in dist.requires or []:
            sub = Requirement(spec)
            wanted = [""] + sorted(req.extras)
            if sub.marker and not any(sub.marker.evaluate({"extra": x}) for x in wanted):
                continue
            todo.append((sub, ""))
    return pins


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    pins = closure(root / "pyproject.toml", sys.argv[1:])
    print(HEADER)
    for name in sorted(pins):
        print(f"{name}=={pins[name]}")


if __name__ == "__main__":
    main()
