"""`doxa backfill FILE --batch-api`: a history through the provider's batch API, at half
price, with progress and a summary; re-running the same command resumes it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from doxa.cli import options
from doxa.cli.ingest import ingest_file, open_spool, require_provider
from doxa.cli.terminal import console, err_console, print_error, print_labelled
from doxa.engine import Engine
from doxa.errors import DoxaError
from doxa.events.spool import UserSpool
from doxa.llm.providers import BATCH_DISCOUNT
from doxa.runs.backfill import (
    Backfill,
    BackfillConfig,
    BackfillProgress,
    BackfillResult,
    default_state_path,
)
from doxa.runs.ingest import IngestJob


def backfill(
    file: Annotated[Path, typer.Argument(help="JSONL or JSON-array file of events")],
    batch_api: Annotated[bool, typer.Option("--batch-api", metavar="", help="submit through the "
                         "provider's batch API (OpenAI Batch API, Anthropic Message Batches): "
                         "half price, results within 24 h; without it, the same as `doxa "
                         "ingest`")] = False,
    user: options.UserOpt = None,
    model: options.ModelOpt = options.DEFAULT_MODEL,
    db: options.DbOpt = options.DEFAULT_DB,
    base_url: options.BaseUrlOpt = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", metavar="",
                            help="backfill the valid events and report the invalid ones")] = False,
    schema: options.SchemaOpt = None,
    state: Annotated[Path | None, typer.Option("--state", help="resume file (default "
                     "FILE.backfill-state.json); exists only while a backfill is under way")
                     ] = None,
    poll_interval: Annotated[float, typer.Option("--poll-interval", min=0.0, help="seconds between "
                             "status polls of a running batch")] = 30.0,
    retries: Annotated[int, typer.Option("--retries", min=0,
                       help="times a user's failed or expired "
                       "request is submitted again, in the next round")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="without --batch-api: users ingested at "
                           "once")] = 4,
    as_json: options.JsonOpt = False,
) -> None:
    """Backfill a history at half price through the provider's batch API; resumable.

    Rounds: each user's next batch goes in one provider job, prompted with what the
    previous rounds merged. Interrupted (Ctrl-C, a kill, a reboot), the same command picks
    up the outstanding job instead of submitting it again.
    """
    if not batch_api:  # the online path, exactly as `doxa ingest`
        ingest_file(file, IngestJob(model=model, store=options.store_url(db), base_url=base_url,
                                    concurrency=concurrency, schema=schema),
                    user=user, skip_invalid=skip_invalid, as_json=as_json)
        return
    require_provider(model, base_url)
    state_path = state or default_state_path(file)

    with open_spool(file, skip_invalid=skip_invalid, user=user) as spool:
        engine = Engine(model=model, store=options.store_url(db),
                        base_url=base_url, schema=schema)
        config = BackfillConfig(poll_interval_s=poll_interval, retries=retries)
        try:
            result = asyncio.run(_run(engine, spool, state_path, config, not as_json))
        except DoxaError as exc:
            print_error(exc)
            if state_path.exists():
                err_console.print(f"state kept in {state_path}: fix the cause and run the "
                                  "same command again to resume")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print(f"interrupted: state kept in {state_path}; run the same command "
                              "again to resume (submitted jobs keep running at the provider)")
            raise typer.Exit(130) from None
    _report(result, spool.invalid, as_json)


async def _run(engine: Engine, spool: UserSpool, state_path: Path, config: BackfillConfig,
               show_progress: bool) -> BackfillResult:
    async with engine:
        with Progress(TextColumn("[bold]backfill"), TextColumn("{task.description}"),
                      BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, disable=not show_progress) as progress:
            task = progress.add_task("preparing", total=None)

            def show(p: BackfillProgress) -> None:
                what = {"preparing": "preparing requests", "submitted": "submitted",
                        "waiting": "waiting for", "merging": "merging"}[p.phase]
                progress.update(task, description=f"round {p.round}: {what} {p.detail}".strip(),
                                completed=p.done, total=p.total or None)

            return await Backfill(engine, spool, state_path, config=config,
                                  on_progress=show).run()


def _report(result: BackfillResult, skipped: int, as_json: bool) -> None:
    if as_json:
        options.print_json(result.model_dump(mode="json") | {"skipped_events": skipped})
    else:
        def usd(value: float | None) -> str:
            return "unknown" if value is None else f"${value:.4f}"
        console.print(
            f"{result.users} user(s) backfilled through the batch API"
            + (" (resumed)" if result.resumed else "")
            + f": {result.rounds} round(s), {result.jobs} batch job(s), {result.requests} "
            f"request(s) ({result.answered} answered, {result.errored} failed), "
            f"{result.changes} change(s), {result.input_tokens} input + {result.output_tokens} "
            f"output tokens, cost {usd(result.cost_usd)} at the "
            f"{int(BATCH_DISCOUNT * 100)}% batch price (online {usd(result.online_cost_usd)}), "
            f"{result.dropped} invalid record(s) dropped, {skipped} event(s) skipped")
        for user, reason in result.failed_users.items():
            print_labelled("failed", "red", f"{user}: {reason}")
        if result.failed_users:
            err_console.print("their remaining events are unprocessed: run the same command "
                              "again (or `doxa ingest`) to retry them")
    if result.failed_users:
        raise typer.Exit(1)
