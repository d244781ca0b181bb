"""The registry of rule kinds: one folder per kind, found at import, no list to edit.

Every sub-package of this folder that exposes ``KIND`` (a :class:`~.base.RuleKind`) is
registered under ``KIND.name``. Kinds living elsewhere (a deployment's own, a test's)
join with :func:`register` or :func:`load_folder`. See rules/README.md, "Rule kinds".
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

from urbanbrain.rules.kinds.base import RuleKind

#: name -> kind, in :attr:`RuleKind.rank` order (schema enum, error messages, docs)
KINDS: dict[str, RuleKind] = {}


def register(kind: RuleKind) -> RuleKind:
    """Add (or replace) a kind; the rules schema is recomposed on next use."""
    KINDS[kind.name] = kind
    ordered = sorted(KINDS.values(), key=lambda k: (k.rank, k.name))
    KINDS.clear()
    KINDS.update((k.name, k) for k in ordered)
    return kind


def unregister(name: str) -> None:
    KINDS.pop(name, None)


def kind_of(name: str) -> RuleKind:
    """The kind registered as ``name`` (KeyError for an unknown one: the schema rejects
    unknown kinds before anything asks)."""
    return KINDS[name]


def load_folder(path: str | Path) -> RuleKind:
    """Import a kind folder (a package exposing ``KIND``) from anywhere and register it."""
    path = Path(path)
    mod_name = f"urbanbrain_rule_kind_{path.name}"
    spec = importlib.util.spec_from_file_location(
        mod_name, path / "__init__.py", submodule_search_locations=[str(path)])
    if spec is None or spec.loader is None:
        raise ImportError(f"no kind package at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return register(module.KIND)


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            module = importlib.import_module(f"{__name__}.{info.name}")
            register(module.KIND)


_discover()

__all__ = ["KINDS", "RuleKind", "kind_of", "load_folder", "register", "unregister"]
