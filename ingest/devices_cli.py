"""``urbanbrain devices check|test``: the engineer's loop for device profiles.

Like ``urbanbrain rules check|test``: ``check`` validates profile files and prints every
problem as ``file:line:col: message``; ``test`` runs profile test files (payloads in,
exact readings and dead letters out) through the normaliser the bridge runs. Exit codes:
0 ok, 1 problems found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from urbanbrain.ingest.profiles.loader import check_files
from urbanbrain.ingest.profiles.testing import run_tests
from urbanbrain.rules.loader import expand_paths

from urbanbrain.settings import get_settings

SAMPLES = Path(__file__).parent / "profiles" / "samples"

app = typer.Typer(help="Device profiles: check profile files, run profile tests.",
                  no_args_is_help=True)


def _default_profiles() -> list[str]:
    configured = get_settings().ingest_profiles_path
    return [str(configured)] if configured else [str(SAMPLES / "*" / "profile.yaml")]


@app.command()
def check(
    paths: Annotated[
        list[str] | None, typer.Argument(help="profile files, directories or globs "
                                              "(default: URBANBRAIN_INGEST_PROFILES_PATH, "
                                              "else the samples)")
    ] = None,
) -> None:
    """Validate device profile files (keys, fields, metrics, units, policies)."""
    paths = paths or _default_profiles()
    profiles, problems = check_files(paths)
    for p in problems:
        typer.echo(str(p), err=True)
    files = expand_paths(paths)
    if profiles is None:
        typer.echo(f"FAILED: {len(problems)} error(s) in {len(files)} file(s)", err=True)
        raise typer.Exit(1)
    typer.echo(f"SUCCESS: {len(files)} file(s), {len(profiles)} profile(s) ok")


@app.command()
def test(
    paths: Annotated[
        list[str] | None, typer.Argument(help="profile test files, directories or globs "
                                              "(default: the samples' tests)")
    ] = None,
) -> None:
    """Run device profile tests: payloads in, exact readings and dead letters out."""
    paths = paths or [str(SAMPLES / "*" / "*test.yaml")]
    results = run_tests(paths)
    if not results:
        typer.echo("no test files found", err=True)
        raise typer.Exit(1)
    failed = total = 0
    for fr in results:
        for p in fr.problems:
            typer.echo(str(p), err=True)
        typer.echo(f"{fr.file}: {'SUCCESS' if fr.ok else 'FAILED'}")
        for t in fr.tests:
            total += 1
            if not t.ok:
                failed += 1
                typer.echo(f"  FAILED {t.name}")
                for f in t.failures:
                    typer.echo("    " + f.replace("\n", "\n    "))
        if fr.problems:
            failed += 1
    if failed:
        typer.echo(f"{failed} failure(s) in {total} test(s)", err=True)
        raise typer.Exit(1)
    typer.echo(f"{total} test(s) passed")


if __name__ == "__main__":  # pragma: no cover
    app()
