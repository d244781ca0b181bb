"""``urbanbrain silences list|expire``: the silences every streams worker applies."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from .audit import now_ms
from .cli_common import CLI_ROLE, cli_user, fail, out, run_kafka, settings, when
from .ops import Operations
from .view import read_view

app = typer.Typer(help="Silences: list, expire (create one with `urbanbrain alerts silence`).",
                  no_args_is_help=True)


@app.command("list")
def list_silences(
    all_: Annotated[bool, typer.Option("--all", help="expired ones too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """Active and pending silences (with --all, expired ones too)."""
    s = settings()
    view = run_kafka(s, lambda: read_view(s))
    rows = [d for d in view.silence_list(now_ms()) if all_ or d["state"] != "expired"]
    if as_json:
        for d in rows:
            typer.echo(orjson.dumps(d).decode())
        return
    t = Table(title=f"{sum(d['state'] == 'active' for d in rows)} silence(s) active")
    for c in ("id", "state", "matchers", "until", "by", "muting", "comment"):
        t.add_column(c, no_wrap=c in ("id",))
    for d in rows:
        t.add_row(d["id"], d["state"], escape(", ".join(d["matchers"])), when(d["ends_at"]),
                  escape(d["created_by"]), str(len(d["alerts"])), escape(d["comment"]))
    out.print(t)


@app.command()
def expire(silence_id: Annotated[str, typer.Argument(help="the silence id")],
           comment: Annotated[str, typer.Option(help="why, for the audit trail")] = "") -> None:
    """End a silence now: still-firing alerts it muted are notified at the next evaluation."""
    s = settings()

    async def go():  # noqa: ANN202
        view = await read_view(s)
        sil = view.silences.get(silence_id)
        if sil is None:
            raise fail(f"no silence {silence_id!r}: `urbanbrain silences list --all` shows them")
        if sil.ends_at <= now_ms():
            raise fail(f"silence {silence_id} already ended at {when(sil.ends_at)}")
        async with Operations(s) as ops:
            return await ops.expire(sil, user=cli_user(), role=CLI_ROLE, text=comment)

    ended = run_kafka(s, go)
    out.print(f"silence {ended.id} expired at {when(ended.ends_at)} (by {cli_user()})")
