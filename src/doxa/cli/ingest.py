"""`doxa ingest FILE`: the file's users through the engine, with progress and a summary.

`ingest_file` is the plain function behind the command; `doxa backfill` without
`--batch-api` calls it too, so both commands ingest and report exactly alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from doxa.cli.options import (
    DEFAULT_DB,
    DEFAULT_MODEL,
    BaseUrlOpt,
    DbOpt,
    JsonOpt,
    ModelOpt,
    SchemaOpt,
    UserOpt,
    WhyOpt,
    print_json,
    store_url,
)
from doxa.cli.terminal import console, err_console, exit_on_error, fail, print_labelled, run
from doxa.engine import IngestResult
from doxa.events.formats import FORMATS, detect_format
from doxa.events.spool import UserSpool
from doxa.llm.providers import parse_provider, require_credentials
from doxa.runs.ingest import IngestJob, IngestTotals, ingest_on_ray, ingest_spool


def _known_format(value: str | None) -> str | None:
    if value is not None and value not in FORMATS:
        raise typer.BadParameter(f"{value!r} is not a format doxa reads; formats are "
                                 + ", ".join(FORMATS))
    return value


def ingest(
    file: Annotated[Path, typer.Argument(help="JSONL, JSON-array or JSON file of events")],
    user: UserOpt = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", callback=_known_format, metavar="|".join(FORMATS),
        help="the file's format (default: detected from its first lines): doxa events, "
             "Segment or RudderStack calls, PostHog events or exports, or OpenAI/Anthropic "
             "chat transcripts")] = None,
    model: ModelOpt = DEFAULT_MODEL,
    db: DbOpt = DEFAULT_DB,
    base_url: BaseUrlOpt = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", metavar="",
                            help="ingest the valid events and report the invalid ones")] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="users ingested at once")] = 4,
    schema: SchemaOpt = None,
    rpm: Annotated[float | None, typer.Option("--rpm", min=0.001, help="the provider's "
                   "requests-per-minute limit: calls are paced to stay under it")] = None,
    tpm: Annotated[float | None, typer.Option("--tpm", min=1, help="the provider's tokens-per-"
                   "minute limit (prompt + completion)")] = None,
    on_ray: Annotated[bool, typer.Option("--ray", metavar="", help="spread users over Ray workers "
                      "(doxa[ray]); --db must be a store they all reach")] = False,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Ray cluster to "
                           "join (ray://head:10001, auto); default: a local Ray")] = None,
    why: WhyOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Extract beliefs, goals and preferences from a file of events into the store.

    The file is streamed (validated line by line and grouped by user on disk), so its size
    does not bound memory; a file with any invalid line is refused whole.
    """
    ingest_file(file, IngestJob(model=model, store=store_url(db), base_url=base_url,
                                concurrency=concurrency, schema=schema, rpm=rpm, tpm=tpm,
                                why=why),
                user=user, skip_invalid=skip_invalid, as_json=as_json,
                on_ray=on_ray or bool(ray_address), ray_address=ray_address, fmt=fmt)


def ingest_file(file: Path, job: IngestJob, *, user: str | None, skip_invalid: bool,
                as_json: bool, on_ray: bool = False, ray_address: str | None = None,
                fmt: str | None = "doxa") -> None:
    """Ingest the file's users (only `user`'s, when given) and print the summary; exit 1
    when any user failed. `fmt` None detects the file's format."""
    require_provider(job.model, job.base_url)
    with exit_on_error():
        fmt = fmt or detect_format(file)
    if on_ray and fmt != "doxa":
        fail(f"--ray reads doxa-format files only (Ray workers read the file themselves); "
             f"{file} is {fmt}: ingest it without --ray")
    if on_ray:
        _ingest_on_ray(file, job, as_json, address=ray_address, skip_invalid=skip_invalid,
                       only_user=user)
        return
    with open_spool(file, skip_invalid=skip_invalid, user=user, fmt=fmt) as spool:
        totals = IngestTotals()
        if not spool.events:
            _say_no_events(file, spool, user)
            _report_ingest({}, totals, spool.invalid, as_json)
            return
        results = run(lambda: _ingest_with_progress(job, spool, totals,
                                                    show_progress=not as_json,
                                                    keep_results=as_json))
    _report_ingest(results, totals, spool.invalid, as_json)


def require_provider(model: str, base_url: str | None) -> None:
    """Exit 1 naming the three ways forward when the model has no key: before any input is
    read or a store is created, so a first try without a key leaves nothing behind."""
    with exit_on_error():
        require_credentials(parse_provider(model, base_url))


@contextmanager
def open_spool(file: Path, *, skip_invalid: bool, user: str | None,
               fmt: str = "doxa") -> Iterator[UserSpool]:
    """The file grouped by user on disk, its skipped lines reported; exit 1 on bad input."""
    with exit_on_error():
        spool = UserSpool.from_file(file, skip_invalid=skip_invalid, default_user_id=user,
                                    only_user=user, fmt=fmt)
    with spool:
        for skipped in spool.skipped:
            print_labelled("skipped", "yellow", str(skipped))
        yield spool


def _ingest_on_ray(file: Path, job: IngestJob, as_json: bool, *, address: str | None,
                   skip_invalid: bool, only_user: str | None) -> None:
    """`doxa ingest --ray`: the same ingest, users spread over Ray tasks."""
    with exit_on_error():
        summary = ingest_on_ray(job, file, address=address, skip_invalid=skip_invalid,
                                only_user=only_user)
    if as_json:
        print_json(summary.model_dump(mode="json"))
    else:
        console.print(f"{summary.users} user(s) ingested by {summary.workers} Ray worker(s): "
                      f"{summary.changes} change(s), {summary.llm_calls} LLM call(s), "
                      f"{summary.input_tokens} input + {summary.output_tokens} output tokens")
    for failed_user, error in summary.errors.items():
        print_labelled("failed", "red", f"{failed_user}: {error}")
    if summary.errors:
        raise typer.Exit(1)


async def _ingest_with_progress(job: IngestJob, spool: UserSpool, totals: IngestTotals, *,
                                show_progress: bool, keep_results: bool,
                                ) -> dict[str, IngestResult | BaseException]:
    with Progress(TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("users"), TimeElapsedColumn(), console=err_console,
                  disable=not show_progress) as progress:
        task = progress.add_task("users", total=spool.user_count())
        return await ingest_spool(job, spool, totals, keep_results=keep_results,
                                  on_done=lambda _user: progress.advance(task))


def _say_no_events(file: Path, spool: UserSpool, user: str | None) -> None:
    """An events file with nothing to ingest is not an error (a nightly export can be
    empty), but it is said, on stderr, and no store is created for it."""
    valid = " valid" if spool.invalid else ""
    whose = f" for user {user}" if user else ""
    err_console.print(f"{file} holds no{valid} events{whose}: nothing to ingest")


def _report_ingest(results: dict[str, IngestResult | BaseException], totals: IngestTotals,
                   skipped: int, as_json: bool) -> None:
    ok = {u: r for u, r in results.items() if isinstance(r, IngestResult)}
    failed = {u: r for u, r in results.items() if not isinstance(r, IngestResult)}
    if as_json:
        print_json({"users": {u: r.model_dump(mode="json") for u, r in ok.items()},
                    "errors": {u: str(e) for u, e in failed.items()},
                    "skipped_events": skipped})
    else:
        usage = totals.usage
        cost = "unknown" if usage.cost_usd is None else f"${usage.cost_usd:.4f}"
        console.print(f"{totals.users} user(s) ingested: {totals.changes} change(s), "
                      f"{usage.llm_calls} LLM call(s) ({usage.reasks or 0} re-ask(s); "
                      f"{usage.repairs or 0} evidence repair(s) instead), "
                      f"{usage.input_tokens} input + "
                      f"{usage.output_tokens} output tokens, cost {cost}, "
                      f"{totals.dropped} invalid record(s) dropped, {skipped} event(s) skipped")
        if usage.why_calls:
            console.print(f"why pass: {usage.why_calls} call(s), {usage.why_input_tokens} "
                          f"input + {usage.why_output_tokens} output tokens (of the above), "
                          f"{totals.dropped_links} invalid link(s) dropped")
        for u, exc in failed.items():
            print_labelled("failed", "red", f"{u}: {exc}")
    if failed:
        raise typer.Exit(1)
