"""Errors a person can act on, and the one line the command line shows for each.

Why one mechanism: an operations engineer at a console needs *what failed and what to do*,
not 240 lines of a traceback, and every command should say it the same way. So:

* code that knows what went wrong and what fixes it raises :class:`ActionableError` (or a
  subclass, which carries the exit code), with a message of the form
  ``"<what failed>: <what to do>"``;
* :func:`describe` turns any exception into ``(one line, exit code)``; besides our own
  errors it phrases the few library errors that already say enough (a missing file);
  anything else is a bug, shown as one line that says how to see its traceback;
* ``urbanbrain.cli`` calls :func:`describe` in one place, around every command
  (:class:`urbanbrain.cli.CommandGroup`), so no command has a try/except of its own.

``URBANBRAIN_DEBUG=1`` lets the original exception through with its traceback.

Exit codes follow sysexits.h where one fits, so scripts and compose can tell a server that
is down (69, worth retrying) from a configuration error (78, not worth retrying).
"""

from __future__ import annotations

import os

#: Command-line usage or a bad option value (click's own code for usage errors).
EX_USAGE = 2
#: Input data is wrong: rule files with errors, a recording of another city.
EX_DATAERR = 65
#: An input file does not exist or cannot be read.
EX_NOINPUT = 66
#: A server we need is unreachable: worth retrying once it runs.
EX_UNAVAILABLE = 69
#: An unexpected error, i.e. a bug.
EX_SOFTWARE = 70
#: Permission denied on a local file.
EX_NOPERM = 77
#: Configuration refused (credentials, grants): no retry heals it.
EX_CONFIG = 78
#: Interrupted by Ctrl-C (128 + SIGINT).
EX_INTERRUPTED = 130

DEBUG_ENV = "URBANBRAIN_DEBUG"
_MAX_LINE = 400


class ActionableError(Exception):
    """Something failed that a person can fix; the message says what and how.

    Subclasses set :attr:`exit_code`; the constructor's ``exit_code`` overrides it."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadValue(ActionableError, ValueError):
    """A value given on the command line (or in a setting) is not one we accept; a
    ``ValueError`` too, so library callers that catch those still do."""

    exit_code = EX_USAGE


class DataError(ActionableError):
    """Input data the command cannot use as it is (rule files, recordings)."""

    exit_code = EX_DATAERR


class ConfigError(ActionableError):
    """A server refused our configuration (credentials, grants, database)."""

    exit_code = EX_CONFIG


class Unreachable(ActionableError):
    """A server is not answering at its configured address."""

    exit_code = EX_UNAVAILABLE

    def __init__(self, service: str, address: str, reason: object, todo: str) -> None:
        self.service, self.address = service, address
        super().__init__(unreachable_message(service, address, reason, todo))


def unreachable_message(service: str, address: str, reason: object, todo: str) -> str:
    """``"<service> at <address> is unreachable (<cause>): <todo>"``, the one wording."""
    return f"{service} at {address} is unreachable ({_reason(reason)}): {todo}"


def _reason(reason: object) -> str:
    """A short cause: ``[Errno 111] Connection refused`` → ``connection refused``."""
    if isinstance(reason, BaseException):
        inner = getattr(reason, "reason", None)  # urllib.error.URLError wraps the OSError
        if isinstance(inner, BaseException):
            reason = inner
        text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    else:
        text = str(reason)
    text = text.strip()
    return text[:1].lower() + text[1:] if text else "no answer"


def one_line(text: str) -> str:
    """``text`` on one line: the first non-empty line, capped, for messages of libraries."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    if len(lines) > 1:
        first += f" (+{len(lines) - 1} more line(s))"
    return first if len(first) <= _MAX_LINE else first[: _MAX_LINE - 1] + "…"


def describe(exc: BaseException) -> tuple[str, int]:
    """(the one line to show, the exit code) for ``exc``."""
    if isinstance(exc, ActionableError):
        return one_line(str(exc)), exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EX_INTERRUPTED
    if isinstance(exc, FileNotFoundError):
        return (f"{exc.filename or exc}: no such file or folder: check the path"
                if exc.filename else one_line(str(exc))), EX_NOINPUT
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename}: is a folder: give a file", EX_NOINPUT
    if isinstance(exc, PermissionError):
        return (f"{exc.filename}: permission denied: run as a user who may read it, or "
                "change its mode"), EX_NOPERM
    settings_error = _settings_error(exc)
    if settings_error:
        return settings_error, EX_CONFIG
    what = one_line(str(exc)) or "(no message)"
    return (f"unexpected {type(exc).__name__}: {what} — this is a bug; rerun with "
            f"{DEBUG_ENV}=1 for the traceback and report it"), EX_SOFTWARE


def _settings_error(exc: BaseException) -> str | None:
    """A settings object refused the environment: which variable, why, what to do."""
    try:
        from pydantic import ValidationError
        from pydantic_settings import BaseSettings
    except ImportError:  # pragma: no cover - both are dependencies
        return None
    if not isinstance(exc, ValidationError):
        return None
    model = None
    for cls in _subclasses(BaseSettings):
        if cls.__name__ == exc.title:
            model = cls
            break
    if model is None:
        return None
    prefix = (model.model_config.get("env_prefix") or "").upper()
    errs = exc.errors()
    first = errs[0]
    name = prefix + "_".join(str(p) for p in first.get("loc", ()) if isinstance(p, str)).upper()
    given = first.get("input")
    shown = f"={given!r}" if isinstance(given, (str, int, float)) and "PASSWORD" not in name \
        and "TOKEN" not in name else ""
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return (f"setting {name}{shown} refused: {first.get('msg', 'invalid')}{more}: fix it in "
            "the environment or .env (`urbanbrain settings` lists every setting)")


def _subclasses(cls: type) -> list[type]:
    out, todo = [], [cls]
    while todo:
        for sub in todo.pop().__subclasses__():
            out.append(sub)
            todo.append(sub)
    return out


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")
