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
    # the pipeline's self-metrics (rules/pipeline) join the catalogue when that module is
    # imported, as it is in every process that runs those rules
    from urbanbrain.rules import pipeline_watch  # noqa: F401

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


def _duration_ms(text: str, option: str = "") -> int:
    from urbanbrain.errors import BadValue
    from urbanbrain.rules.durations import DurationError, parse_duration

    try:
        return int(parse_duration(text))
    except DurationError as exc:
        raise BadValue(f"{option} {exc}".strip()) from None


def _other_city(exc: Exception, registry: Path | None, scenario: str | None) -> Exception:
    """A rule set that names districts or sensors the replayed city lacks, as one line.

    Why this case gets its own words: the starter rules, the rule tests and the
    standard-week scenario describe one city, ``urbanbrain up`` simulates another (seed 7);
    rules written for one and replayed against the other's registry refuse to load."""
    from urbanbrain.errors import DataError

    problems = getattr(exc, "problems", None) or []
    first = str(problems[0]) if problems else str(exc).splitlines()[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    where = f"the registry {registry}" if registry else f"the {scenario} city"
    if any(w in first for w in ("unknown district", "unknown sensor", "match no sensor")):
        return DataError(
            f"the rules name places {where} does not have: {first}{more}: a recording of "
            "`urbanbrain up` (seed 7) is another city than standard-week (which the starter "
            "rules and rules/tests describe): backtest rules written for this city, or "
            "--scenario standard-week")
    return DataError(f"rule files refused: {first}{more}: `urbanbrain rules check` lists "
                     "every problem")


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
    from rich.progress import Progress
    from rich.table import Table

    from urbanbrain import gctune
    from urbanbrain.errors import BadValue
    from urbanbrain.rules import backtest as bt
    from urbanbrain.rules.loader import RuleFileError

    gctune.tune()  # the worker's collector settings: the same engine, the same cost
    if (scenario is None) == (recording is None):
        raise BadValue("give exactly one of --scenario or --recording")
    if history not in ("replay", "warmup"):
        raise BadValue(f"--history {history!r}: use replay or warmup")
    after_ms = _duration_ms(tolerance, "--tolerance")
    warmup_ms = _duration_ms(warmup, "--warmup") if warmup is not None else None
    reg_path: Path | None = None
    if recording is not None:
        if ground_truth is None:
            raise BadValue("--recording needs --ground-truth (the incidents to score against)")
        reg_path = registry or Path(f"{recording.with_suffix('')}.registry.csv")
        if not reg_path.exists():
            raise BadValue(f"registry {reg_path} not found: pass --registry (the CSV of the "
                           "recording's city)")
        for f in (recording, ground_truth):
            if not f.is_file():
                raise FileNotFoundError(2, "no such file", str(f))
    t0 = time.perf_counter()
    scored_from: int | None = None
    with Progress(transient=True, console=Console(stderr=True)) as progress:
        task = progress.add_task("loading the readings", total=None)
        if scenario is not None:
            try:
                df, truth, reg, scored_from = bt.scenario_inputs(scenario, days=days, seed=seed)
            except ValueError as exc:  # unknown scenario: the message names the known ones
                raise BadValue(f"--scenario: {exc}") from None
        else:
            assert recording is not None and ground_truth is not None and reg_path is not None
            df, truth, reg = bt.recording_inputs(recording, ground_truth, reg_path, days=days)
            if warmup_ms is not None:
                scored_from = int(df["ts"].min()) + warmup_ms if len(df) else None
            else:
                scored_from = bt.manifest_scored_from(recording)
        load_s = time.perf_counter() - t0
        progress.update(task, description="feeding the worker's stages")
        try:
            res = bt.backtest(paths or [DEFAULT_RULES], df, truth, reg, out_dir=out,
                              after_ms=after_ms, plots=plots,
                              scored_from_ms=scored_from, history=history,
                              on_progress=lambda done, total: progress.update(
                                  task, completed=done, total=total))
        except RuleFileError as exc:
            raise _other_city(exc, reg_path, scenario) from None
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


def _scenario_or_recording(scenario: str | None, recording: Path | None,
                           ground_truth: Path | None, registry: Path | None,
                           days: float | None, seed: int | None):  # noqa: ANN202
    """(readings, truth, registry CSV, scored-from) of a named scenario or a recording."""
    from urbanbrain.rules import backtest as bt

    if (scenario is None) == (recording is None):
        typer.echo("give exactly one of --scenario or --recording", err=True)
        raise typer.Exit(2)
    if scenario is not None:
        return bt.scenario_inputs(scenario, days=days, seed=seed)
    stem = recording.with_suffix("")  # type: ignore[union-attr]
    reg_path = registry or Path(f"{stem}.registry.csv")
    if not reg_path.exists():
        typer.echo(f"registry {reg_path} not found: pass --registry", err=True)
        raise typer.Exit(2)
    truth_path = ground_truth or Path(f"{stem}.ground_truth.jsonl")
    df, truth, reg = bt.recording_inputs(recording, truth_path, reg_path, days=days)
    return df, truth, reg, bt.manifest_scored_from(recording)


@app.command()
def warmup(
    scenario: Annotated[str | None, typer.Option(help="simulator scenario, e.g. ci-day")] = None,
    recording: Annotated[Path | None, typer.Option(help="recording (.parquet/.csv/.jsonl)")] = None,
    registry: Annotated[Path | None, typer.Option(help="registry CSV of the recording")] = None,
    until: Annotated[str | None, typer.Option(
        help="history ends here (ISO 8601 or epoch ms); default: where scoring starts")] = None,
    span: Annotated[str | None, typer.Option(
        help="how much history before --until (default URBANBRAIN_ALERT_WARMUP_S)")] = None,
    seed: Annotated[int | None, typer.Option(help="scenario: replace its seed")] = None,
) -> None:
    """Load history into InfluxDB, where a fresh worker warms its rules up from at start.

    A new deploy alerts on day one: the first time a worker evaluates a partition with no
    rule state, it folds in that partition's raw points of URBANBRAIN_ALERT_WARMUP_S before
    its first reading (streams/warmup.py). This writes a recording's history as those raw
    points, with the worker's own line encoder."""
    import asyncio

    import pandas as pd

    from urbanbrain.rules import backtest as bt
    from urbanbrain.settings import get_settings
    from urbanbrain.streams.alerting import AlertSettings
    from urbanbrain.streams.warmup import backfill

    df, _, reg, scored_from = _scenario_or_recording(scenario, recording, None, registry,
                                                     None, seed)
    if until is not None:
        end = int(until) if until.isdigit() else int(pd.Timestamp(until).value // 1_000_000)
    elif scored_from is not None:
        end = scored_from
    else:
        typer.echo("the recording has no scored start: pass --until", err=True)
        raise typer.Exit(2)
    span_ms = _duration_ms(span) if span else int(AlertSettings().warmup_s * 1000)
    registry_ = bt.load_registry_csv(reg)
    wide = bt.wide_readings(df[(df["ts"] >= end - span_ms) & (df["ts"] < end)], registry_)
    history = [r for _, batch in bt.batches(wide, registry_) for r in batch]
    n = asyncio.run(backfill(get_settings(), history))
    typer.echo(f"wrote {n:,} raw points of the {span_ms / 3_600_000:g} h before "
               f"{pd.Timestamp(end, unit='ms', tz='UTC').isoformat()} to InfluxDB")


@app.command()
def livescore(
    paths: Annotated[list[str] | None, typer.Argument(help="one rule file or folder")] = None,
    scenario: Annotated[str | None, typer.Option(help="simulator scenario")] = None,
    recording: Annotated[Path | None, typer.Option(help="recording (.parquet/.csv/.jsonl)")] = None,
    ground_truth: Annotated[Path | None, typer.Option(help="ground truth of the recording")] = None,
    registry: Annotated[Path | None, typer.Option(help="registry CSV of the recording")] = None,
    days: Annotated[float | None, typer.Option(help="only the first N days")] = None,
    seed: Annotated[int | None, typer.Option(help="scenario: replace its seed")] = None,
    workers: Annotated[int, typer.Option(help="streams workers")] = 2,
    kill_at: Annotated[float | None, typer.Option(
        help="SIGKILL one worker when this fraction of the replay is published, restart it")
    ] = None,
    history: Annotated[str, typer.Option(
        help="'warmup' (rules warmup into InfluxDB) or 'replay' (published too)")] = "warmup",
    workdir: Annotated[Path, typer.Option(help="servers' state and logs")] = Path("var/livescore"),
) -> None:
    """Replay a scenario through the real servers at full speed, score the alerts topic as
    the backtest scores, and compare with the in-process backtest, rule by rule."""
    from rich.console import Console

    from urbanbrain.rules.livescore import live_score

    df, truth, reg, scored_from = _scenario_or_recording(scenario, recording, ground_truth,
                                                         registry, days, seed)
    con = Console(width=max(Console().width, 170))
    res = live_score(df, truth, reg, paths or [DEFAULT_RULES], workdir=workdir,
                     scored_from_ms=scored_from, workers=workers, kill_at=kill_at,
                     history=history, on_status=lambda m: con.print(f"[dim]{m}[/]"))
    print_comparison(con, res)


def print_comparison(con, res) -> None:  # noqa: ANN001 - rich Console, LiveResult
    from rich.markup import escape
    from rich.table import Table

    from urbanbrain.rules import backtest as bt

    table = Table(title=f"live vs in process: {res.readings:,} readings, scored "
                        f"{(res.span_ms[1] - res.span_ms[0]) / 3_600_000:.1f} h")
    for c in ("rule", "live firings", "P", "R", "in-process firings", "P", "R", "matched",
              "difference"):
        table.add_column(c, no_wrap=c == "rule")
    inproc = {s.alert: s for s in res.inproc.scores}
    per_rule = res.compare["per_rule"]
    for s in res.live:
        b = inproc[s.alert]
        pr = per_rule.get(s.alert, {"live": 0, "inproc": 0, "matched": 0})
        diff = pr["live"] + pr["inproc"] - 2 * pr["matched"]
        table.add_row(s.alert, str(s.firings), bt.fmt(s.precision), bt.fmt(s.recall),
                      str(b.firings), bt.fmt(b.precision), bt.fmt(b.recall),
                      str(pr["matched"]), "-" if not diff else f"[red]{diff}[/]")
    con.print(table)
    c = res.compare
    con.print(f"alert sets {'[green]equal[/]' if c['equal'] else '[red]differ[/]'}: "
              f"{len(c['only_live'])} only live, {len(c['only_inproc'])} only in process, "
              f"{len(c['shifted'])} matched with a shifted start")
    for what in ("only_live", "only_inproc"):
        for rule, inst, t in c[what][:10]:
            con.print(f"  {what}: {escape(rule)} {escape(inst)} at {t}")
    con.print(f"dead letters: {res.dead_letters or 'none'}")
    if res.after_end:
        con.print(f"live firings after the recording's end (processing time, not scored): "
                  f"{res.after_end}")
    con.print("timing: " + ", ".join(f"{k} {v:.1f}s" for k, v in res.timing.items()))


try:  # the console room implements `rules list` (it reads the alerts topic)
    from urbanbrain.console.rules_status import list_rules as _list_rules_impl

    app.command("list")(_list_rules_impl)
except ModuleNotFoundError:  # pragma: no cover - installed without the console room
    pass


if __name__ == "__main__":  # pragma: no cover
    app()
