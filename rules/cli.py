"""``urbanbrain rules check|test``: the engineer's loop for rule files.

Exit codes: 0 ok, 1 problems found (errors in rule files, failing rule tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from urbanbrain.rules.loader import check_files, expand_paths
from urbanbrain.rules.promtool import run_tests
from urbanbrain.rules.registry import load_registry_csv

ROOT = Path(__file__).parent
DEFAULT_RULES = str(ROOT / "city")
DEFAULT_TESTS = str(ROOT / "tests")

app = typer.Typer(help="Alert rules: check rule files, run rule unit tests.", no_args_is_help=True)


@app.command()
def check(
    paths: Annotated[
        list[str] | None, typer.Argument(help="rule files, directories or globs")
    ] = None,
    registry: Annotated[
        Path | None, typer.Option(help="device registry CSV: also check districts/sensors")
    ] = None,
    strict: Annotated[bool, typer.Option(help="treat warnings as errors")] = False,
) -> None:
    """Validate rule files against the schema and the metric catalogue."""
    paths = paths or [DEFAULT_RULES]
    reg = load_registry_csv(registry) if registry else None
    ruleset, problems = check_files(paths, reg)
    for p in problems:
        typer.echo(str(p), err=True)
    errors = [p for p in problems if p.severity == "error" or strict]
    files = expand_paths(paths)
    if errors or ruleset is None:
        typer.echo(f"FAILED: {len(errors)} error(s) in {len(files)} file(s)", err=True)
        raise typer.Exit(1)
    n_rules = len(ruleset.rules)
    typer.echo(
        f"SUCCESS: {len(files)} file(s), {len(ruleset.groups)} group(s), {n_rules} rule(s) ok"
    )


@app.command()
def test(
    paths: Annotated[
        list[str] | None, typer.Argument(help="rule test files (promtool format)")
    ] = None,
) -> None:
    """Run rule unit tests written like `promtool test rules`."""
    paths = paths or [DEFAULT_TESTS]
    results = run_tests(paths)
    if not results:
        typer.echo("no test files found", err=True)
        raise typer.Exit(1)
    failed = 0
    total = 0
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
