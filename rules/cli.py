"""``urbanbrain rules check|test|backtest``: the engineer's loop for rule files.

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


def _duration_ms(text: str) -> int:
    from urbanbrain.rules.durations import parse_duration

    return int(parse_duration(text))


@app.command()
def backtest(
    paths: Annotated[
        list[str] | None, typer.Argument(help="rule files, directories or globs")
    ] = None,
    scenario: Annotated[
        str | None, typer.Option(help="simulator scenario, e.g. standard-week")
    ] = None,
    recording: Annotated[
        Path | None, typer.Option(help="recording (.parquet/.csv/.jsonl, simulators/record.py)")
    ] = None,
    ground_truth: Annotated[
        Path | None, typer.Option(help="ground truth (.jsonl/.csv) of the recording")
    ] = None,
    registry: Annotated[
        Path | None, typer.Option(help="registry CSV of the recording (default: <stem>.registry.csv)")
    ] = None,
    out: Annotated[Path, typer.Option(help="output directory (CSV, JSON, PNGs)")] = Path(
        "backtest-out"
    ),
    days: Annotated[float | None, typer.Option(help="only the first N days")] = None,
    seed: Annotated[
        int | None, typer.Option(help="scenario: replace its seed (another city, same plan)")
    ] = None,
    warmup: Annotated[
        str | None,
        typer.Option(help="recording: replay this much history first, unscored (e.g. 4d); "
                          "default: the manifest's history, else none"),
    ] = None,
    history: Annotated[
        str, typer.Option(help="history before the scored span: 'replay' it through the "
                               "worker, or 'warmup' (seed rule state only, as a worker warms "
                               "up from InfluxDB)")
    ] = "replay",
    tolerance: Annotated[
        str, typer.Option(help="how long after an incident's end a firing still counts")
    ] = "30m",
    plots: Annotated[bool, typer.Option(help="write a PNG per rule")] = True,
) -> None:
    """Replay a scenario or recording through the rules; precision/recall vs ground truth."""
    import time

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from urbanbrain.rules import backtest as bt

    if (scenario is None) == (recording is None):
        typer.echo("give exactly one of --scenario or --recording", err=True)
        raise typer.Exit(2)
    t0 = time.perf_counter()
    scored_from: int | None = None
    if scenario is not None:
        df, truth, reg, scored_from = bt.scenario_inputs(scenario, days=days, seed=seed)
    else:
        if ground_truth is None:
            typer.echo("--recording needs --ground-truth", err=True)
            raise typer.Exit(2)
        stem = recording.with_suffix("")
        reg_path = registry or Path(f"{stem}.registry.csv")
        if not reg_path.exists():
            typer.echo(f"registry {reg_path} not found: pass --registry", err=True)
            raise typer.Exit(2)
        df, truth, reg = bt.recording_inputs(recording, ground_truth, reg_path, days=days)
        if warmup is not None:
            scored_from = int(df["ts"].min()) + _duration_ms(warmup) if len(df) else None
        else:
            scored_from = bt.manifest_scored_from(recording)
    load_s = time.perf_counter() - t0
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task("feeding the worker's stages", total=None)
        res = bt.backtest(paths or [DEFAULT_RULES], df, truth, reg, out_dir=out,
                          after_ms=_duration_ms(tolerance), plots=plots,
                          scored_from_ms=scored_from, history=history,
                          on_progress=lambda done, total: progress.update(
                              task, completed=done, total=total))
    res.timing["load_s"] = load_s
    table = Table(title=f"backtest: {res.n_readings:,} readings, {res.ticks:,} ticks, scored "
                        f"{(res.span_ms[1] - res.span_ms[0]) / 86_400_000:.2f} days")
    for c in ("rule", "detects", "firings", "TP", "FP", "precision", "incidents", "recall",
              "latency med/max", "note"):
        table.add_column(c, no_wrap=c in ("rule", "detects"))
    for s in res.scores:
        # escape: "pollution[aqi_us>200]" is not rich markup
        table.add_row(s.alert, escape(s.detects or "-"), str(s.firings), str(s.tp_firings),
                      str(s.false_positives), bt.fmt(s.precision), f"{s.detected}/{s.incidents}",
                      bt.fmt(s.recall),
                      f"{bt.fmt(s.latency_median_s, '.0f')}/{bt.fmt(s.latency_max_s, '.0f')} s",
                      escape(bt.note(s)))
    con = Console(width=max(Console().width, 160))
    con.print(table)
    con.print("timing: " + ", ".join(f"{k} {v:.1f}s" for k, v in res.timing.items()))
    con.print(f"wrote {res.files.get('csv')}, {res.files.get('json')} and "
              f"{sum(1 for k in res.files if k.startswith('plot:'))} plot(s) to {out}")


try:  # the console room implements `rules list` (it reads the alerts topic)
    from urbanbrain.console.rules_status import list_rules as _list_rules_impl

    app.command("list")(_list_rules_impl)
except ModuleNotFoundError:  # pragma: no cover - installed without the console room
    pass


if __name__ == "__main__":  # pragma: no cover
    app()
