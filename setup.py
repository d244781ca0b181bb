"""Package discovery for the room layout.

Each top-level room (ingest/, streams/, ...) is mapped to ``urbanbrain.<room>`` in
pyproject.toml; setuptools' own ``find`` cannot follow such a mapping, so we list the
packages here from the same mapping.
"""

from pathlib import Path

from setuptools import setup

ROOMS = {
    "urbanbrain": "urbanbrain",
    "urbanbrain.ingest": "ingest",
    "urbanbrain.streams": "streams",
    "urbanbrain.rules": "rules",
    "urbanbrain.dashboards": "dashboards",
    "urbanbrain.simulators": "simulators",
}


def _packages() -> list[str]:
    found: list[str] = []
    for package, folder in ROOMS.items():
        root = Path(folder)
        for init in sorted(root.rglob("__init__.py")):
            rel = init.parent.relative_to(root)
            parts = [p for p in rel.parts if p]
            found.append(".".join([package, *parts]))
    return found


setup(packages=_packages())
