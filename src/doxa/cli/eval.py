"""`doxa eval`: run a suite, compare two runs, render a run as HTML. No logic of its own.

Exit codes of every command: 0 success; 100 the run finished but a `--fail-under`
threshold was not met; 1 a crash or bad input (unreadable fixture or run file, bad
option value, missing API key, or a case that errored); 2 a usage error from typer.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from doxa.cli.calibration import calibrate_command
from doxa.cli.options import DEFAULT_MODEL, JsonOpt, print_json
from doxa.cli.terminal import EXIT_ERROR, err_console, exit_on_error, fail, print_labelled
from doxa.eval.baselines import BASELINES, check_baseline
from doxa.eval.compare import CaseChange, Comparison, MetricDelta, RunLabel, compare_runs
from doxa.eval.fixtures import load_suite, select_cases
from doxa.eval.match import MATCHERS
from doxa.eval.metrics import metric_values, usage_values
from doxa.eval.report import write_report
from doxa.eval.runfile import CaseResult, RunFile, read_run, write_run
from doxa.eval.runner import RunSettings, run_eval
from doxa.eval.shipped import DEFAULT_DIR, Seeded, export_cache, seed_cache_dir, shipped_folder
from doxa.eval.sidebyside import Find, GroupRow, SideBySide, markdown_table, side_by_side
from doxa.eval.thresholds import check_thresholds, parse_threshold, threshold_names
from doxa.eval.views import RecordView

T = TypeVar("T")
EXIT_OK = 0
EXIT_UNDER_THRESHOLD = 100

app = typer.Typer(
    help="Evaluate doxa on labelled fixtures. Exit codes: 0 pass, 100 ran but under a "
    "--fail-under threshold, 1 crash or bad input.",
    no_args_is_help=True, pretty_exceptions_enable=False)
app.command("calibrate")(calibrate_command)  # cli/calibration.py: a profile from runs or outcomes
# The tables here style their cells with rich markup (escaping what a case or a model
# wrote); everything on stderr goes through cli/terminal.py's plain console.
console = Console()


def _guard(make: Callable[[], T]) -> T:
    """Run a step; doxa's typed errors become a message and exit code 1."""
    with exit_on_error():
        return make()


def _default_out(suite: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{suite.resolve().name or 'suite'}-{stamp}.json"


def _execute(settings: RunSettings, cases: list[Any], quiet: bool) -> RunFile:
    """Run the cases with a progress bar on stderr."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console, disable=quiet, transient=True) as progress:
        task = progress.add_task("cases", total=len(cases))

        def done(result: CaseResult) -> None:
            mark = Text("error", "red") if result.error else Text(
                f"F1 {result.metrics.overall.f1:.2f}" if result.metrics else "")
            if not quiet:
                progress.console.print(Text.assemble(f"  {result.case_id}: ", mark))
            progress.advance(task)

        return asyncio.run(run_eval(settings, cases, on_done=done))


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def summary_table(run: RunFile) -> Table:
    """Headline metrics, per-kind scores and usage of a run."""
    m = run.metrics
    what = f" · baseline {run.baseline}" if run.baseline else ""
    table = Table(title=escape(f"{run.suite} · {run.model} · matcher {run.matcher}{what}"),
                  show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    values = metric_values(m)
    table.add_row("cases (errored)", f"{m.cases} ({m.errored})")
    for name in ("precision", "recall", "f1", "macro_f1", "evidence_precision",
                 "evidence_recall", "evidence_f1", "status_accuracy", "brier", "ece"):
        table.add_row(name, _num(values[name]))
    if m.evidence_calibration != m.calibration:  # a calibration profile read the records
        table.add_row("brier / ece of the evidence score (before the profile)",
                      f"{_num(values['evidence_brier'])} / {_num(values['evidence_ece'])}")
    table.add_row("forbidden violations", f"{m.forbidden_violations}/{m.forbidden_total}")
    table.add_row("kind mismatches", str(m.kind_mismatches))
    if m.links is not None:
        table.add_row(f"links P/R/F1 ({m.link_cases} cases)",
                      f"{m.links.precision:.2f}/{m.links.recall:.2f}/{m.links.f1:.2f}")
    for kind, s in m.per_kind.items():
        if s.tp + s.fp + s.fn:
            table.add_row(f"{kind} P/R/F1", f"{s.precision:.2f}/{s.recall:.2f}/{s.f1:.2f}")
    for dim, acc in m.value_accuracy.items():
        table.add_row(f"value.{dim}", f"{_num(acc.accuracy)} (n={acc.n})")
    for dim, acc in m.answer_accuracy.items():
        table.add_row(f"answer.{dim}", f"{_num(acc.accuracy)} (n={acc.n})")
    u = run.usage
    ratios = usage_values(u, m)
    table.add_row("LLM calls (cache hits)", f"{u.llm_calls} ({u.cache_hits})")
    if u.cache_hits:
        table.add_row("cached answers: calls, tokens in/out when first asked",
                      f"{_num(u.cached_calls, 0)}, {_num(u.cached_input_tokens, 0)}/"
                      f"{_num(u.cached_output_tokens, 0)}")
    table.add_row("calls per calling batch (re-asks)",
                  f"{_num(ratios['calls_per_calling_batch'], 2)} ({_num(ratios['reasks'], 0)})")
    table.add_row("repairs (re-ask tokens in)",
                  f"{_num(ratios['repairs'], 0)} ({_num(ratios['reask_input_tokens'], 0)})")
    table.add_row("tokens in/out", f"{u.input_tokens}/{u.output_tokens}")
    table.add_row("input tokens per case / per record found",
                  f"{_num(ratios['input_tokens_per_case'], 0)} / "
                  f"{_num(ratios['input_tokens_per_found'], 0)}")
    table.add_row("cost USD", _num(u.cost_usd, 4))
    table.add_row("ingest time s", f"{u.latency_s:.1f}")
    return table


def _exit_code(run: RunFile, failures: list[str]) -> int:
    if run.metrics.errored:
        return EXIT_ERROR
    return EXIT_UNDER_THRESHOLD if failures else EXIT_OK


def _seed(settings: RunSettings, folder: str | None, *, quiet: bool) -> Seeded | None:
    """Seed the local cache from the shipped answers, unless the run asks no model or
    caches nothing; says on stderr what it took."""
    where = _guard(lambda: shipped_folder(folder, cache=settings.cache))
    if where is None or settings.oracle:
        return None
    seeded = _guard(lambda: asyncio.run(seed_cache_dir(where, settings.cache_dir)))
    if not quiet:
        err_console.print(
            f"shipped cache {where}: {seeded.entries} answer(s) in {seeded.files} file(s), "
            f"{seeded.added} new to {Path(settings.cache_dir) / 'eval.db'}",
            markup=False, soft_wrap=True)
    return seeded


def _seeded_json(seeded: Seeded | None) -> dict[str, Any] | None:
    if seeded is None:
        return None
    return {"folder": str(seeded.folder), "files": seeded.files, "answers": seeded.entries,
            "added": seeded.added}


def _report_run(run: RunFile, path: Path, failures: list[str], as_json: bool,
                seeded: Seeded | None = None) -> None:
    if as_json:
        print_json({"run_file": str(path), "baseline": run.baseline,
                    "shipped_cache": _seeded_json(seeded),
                    "metrics": run.metrics.model_dump(mode="json"),
                    "usage": run.usage.model_dump(mode="json"),
                    "usage_ratios": usage_values(run.usage, run.metrics),
                    "errored": [c.case_id for c in run.cases if c.error],
                    "warnings": {c.case_id: c.warning for c in run.cases if c.warning},
                    "threshold_failures": failures})
        return
    console.print(summary_table(run))
    for case in run.cases:
        if case.error:
            print_labelled(f"case {case.case_id} errored:", "red", case.error)
        elif case.warning:
            print_labelled(f"case {case.case_id}:", "yellow", case.warning)
    for failure in failures:
        print_labelled("under threshold:", "yellow", failure)
    console.print(escape(f"run file: {path}"), soft_wrap=True)


@app.command("run")
def run_command(
    suite: Annotated[Path, typer.Argument(help="folder of case *.json files (or one case file)")],
    model: Annotated[str, typer.Option("--model", "-m", help="provider/model")] = DEFAULT_MODEL,
    prompt: Annotated[Path | None, typer.Option(
        "--prompt", help="prompt template folder (default: the packaged prompts)")] = None,
    matcher: Annotated[str, typer.Option(
        "--matcher", help=f"how records are matched: {' | '.join(MATCHERS)}")] = "lexical",
    judge_model: Annotated[str | None, typer.Option(
        "--judge-model", help="model for --matcher llm (default: --model)")] = None,
    base_url: Annotated[str | None, typer.Option(
        "--base-url", help="OpenAI-compatible server URL")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="run file to write (default runs/SUITE-TIME.json)")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 4,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="call the LLM even for answers cached in .doxa-cache/ or "
        f"shipped in {DEFAULT_DIR}/")] = False,
    cache_dir: Annotated[Path, typer.Option("--cache-dir")] = Path(".doxa-cache"),
    shipped_cache: Annotated[str | None, typer.Option(
        "--shipped-cache", metavar="DIR", help="folder of shipped answers (*.jsonl, written "
        "by `doxa eval export-cache`) that seed --cache-dir before the run, never "
        f"overwriting a local answer (default: {DEFAULT_DIR} when it exists; '' reads "
        "none)")] = None,
    schema: Annotated[Path | None, typer.Option(
        "--schema", help="model schema (YAML/TOML): schema-shaped extraction, so the "
        "per-dimension value accuracy is scored")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=1, help="seconds per LLM request (default 120); raise it for a "
        "slow local model")] = None,
    oracle: Annotated[bool, typer.Option(
        "--oracle", help="no LLM: feed the expected records through merge, to score merge "
        "and confidence alone")] = False,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="run a built-in baseline instead of doxa, for `doxa eval compare` "
        f"and `report --baseline`: {' | '.join(BASELINES)} (one call per case, every event "
        "as a line, a two-sentence instruction, nothing checked)")] = None,
    calibration: Annotated[Path | None, typer.Option(
        "--calibration", help="read confidences through this calibration profile (ECE and "
        "Brier then show before and after it); refused if it was fitted on these cases")
    ] = None,
    why: Annotated[bool, typer.Option(
        "--why", help="ask the why pass after each batch that yields a goal: extraction "
        "proposes causal links, scored as link P/R/F1 (one more short call per such batch)")
    ] = False,
    only: Annotated[list[str] | None, typer.Option(
        "--cases", help="run only the cases whose id matches this glob (repeatable)")] = None,
    every: Annotated[int, typer.Option(
        "--every", min=1, help="run every Nth case of the suite (after --cases), from the "
        "first: a fixed sample for quick prompt comparisons")] = 1,
    as_json: JsonOpt = False,
    fail_under: Annotated[list[str] | None, typer.Option(
        "--fail-under", help="METRIC=VALUE, repeatable (exit 100 if under; ece and brier "
        "are ceilings, exit 100 if over): "
        + ", ".join(threshold_names()))] = None,
) -> None:
    """Run a suite of labelled cases through doxa and score the final models."""
    thresholds = _guard(lambda: [parse_threshold(t) for arg in fail_under or []
                                 for t in arg.split(",") if t.strip()])
    cases = select_cases(_guard(lambda: load_suite(suite)), only or (), every)
    if not cases:
        fail(f"--cases: no case id in {suite} matches {', '.join(only or ())}")
    settings = RunSettings(
        suite=str(suite), model=model, base_url=base_url,
        prompt_dir=str(prompt) if prompt else None, matcher=matcher, judge_model=judge_model,
        concurrency=concurrency, cache=not no_cache, cache_dir=str(cache_dir), oracle=oracle,
        timeout_s=timeout, schema_file=str(schema) if schema else None, baseline=baseline,
        calibration=str(calibration) if calibration else None, why=why)
    _guard(lambda: check_baseline(settings))
    seeded = _seed(settings, shipped_cache, quiet=as_json)
    run = _guard(lambda: _execute(settings, cases, quiet=as_json))
    path = write_run(run, out or _default_out(suite))
    failures = check_thresholds(run.metrics, thresholds)
    _report_run(run, path, failures, as_json, seeded)
    raise typer.Exit(_exit_code(run, failures))


DIGITS = {"cost_usd": 4, "latency_s": 1, "llm_calls": 0, "input_tokens": 0,
          "output_tokens": 0, "forbidden_violations": 0, "kind_mismatches": 0, "reasks": 0,
          "repairs": 0, "reask_input_tokens": 0,
          "calls_per_calling_batch": 2, "input_tokens_per_case": 0,
          "input_tokens_per_found": 0}


def _delta_row(d: MetricDelta) -> tuple[str, str, str, str]:
    digits = DIGITS.get(d.name, 3)
    if d.delta is None:
        shown = "–"
    else:
        colour = "green" if d.better else "red" if d.better is False else "white"
        shown = f"[{colour}]{d.delta:+.{digits}f}[/{colour}]"
    return d.name, _num(d.a, digits), _num(d.b, digits), shown


def _records_cell(views: tuple[RecordView, ...], *, marks: bool = True) -> str:
    lines = []
    for v in views:
        mark = "•" if not marks else "[green]✓[/green]" if v.matched else "[red]✗[/red]"
        conf = "" if v.confidence is None else f" ({v.confidence:.2f})"
        status = "" if v.status == "active" else f" ({v.status})"
        lines.append(f"{mark} {v.kind}: {escape(v.statement)}{conf}{status}")
    return "\n".join(lines) or "–"


def _case_table(change: CaseChange, comparison: Comparison) -> Table:
    f1 = f"F1 {_num(change.f1_a, 2)} → {_num(change.f1_b, 2)}"
    forb = (f", forbidden {change.violations_a} → {change.violations_b}"
            if change.violations_a != change.violations_b else "")
    table = Table(title=f"{change.case_id}: {f1}{forb}", show_lines=False, expand=True)
    table.add_column("expected")
    table.add_column(f"A: {comparison.a.path}")
    table.add_column(f"B: {comparison.b.path}")
    table.add_row(_records_cell(change.expected, marks=False),
                  change.error_a or _records_cell(change.predicted_a),
                  change.error_b or _records_cell(change.predicted_b))
    return table


def _finds_table(title: str, finds: tuple[Find, ...], finder: str, other: str) -> Table:
    table = Table(title=title, show_lines=True, expand=True)
    for column in ("case", "expected", f"{finder} found", f"{other} predicted"):
        table.add_column(column)
    for find in finds:
        table.add_row(escape(find.case_id), _records_cell((find.expected,), marks=False),
                      _records_cell((find.found_by,), marks=False),
                      _records_cell(find.other_predicted))
    return table


def _group_table(title: str, rows: tuple[GroupRow, ...], baseline: str, *,
                 tokens: bool) -> Table:
    table = Table(title=title)
    table.add_column("suite" if tokens else "kind")
    table.add_column("cases", justify="right")
    columns = [("recall", "recall", 3), ("precision", "precision", 3),
               ("evidence P", "evidence_precision", 3), ("evidence R", "evidence_recall", 3)]
    if tokens:
        columns += [("in tok/case", "input_tokens_per_case", 0),
                    ("out tok/case", "output_tokens_per_case", 0)]
    for name, _, _ in columns:
        table.add_column(f"{name}\ndoxa", justify="right")
        table.add_column(f"{name}\n{escape(baseline)}", justify="right")
    for row in rows:
        cells = [escape(row.group), str(row.cases)]
        for _, field, digits in columns:
            ours, theirs = getattr(row.doxa, field), getattr(row.baseline, field)
            cells += [_num(ours, digits), _num(theirs, digits)]
        table.add_row(*cells)
    return table


LEFT_OUT_SHOWN = 10
"""A doxa run over every suite beside a baseline over one leaves out dozens: name a few."""


def print_side_by_side(view: SideBySide) -> None:
    """Baseline-only finds first, then both runs' scores per suite and per kind."""
    b = view.baseline
    console.print(f"\n[bold]{len(view.baseline_only)} expected record(s) the {escape(b)} "
                  "baseline finds and doxa misses[/bold]")
    if view.baseline_only:
        console.print(_finds_table(f"found by {escape(b)} only", view.baseline_only, b, "doxa"))
    console.print(_group_table(f"doxa beside {escape(b)}, per suite", view.suites, b, tokens=True))
    console.print(_group_table(f"doxa beside {escape(b)}, per kind", view.kinds, b, tokens=False))
    console.print(f"\n[bold]{len(view.doxa_only)} expected record(s) doxa finds and the "
                  f"{escape(b)} baseline misses[/bold]")
    if view.doxa_only:
        console.print(_finds_table("found by doxa only", view.doxa_only, "doxa", b))
    if view.left_out:
        shown = ", ".join(view.left_out[:LEFT_OUT_SHOWN])
        more = f" and {len(view.left_out) - LEFT_OUT_SHOWN} more" if len(
            view.left_out) > LEFT_OUT_SHOWN else ""
        console.print(escape(f"{len(view.left_out)} case(s) left out (in one run only, or "
                             f"errored): {shown}{more}"), soft_wrap=True)


def _run_line(side: str, label: RunLabel) -> str:
    what = f"baseline {label.baseline}" if label.baseline else "doxa"
    return (f"{side}: {label.path} ({what}, {label.model}, prompt "
            f"{label.prompt_version or '–'}, {label.matcher})")


def case_counts(comparison: Comparison) -> str:
    """How many cases each run holds and how many both do: the first thing to know about
    a comparison, since metrics over different cases do not compare."""
    shared = comparison.cases_in_both
    return (f"cases: A {shared + len(comparison.only_a)}, B {shared + len(comparison.only_b)}, "
            f"{shared} in both")


def print_comparison(comparison: Comparison) -> None:
    a, b = comparison.a, comparison.b
    console.print(escape(_run_line("A", a)), soft_wrap=True)
    console.print(escape(_run_line("B", b)), soft_wrap=True)
    console.print(case_counts(comparison), soft_wrap=True, markup=False)
    if comparison.side_by_side is not None:
        print_side_by_side(comparison.side_by_side)
    table = Table(title="metrics (B − A)")
    for column in ("metric", "A", "B", "Δ"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for delta in comparison.metrics:
        table.add_row(*_delta_row(delta))
    console.print(table)
    for title, changes in (("worse", comparison.worse), ("better", comparison.better)):
        console.print(f"\n[bold]{len(changes)} case(s) got {title}[/bold]")
        for change in changes:
            console.print(_case_table(change, comparison))
    for side, ids in (("A", comparison.only_a), ("B", comparison.only_b)):
        if ids:
            console.print(f"only in {side}: {', '.join(ids)}")


@app.command("compare")
def compare_command(
    run_a: Annotated[Path, typer.Argument(help="reference run file (A)")],
    run_b: Annotated[Path, typer.Argument(help="run file to compare with it (B)")],
    as_json: JsonOpt = False,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="with a doxa run and a `--baseline` run (either order): print "
        "only the per-suite table (recall, evidence precision, input tokens per case) as "
        "markdown")] = False,
    allow_different_suites: Annotated[bool, typer.Option(
        "--allow-different-suites", metavar="", help="compare runs whose cases differ "
        "(the metrics then describe different sets of cases)")] = False,
) -> None:
    """Metric deltas B − A, then the cases that got worse and better, side by side.

    When one run was written with `--baseline` (`doxa eval compare DOXA_RUN NAIVE_RUN`),
    doxa is first set beside the baseline: the records only the baseline found, then both
    runs' recall, precision, evidence precision/recall and tokens per case, per suite folder
    and per kind."""
    a, b = _guard(lambda: read_run(run_a)), _guard(lambda: read_run(run_b))
    comparison = compare_runs(a, b, path_a=str(run_a), path_b=str(run_b))
    if (comparison.only_a or comparison.only_b) and not allow_different_suites:
        fail(f"{case_counts(comparison)}: the runs are over different cases, so their "
             "metrics cannot be set against each other; run both on one suite, or pass "
             "--allow-different-suites")
    if markdown:
        if comparison.side_by_side is None:
            fail("--markdown needs one doxa run and one run written with --baseline")
        sys.stdout.write(markdown_table(comparison.side_by_side))
        return
    if as_json:
        print_json(comparison.model_dump(mode="json"))
    else:
        print_comparison(comparison)


@app.command("report")
def report_command(
    run: Annotated[Path, typer.Argument(help="run file written by `doxa eval run`")],
    html: Annotated[Path, typer.Option("--html", help="HTML file to write")],
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", help="a run file written by `doxa eval run --baseline`: the page sets "
        "the run beside it (baseline-only finds first, then per suite and per kind)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write one self-contained HTML page for a run: summary, cases, reliability plot."""
    loaded = _guard(lambda: read_run(run))
    beside = None
    if baseline is not None:
        reference = _guard(lambda: read_run(baseline))
        if reference.baseline is None:
            fail(f"{baseline}: not a baseline run (write one with `doxa eval run SUITE "
                  "--baseline naive`)")
        if loaded.baseline is not None:
            fail(f"{run}: a baseline run itself; give doxa's run first, the baseline's "
                  "with --baseline")
        beside = _guard(lambda: side_by_side(loaded, reference))
    path = write_report(loaded, html, beside=beside)
    if as_json:
        print_json({"report": str(path)})
    else:
        console.print(escape(f"report: {path}"), soft_wrap=True)


@app.command("export-cache")
def export_cache_command(
    out: Annotated[Path, typer.Option(
        "--out", "-o", help=f"file to write, e.g. {DEFAULT_DIR}/NAME.jsonl (replaced whole)")],
    cache_dir: Annotated[Path, typer.Option(
        "--cache-dir", help="the --cache-dir a `doxa eval run` filled")] = Path(".doxa-cache"),
    as_json: JsonOpt = False,
) -> None:
    """Write every cached LLM answer of a cache dir to a shipped file, sorted by key.

    Commit the file under evals/cache/ and `doxa eval run` answers the same requests from
    it on a fresh clone, offline. Run the suite with a fresh --cache-dir first, so the
    file holds that run's answers and nothing else."""
    count = _guard(lambda: asyncio.run(export_cache(cache_dir, out)))
    if as_json:
        print_json({"out": str(out), "answers": count,
                    "cache": str(cache_dir / "eval.db")})
    else:
        console.print(escape(f"{count} answer(s) from {cache_dir / 'eval.db'} written to {out}"),
                      soft_wrap=True)
