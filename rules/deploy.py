"""Deploying alert rules: what ``--rules``, ``--no-starter-rules`` and ``--webhook`` mean.

``urbanbrain up`` and ``urbanbrain streams worker`` take the same three options. They are
*settings*, not a second way to configure alerting: each becomes the ``URBANBRAIN_ALERT_*``
variable that :class:`urbanbrain.streams.alerting.AlertSettings` reads (in this process, or
in the workers ``up`` starts), so ``urbanbrain settings`` and compose see the same thing.

* ``--rules PATH`` (repeatable; files and folders) is *added* to the configured rule paths,
  which default to the starter rules (``rules/city``): your folder beside the starter set,
  without copying it. ``--no-starter-rules`` drops the starter folder, so only yours load.
* ``--webhook URL`` (repeatable) is added to ``URBANBRAIN_ALERT_WEBHOOK_URLS``.

Everything is checked before anything starts: a missing path, a URL that is not http(s), or
a rule file with an error is one line (:mod:`urbanbrain.errors`), not a worker that dies
later with a traceback in its log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from urbanbrain.errors import BadValue, DataError

RULES_ENV = "URBANBRAIN_ALERT_RULES_PATH"
WEBHOOKS_ENV = "URBANBRAIN_ALERT_WEBHOOK_URLS"


def starter_rules() -> Path:
    """The starter rule folder shipped with urbanbrain (``rules/city``)."""
    return Path(__file__).resolve().parent / "city"


def configured_rule_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The rule paths the environment configures (the starter rules when it names none),
    parsed exactly as the worker parses them."""
    from urbanbrain.streams.alerting import AlertSettings

    env = os.environ if environ is None else environ
    if RULES_ENV in env:
        return list(AlertSettings(rules_path=env[RULES_ENV]).rules_path)
    return list(AlertSettings().rules_path) if environ is None else [starter_rules()]


def _check_webhook(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadValue(f"--webhook {url!r} is not an http(s) URL: give the receiver's address, "
                       "e.g. http://alertmanager:9093/api/v2/alerts or https://hooks.example/x")
    if "," in url:
        raise BadValue(f"--webhook {url!r} contains a comma: give each URL with its own --webhook")
    return url.strip()


def alert_environment(rules: Sequence[Path] = (), webhooks: Sequence[str] = (), *,
                      starter: bool = True, environ: Mapping[str, str] | None = None
                      ) -> dict[str, str]:
    """The ``URBANBRAIN_ALERT_*`` variables the options mean (empty when they change
    nothing). Raises :class:`BadValue` for a path that does not exist, a bad URL, or
    ``--no-starter-rules`` that would leave no rules at all."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    if rules or not starter:
        start = starter_rules()
        paths = [p for p in configured_rule_paths(environ)
                 if starter or Path(p).resolve() != start]
        for p in rules:
            if not Path(p).exists():
                raise BadValue(f"--rules {str(p)!r}: no such file or folder: give a rule "
                               "file or a folder of *.yaml rule files")
            resolved = Path(p).resolve()  # workers may run elsewhere: absolute paths
            if resolved not in [Path(q).resolve() for q in paths]:
                paths.append(resolved)
        if not paths:
            raise BadValue("--no-starter-rules leaves no rules: add --rules PATH (a file or "
                           "a folder of rule files)")
        out[RULES_ENV] = ",".join(str(p) for p in paths)
    if webhooks:
        have = [u.strip() for u in env.get(WEBHOOKS_ENV, "").split(",") if u.strip()]
        urls = have + [u for u in map(_check_webhook, webhooks) if u not in have]
        out[WEBHOOKS_ENV] = ",".join(urls)
    return out


def check_rules(paths: Sequence[str | Path]) -> int:
    """Load the rule files as a worker will; returns the number of rules. A rule file with
    errors is one line naming the first and how to see them all (exit 65)."""
    from urbanbrain.rules.loader import RuleFileError, load_rules

    try:
        return len(load_rules([str(p) for p in paths]).rules)
    except RuleFileError as exc:
        errors = exc.problems
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        shown = " ".join(str(p) for p in paths)
        raise DataError(f"rule files refused: {errors[0]}{more}: fix them; "
                        f"`urbanbrain rules check {shown}` lists every problem") from None
