"""``urbanbrain console``: serve the operations console; ``console user add|remove|list``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from .auth import ROLES, User, UserStore, hash_password
from .cli_common import fail, out
from .settings import ConsoleSettings

app = typer.Typer(help="The operations console (web): serve it, manage its users.",
                  invoke_without_command=True)
user_app = typer.Typer(help="Console users (argon2-hashed passwords in the users file).",
                       no_args_is_help=True)
app.add_typer(user_app, name="user")


def _settings(**overrides: object) -> ConsoleSettings:
    base = ConsoleSettings()
    clean = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=clean) if clean else base


def _users_file(path: Path | None) -> Path:
    p = path or ConsoleSettings().console_users_file
    if p is None:
        raise fail("no users file: pass --users-file or set URBANBRAIN_CONSOLE_USERS_FILE")
    return p


@app.callback()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="listen address (URBANBRAIN_CONSOLE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (URBANBRAIN_CONSOLE_PORT, 8090)")] = None,
    users_file: Annotated[Path | None, typer.Option(
        help="users file (URBANBRAIN_CONSOLE_USERS_FILE)")] = None,
    districts: Annotated[Path | None, typer.Option(
        help="district polygons, GeoJSON (URBANBRAIN_CONSOLE_DISTRICTS_PATH)")] = None,
    log_level: Annotated[str, typer.Option("--log-level", "-l")] = "info",
) -> None:
    """Serve the console until stopped. Login is required: users come from the users file
    or URBANBRAIN_CONSOLE_USERS; there is no built-in account."""
    if ctx.invoked_subcommand is not None:
        return
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    s = _settings(console_host=host, console_port=port, console_users_file=users_file,
                  console_districts_path=districts)
    try:
        users = UserStore.load(s.console_users_file,
                               s.console_users.get_secret_value() if s.console_users else None)
    except (ValueError, KeyError, OSError) as exc:
        raise fail(f"console users: {exc}", 78) from None
    if not len(users) and not s.console_proxy_user_header:
        raise fail("no console users: add one with `urbanbrain console user add NAME --role "
                   "admin --users-file FILE` (or set URBANBRAIN_CONSOLE_USERS, or "
                   "URBANBRAIN_CONSOLE_PROXY_USER_HEADER behind an authenticating proxy)", 78)
    if s.registry_path is None or not s.registry_path.exists():
        logging.getLogger(__name__).warning(
            "no device registry (URBANBRAIN_REGISTRY_PATH): the map shows no sensors")
    from .server import serve as run

    try:
        run(s, users)
    except OSError as exc:
        raise fail(f"cannot listen on {s.console_host}:{s.console_port}: {exc}") from None


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="user name")],
    role: Annotated[str, typer.Option(help=f"one of {', '.join(ROLES)}")] = "viewer",
    users_file: Annotated[Path | None, typer.Option(help="URBANBRAIN_CONSOLE_USERS_FILE")] = None,
    password_stdin: Annotated[bool, typer.Option(
        help="read the password from standard input (scripts) instead of a prompt")] = False,
    proxy_only: Annotated[bool, typer.Option(
        help="no password: the user only comes in through the trusted proxy")] = False,
) -> None:
    """Add a user or change their role/password (stored as an argon2id hash)."""
    path = _users_file(users_file)
    if proxy_only:
        pw_hash = ""
    else:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
        try:
            pw_hash = hash_password(password)
        except ValueError as exc:
            raise fail(str(exc)) from None
    try:
        store = UserStore.load(path, None)
        store.put(User(name, role, pw_hash))
    except (ValueError, KeyError, OSError) as exc:
        raise fail(str(exc)) from None
    store.save(path)
    out.print(f"user {name} ({role}) saved to {path}")


@user_app.command("remove")
def user_remove(name: str, users_file: Annotated[Path | None, typer.Option()] = None) -> None:
    """Remove a user (their open sessions end when the console restarts)."""
    path = _users_file(users_file)
    store = UserStore.load(path, None)
    if not store.remove(name):
        raise fail(f"no user {name!r} in {path}")
    store.save(path)
    out.print(f"user {name} removed from {path}")


@user_app.command("list")
def user_list(users_file: Annotated[Path | None, typer.Option()] = None) -> None:
    """Users and roles (never the hashes)."""
    path = _users_file(users_file)
    for u in sorted(UserStore.load(path, None).users.values(), key=lambda u: u.name):
        out.print(f"{u.name}\t{u.role}\t{'password' if u.password_hash else 'proxy only'}")
