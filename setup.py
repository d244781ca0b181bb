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
    "urbanbrain.console": "console",
}


def _packages() -> list[str]:
    """Every folder of a room: code packages (with ``__init__.py``) and the data folders
    beside them (rules/city, dashboards/json, ...), which Python also sees as (namespace)
    packages; listing them too is what setuptools asks for, so that their files ship via
    package-data without an "importable package ... absent from packages" warning."""
    found: list[str] = []
    for package, folder in ROOMS.items():
        root = Path(folder)
        for d in sorted([root, *(p for p in root.rglob("*") if p.is_dir())]):
            rel = d.relative_to(root)
            if any(part.startswith((".", "__")) or part.endswith(".egg-info")
                   for part in rel.parts):
                continue
            found.append(".".join([package, *rel.parts]))
    return found


setup(packages=_packages())
