"""``urbanbrain settings``: every setting of every settings object, secrets masked.

Why all of them in one list: the shared :class:`~urbanbrain.settings.Settings` is one of
several typed objects (the streams room's windows and indices, the alert engine's rule paths
and webhooks, ...). A person deploying rules should not have to read ``streams/alerting.py``
to learn that ``URBANBRAIN_ALERT_RULES_PATH`` exists. Each line is the environment variable,
its effective value, whether it came from the environment (or ``.env``) or is the default,
and its description.

:data:`SETTINGS_OBJECTS` names where each object lives; tests/test_cli_settings.py fails
when a settings class exists in the code but not here, so a new one cannot hide.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings

#: (module, class, what it configures), in the order they are shown.
SETTINGS_OBJECTS: tuple[tuple[str, str, str], ...] = (
    ("urbanbrain.settings", "Settings", "shared by every process: servers, ingest, health"),
    ("urbanbrain.streams.settings", "StreamsSettings", "the Faust app: windows, indices"),
    ("urbanbrain.streams.alerting", "AlertSettings", "alert rules and their delivery"),
    ("urbanbrain.console.settings", "ConsoleSettings", "the operations console"),
    ("urbanbrain.rules.pipeline_watch", "PipelineSettings", "the pipeline's own health rules"),
)

#: Variables read outside a settings object (name, description, secret?).
LOOSE_VARIABLES: tuple[tuple[str, str, bool], ...] = (
    ("URBANBRAIN_GC_THRESHOLDS", "garbage collector thresholds of long-running workers "
     "(urbanbrain/gctune.py)", False),
    ("URBANBRAIN_GRAFANA_URL", "Grafana base URL for `dashboards push`", False),
    ("URBANBRAIN_GRAFANA_TOKEN", "Grafana service-account token for `dashboards push`", True),
    ("URBANBRAIN_DEBUG", "1: show tracebacks instead of one-line errors", False),
)

MASK = "********"
_SECRET_WORDS = ("password", "token", "secret")


def mask_url(url: str) -> str:
    """A URL without its password and query values (webhook URLs often carry a token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    query = "&".join(f"{kv.split('=', 1)[0]}={MASK}" if "=" in kv else kv
                     for kv in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def render(value: object, *, secret: bool = False) -> str:
    """A value as its environment variable would spell it (lists comma-joined)."""
    if value is None:
        return ""
    if isinstance(value, SecretStr) or (secret and value != ""):
        return MASK
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(render(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return str(value)


def _env_name(cls: type[BaseSettings], field: str) -> str:
    prefix = cls.model_config.get("env_prefix", "") or ""
    return f"{prefix}{field}".upper()


def _own_fields(cls: type[BaseModel]) -> list[str]:
    """Fields ``cls`` adds to its settings bases (StreamsSettings repeats Settings')."""
    inherited: set[str] = set()
    for base in cls.__mro__[1:]:
        if isinstance(base, type) and issubclass(base, BaseSettings) and base is not BaseSettings:
            inherited |= set(base.model_fields)
    return [f for f in cls.model_fields if f not in inherited]


def settings_classes() -> list[tuple[type[BaseSettings], str]]:
    """The settings classes of the installed rooms (a room left out of an install, e.g. the
    console, is skipped)."""
    out = []
    for module, name, what in SETTINGS_OBJECTS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        out.append((getattr(mod, name), what))
    return out


def report(include_defaults: bool = True) -> Iterator[str]:
    """The lines ``urbanbrain settings`` prints."""
    import os

    for cls, what in settings_classes():
        obj = cls()
        yield f"# {cls.__name__} ({cls.__module__}): {what}"
        for name in _own_fields(cls):
            info = cls.model_fields[name]
            from_env = name in obj.model_fields_set
            if not include_defaults and not from_env:
                continue
            secret = any(w in name for w in _SECRET_WORDS)
            value = render(getattr(obj, name), secret=secret)
            origin = "set" if from_env else "default"
            desc = f"; {info.description}" if info.description else ""
            yield f"{_env_name(cls, name)}={value}  # {origin}{desc}"
        yield ""
    yield "# read directly from the environment"
    for name, desc, secret in LOOSE_VARIABLES:
        raw = os.environ.get(name)
        if raw is None and not include_defaults:
            continue
        value = render(raw, secret=secret) if raw is not None else ""
        yield f"{name}={value}  # {'set' if raw is not None else 'unset'}; {desc}"
