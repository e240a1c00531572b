"""`doxa eval calibrate` (fit a profile) and `doxa calibration` (the live table from
outcomes). No logic of their own: the fit is `doxa.eval.calibrate`, the tables are
`doxa.calibration.outcomes` and `doxa.calibration.reliability`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from doxa.calibration.outcomes import (
    DRIFT_ECE,
    DRIFT_MIN_OUTCOMES,
    UNCALIBRATED,
    LiveReliability,
    OutcomeCount,
    live_reliability,
)
from doxa.calibration.profile import (
    CalibrationProfile,
    profiles_in,
    read_profile,
    search_path,
    write_profile,
)
from doxa.calibration.reliability import Calibration, RiskPoint
from doxa.cli.options import DEFAULT_DB, DbOpt, JsonOpt, print_json
from doxa.cli.terminal import exit_on_error, fail, run
from doxa.errors import ConfigError

console = Console(highlight=False)
UNCALIBRATED_NAME = "uncalibrated"
"""How the commands spell the profile of outcomes delivered without one."""


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def reliability_table(title: str, columns: Sequence[tuple[str, Calibration | None]]) -> Table:
    """Reliability bins side by side: per column, how many, how sure, how often right."""
    table = Table(title=escape(title), title_justify="left")
    table.add_column("confidence")
    for name, _ in columns:
        table.add_column(f"{escape(name)}\nn", justify="right")
        table.add_column("mean conf.", justify="right")
        table.add_column("right", justify="right")
    shown = [c for _, c in columns if c is not None]
    edges = shown[0].bins if shown else ()
    for i, edge in enumerate(edges):
        cells = [f"{edge.lo:.1f}–{edge.hi:.1f}"]
        for _, cal in columns:
            b = cal.bins[i] if cal is not None and i < len(cal.bins) else None
            cells += ([str(b.count), _num(b.mean_confidence, 2), _num(b.accuracy, 2)]
                      if b is not None and b.count else ["0", "–", "–"])
        table.add_row(*cells)
    for label, pick in (("ECE", "ece"), ("Brier", "brier"), ("records", "n")):
        cells = [label]
        for _, cal in columns:
            value = None if cal is None else getattr(cal, pick)
            cells += [str(value) if pick == "n" and value is not None else _num(value), "", ""]
        table.add_row(*cells, style="bold")
    return table


def risk_table(before: Sequence[RiskPoint], after: Sequence[RiskPoint]) -> Table:
    """Precision of the records kept at each threshold, before and after the profile."""
    table = Table(title="risk–coverage (cross-validated): precision of the records kept",
                  title_justify="left")
    for col in ("evidence score ≥", "kept", "precision", "calibrated ≥", "kept", "precision"):
        table.add_column(col, justify="right")
    for i in range(max(len(before), len(after))):
        cells: list[str] = []
        for rows in (before, after):
            r = rows[i] if i < len(rows) else None
            cells += ([f"{r.threshold:.3f}", f"{r.kept} ({r.coverage:.0%})",
                       f"{r.precision:.3f}"] if r else ["", "", ""])
        table.add_row(*cells)
    return table


def print_profile(profile: CalibrationProfile, path: Path) -> None:
    f = profile.figures
    fitted = profile.fitted_on
    console.print(escape(f"{profile.name}: {profile.model} · prompt {profile.prompt_version} · "
                         f"{profile.method}, fitted on {fitted.records} records "
                         f"({fitted.right} right) of {fitted.cases} "
                         f"{'users' if fitted.source == 'outcomes' else 'cases'}"),
                  soft_wrap=True)
    if f is None:
        console.print("no cross-validated figures: they need outcomes from at least 2 users")
    else:
        console.print(reliability_table(
            f"{f.folds}-fold cross-validated by "
            f"{'user' if fitted.source == 'outcomes' else 'case'}",
            [("evidence score", f.before), ("calibrated", f.after)]))
        if f.risk_before or f.risk_after:
            console.print(risk_table(f.risk_before, f.risk_after))
    console.print(escape(f"profile: {path}"), soft_wrap=True)


def calibrate_command(
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="profile to write, e.g. calibration/NAME.json (NAME is the "
        "profile's name)")],
    runs: Annotated[list[Path] | None, typer.Argument(
        help="run files written by `doxa eval run` (one model and prompt version)")] = None,
    method: Annotated[str, typer.Option(
        "--method", help="isotonic (a monotone curve after the logistic fit) | logistic")
    ] = "isotonic",
    folds: Annotated[int, typer.Option("--folds", min=2, help="cross-validation folds, by "
                                       "case (by user with --from-outcomes)")] = 5,
    from_outcomes: Annotated[str | None, typer.Option(
        "--from-outcomes", help="refit from the delivery outcomes counted in this store "
        "(SQLite path or store URL) instead of run files")] = None,
    profile_name: Annotated[str | None, typer.Option(
        "--profile", help=f"with --from-outcomes: the outcomes delivered under this profile "
        f"('{UNCALIBRATED_NAME}' for none); needed when the store holds several")] = None,
    base: Annotated[Path | None, typer.Option(
        "--base", help="with --from-outcomes: the profile file the outcomes were delivered "
        "under (default: found by name in DOXA_CALIBRATION_DIR and the shipped profiles)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit a calibration profile: confidence as the probability a record is right.

    From run files, a record is right when it matched a labelled one; the figures are
    cross-validated by case and stored in the profile. With --from-outcomes, the outcomes
    are the labels (engaged and converted right, ignored and dismissed wrong)."""
    if out.suffix != ".json":
        fail(f"--out {out}: a profile is a .json file")
    name = out.stem
    with exit_on_error():
        if from_outcomes is not None:
            if runs:
                fail("give run files or --from-outcomes, not both")
            profile = _from_outcomes(from_outcomes, profile_name, base, name, folds)
        else:
            if not runs:
                fail("give at least one run file (or --from-outcomes DB)")
            from doxa.eval.calibrate import Method, fit_runs
            from doxa.eval.runfile import read_run

            loaded = [(str(p), read_run(p)) for p in runs]
            profile = fit_runs(loaded, name=name, method=cast(Method, method), folds=folds)
        path = write_profile(profile, out)
    if as_json:
        from doxa.eval.calibrate import summary

        print_json(summary(profile) | {"profile_file": str(path)})
        return
    print_profile(profile, path)


def _groups(counts: Sequence[OutcomeCount]) -> list[tuple[str, str, str]]:
    return sorted({(c.profile, c.model, c.prompt_version) for c in counts})


def _shown(profile: str) -> str:
    return profile or UNCALIBRATED_NAME


def _from_outcomes(db: str, wanted: str | None, base_file: Path | None, name: str,
                   folds: int) -> CalibrationProfile:
    from doxa.cli.main import existing_store  # the read commands' own check: no new file
    from doxa.eval.calibrate import fit_outcomes
    from doxa.store import open_store

    url = existing_store(db)

    async def read() -> list[OutcomeCount]:
        store = open_store(url)
        try:
            return await store.outcome_counts(None)
        finally:
            await store.close()

    counts = run(read)
    if wanted is not None:
        key = UNCALIBRATED if wanted == UNCALIBRATED_NAME else wanted
        counts = [c for c in counts if c.profile == key]
    groups = _groups(counts)
    if not groups:
        raise ConfigError(f"{db}: no delivery outcomes recorded"
                          + (f" under profile '{wanted}'" if wanted else ""))
    if len(groups) > 1:
        listed = ", ".join(f"{_shown(p)} ({m} · {v})" for p, m, v in groups)
        raise ConfigError(f"{db} holds outcomes under several profiles or models: {listed}; "
                          "choose one with --profile")
    (profile, model, version), = groups
    base = read_profile(base_file) if base_file is not None else (
        None if profile == UNCALIBRATED else _find_profile(profile))
    return fit_outcomes(counts, base, name=name, model=model, prompt_version=version,
                        folds=folds)


def _find_profile(name: str) -> CalibrationProfile:
    for folder in search_path():
        if folder.is_dir():
            for profile in profiles_in(folder):
                if profile.name == name:
                    return profile
    raise ConfigError(f"no profile named '{name}' in DOXA_CALIBRATION_DIR or the shipped "
                      "profiles: give its file with --base")


def _eval_figures(live: LiveReliability) -> Calibration | None:
    """The profile's own cross-validated table, to set the live one beside."""
    if live.profile == UNCALIBRATED:
        return None
    try:
        return f.after if (f := _find_profile(live.profile).figures) is not None else None
    except ConfigError:
        return None


def calibration_command(
    user: Annotated[str | None, typer.Argument(help="user id (or --all)")] = None,
    all_users: Annotated[bool, typer.Option("--all", metavar="",
                                            help="every user's outcomes together")] = False,
    db: DbOpt = DEFAULT_DB,
    max_ece: Annotated[float, typer.Option(
        "--max-ece", min=0.0, max=1.0, help="flag drift when the ECE from outcomes is above "
        "this")] = DRIFT_ECE,
    min_outcomes: Annotated[int, typer.Option(
        "--min-outcomes", min=1, help="...and at least this many outcomes were counted")
    ] = DRIFT_MIN_OUTCOMES,
    as_json: JsonOpt = False,
) -> None:
    """The live reliability table from delivery outcomes, beside the profile's own, and
    whether calibration drifted (refit with `doxa eval calibrate --from-outcomes`)."""
    if (user is None) == (not all_users):
        fail("give a user id or --all (not both)")
    from doxa.cli.main import existing_store

    url = existing_store(db)

    async def read() -> list[OutcomeCount]:
        from doxa.store import open_store

        store = open_store(url)
        try:
            return await store.outcome_counts(None if all_users else user)
        finally:
            await store.close()

    with exit_on_error():
        tables = live_reliability(run(read), max_ece=max_ece, min_outcomes=min_outcomes)
        beside = [_eval_figures(t) for t in tables]
    if as_json:
        print_json([t.model_dump(mode="json") | {
            "profile": _shown(t.profile),
            "eval": None if e is None else e.model_dump(mode="json")}
            for t, e in zip(tables, beside, strict=True)])
        return
    who = "all users" if all_users else f"user {user}"
    if not tables:
        console.print(escape(f"No delivery outcomes for {who} in {db}."), soft_wrap=True)
        return
    for table, figures in zip(tables, beside, strict=True):
        columns: list[tuple[str, Calibration | None]] = [("outcomes", table.outcomes)]
        if figures is not None:
            columns.append(("eval (cross-validated)", figures))
        console.print(reliability_table(
            f"{who} · profile {_shown(table.profile)} · {table.model} · "
            f"{table.prompt_version or '–'}", columns))
        kinds = ", ".join(f"{k} {n}" for k, n in table.kinds.items())
        console.print(escape(f"outcomes by kind: {kinds}"), soft_wrap=True)
        if table.drift:
            console.print(escape(
                f"DRIFT: ECE from outcomes {_num(table.outcomes.ece)} > {max_ece:g} over "
                f"{table.outcomes.n} outcomes; refit: doxa eval calibrate --from-outcomes "
                f"{db} --profile {_shown(table.profile)} --out calibration/NAME.json"),
                style="yellow", soft_wrap=True)
        elif table.outcomes.n < min_outcomes:
            console.print(f"{table.outcomes.n} outcome(s): too few to judge drift "
                          f"(--min-outcomes {min_outcomes})")
