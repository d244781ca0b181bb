"""``urbanbrain alerts list|ack|unack|assign|comment|resolve|silence|audit``.

They talk to the running system the way the console does: the view is read from Kafka
(``alerts``, ``alerts.audit``, ``alerts.silences``) and every action is a record there, so
the console, the CLI and the streams workers all see the same state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from urbanbrain.rules.durations import DurationError, parse_duration
from urbanbrain.rules.silences import Matcher

from .audit import now_ms
from .cli_common import CLI_ROLE, ago, cli_user, fail, out, run_kafka, settings, when
from .ops import Operations
from .view import AlertView, Episode, read_view

app = typer.Typer(help="Alerts: list, acknowledge, assign, comment, resolve, silence.",
                  no_args_is_help=True)


def _find(view: AlertView, ident: str) -> Episode:
    ep = view.find(ident)
    if ep is None:
        hits = [fp for fp in view.episodes if fp.startswith(ident)]
        if len(hits) > 1:
            raise fail(f"{ident!r} matches {len(hits)} alerts: give more of the fingerprint")
        raise fail(f"no alert {ident!r}: `urbanbrain alerts list` shows the fingerprints")
    return ep


@app.command("list")
def list_alerts(
    all_: Annotated[bool, typer.Option("--all", help="also recently resolved ones")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """Firing alerts, most severe first, with acknowledgement, assignee and silences."""
    s = settings()
    view = run_kafka(s, lambda: read_view(s))
    now = now_ms()
    rows = view.active(now) + (view.recent_resolved(now) if all_ else [])
    if as_json:
        for a in rows:
            typer.echo(orjson.dumps(a).decode())
        return
    t = Table(title=f"{len(view.active(now))} alert(s) firing")
    for c in ("id", "alert", "severity", "district", "sensor", "since", "value", "state"):
        t.add_column(c, no_wrap=c in ("id", "alert"))
    for a in rows:
        state = []
        if not a["active"]:
            hand = a["resolved_by_hand"]
            state.append(f"resolved by {hand['user']}" if hand else "resolved")
        if a["acked_by"]:
            state.append(f"acked by {a['acked_by']}")
        if a["assignee"]:
            state.append(f"→ {a['assignee']}")
        if a["silenced_by"]:
            state.append("silenced")
        t.add_row(a["fingerprint"][:12], escape(a["alertname"]), a["severity"],
                  escape(a["labels"].get("district", "")), escape(a["labels"].get("sensor", "")),
                  ago(a["starts_at"], now),
                  "" if a["value"] is None else f"{a['value']:.4g}", escape(", ".join(state)))
    out.print(t)


def _alert_action(action: str, ident: str, text: str) -> None:
    s = settings()

    async def go() -> str:
        view = await read_view(s)
        ep = _find(view, ident)
        async with Operations(s) as ops:
            await ops.alert_action(action, ep.fingerprint, ep.starts_at, user=cli_user(),
                                   role=CLI_ROLE, text=text)
        return f"{ep.labels.get('alertname', '')} {ep.fingerprint}"

    try:
        what = run_kafka(s, go)
    except ValueError as exc:
        raise fail(str(exc)) from None
    out.print(f"{action}: {escape(what)} (by {cli_user()})")


@app.command()
def ack(ident: Annotated[str, typer.Argument(help="fingerprint (or a unique prefix)")],
        comment: Annotated[str, typer.Option(help="why, for the audit trail")] = "") -> None:
    """Acknowledge a firing alert: someone is on it."""
    _alert_action("ack", ident, comment)


@app.command()
def unack(ident: Annotated[str, typer.Argument(help="fingerprint (or a unique prefix)")]) -> None:
    """Take an acknowledgement back."""
    _alert_action("unack", ident, "")


@app.command()
def assign(ident: Annotated[str, typer.Argument(help="fingerprint (or a unique prefix)")],
           assignee: Annotated[str, typer.Argument(help="who; \"\" to unassign")]) -> None:
    """Assign an alert to someone."""
    _alert_action("assign", ident, assignee)


@app.command()
def comment(ident: Annotated[str, typer.Argument(help="fingerprint (or a unique prefix)")],
            text: Annotated[str, typer.Argument(help="the comment")]) -> None:
    """Comment on an alert (kept in the audit trail)."""
    _alert_action("comment", ident, text)


@app.command()
def resolve(ident: Annotated[str, typer.Argument(help="fingerprint (or a unique prefix)")],
            why: Annotated[str, typer.Option("--why", help="required: why it is dealt with")]
            ) -> None:
    """Resolve by hand: hide the alert from the active list until its next transition
    (the engine is not told: silence it too if its condition still holds)."""
    _alert_action("resolve", ident, why)


def _until_ms(for_: str | None, until: str | None) -> int:
    if (for_ is None) == (until is None):
        raise fail("give exactly one of --for (e.g. 2h) or --until (e.g. 2025-06-01T18:00)")
    if for_ is not None:
        try:
            return now_ms() + parse_duration(for_)
        except DurationError as exc:
            raise fail(f"--for: {exc}") from None
    try:
        dt = datetime.fromisoformat(until or "")
    except ValueError:
        raise fail(f"--until {until!r}: expected an ISO time such as 2025-06-01T18:00") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time, as typed
    return int(dt.timestamp() * 1000)


@app.command()
def silence(
    matchers: Annotated[list[str], typer.Argument(
        help='Alertmanager matchers: alertname="SlowTraffic" district=~"north|south"')],
    comment: Annotated[str, typer.Option(help="required: why")] = "",
    for_: Annotated[str | None, typer.Option("--for", help="how long, e.g. 30m, 2h")] = None,
    until: Annotated[str | None, typer.Option(help="until this local time (ISO 8601)")] = None,
) -> None:
    """Silence matching alerts: the streams workers stop notifying them (MQTT, webhooks)
    until the silence ends; a still-firing alert is notified again then."""
    ends = _until_ms(for_, until)
    if ends <= now_ms():
        raise fail("the silence would end in the past")
    if not comment.strip():
        raise fail("--comment is required: say why (it goes into the audit trail)")
    try:
        parsed = [str(Matcher.parse(m)) for m in matchers]
    except ValueError as exc:
        raise fail(str(exc)) from None
    s = settings()

    async def go():  # noqa: ANN202
        async with Operations(s) as ops:
            return await ops.silence(parsed, ends_at=ends, user=cli_user(), role=CLI_ROLE,
                                     comment=comment)

    sil = run_kafka(s, go)
    out.print(f"silence {sil.id}: {escape(' '.join(parsed))} until {when(sil.ends_at)}")


@app.command()
def audit(ident: Annotated[str | None, typer.Argument(help="only this alert or silence")] = None,
          limit: Annotated[int, typer.Option(help="newest N records")] = 50) -> None:
    """The audit trail: who did what, when and why."""
    s = settings()
    view = run_kafka(s, lambda: read_view(s))
    target = None
    if ident is not None:
        ep = view.find(ident)
        target = ep.fingerprint if ep is not None else ident
    t = Table(title="audit trail (newest first)")
    for c in ("when", "user", "role", "action", "target", "text"):
        t.add_column(c)
    for r in view.audit_list(target, limit):
        t.add_row(when(r["at"]), escape(r["user"]), r["role"], r["action"], r["target"][:16],
                  escape(r["text"]))
    out.print(t)
