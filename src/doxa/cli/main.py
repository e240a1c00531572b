"""`doxa` command line: a thin typer app over the engine; no logic of its own."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from doxa import __version__
from doxa.cli.backfill import backfill
from doxa.cli.eval import app as eval_app
from doxa.cli.ids import UserOpt
from doxa.cli.render import history_table, model_table, print_explanation
from doxa.cli.serve import serve
from doxa.cli.terminal import console, err_console, labelled, print_error
from doxa.engine import Engine, IngestResult
from doxa.errors import DoxaError
from doxa.events.fields import tenant_scoped_user_ids
from doxa.events.spool import UserSpool
from doxa.llm.providers import parse_provider, require_credentials
from doxa.model.records import UserModel
from doxa.model.schema import load_schema, starter_schema_text
from doxa.server.tenancy import SEPARATOR as TENANT_SEPARATOR
from doxa.usage import Usage

T = TypeVar("T")
app = typer.Typer(help="doxa: build a queryable model of each user from their events.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(eval_app, name="eval", help="Score extraction against labelled fixtures.")
schema_app = typer.Typer(help="Model schemas: declare the dimensions worth knowing.",
                         no_args_is_help=True)
app.add_typer(schema_app, name="schema")
app.command("serve")(serve)  # FastAPI and uvicorn load inside it: the `server` extra
app.command("backfill")(backfill)  # doxa/backfill_command.py: --batch-api, resume

DEFAULT_MODEL = os.environ.get("DOXA_MODEL", "openai/gpt-4o-mini")
DEFAULT_DB = os.environ.get("DOXA_DB", "doxa.db")

DbOpt = Annotated[str, typer.Option("--db", help="SQLite path or store URL "
                                    "(sqlite:///x.db, postgresql://..., memory://)")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="provider/model, e.g. "
                                       "openai/gpt-4o-mini, anthropic/claude-haiku-4-5, "
                                       "ollama/llama3.1")]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server "
                                                "URL (vLLM, llama.cpp); default OPENAI_BASE_URL")]
# metavar "": a flag, shown as `--json` (typer would show `--json <bool>`, which reads as if
# it took a value).
JsonOpt = Annotated[bool, typer.Option("--json", metavar="", help="print JSON instead of "
                                       "tables")]
UserArg = Annotated[str, typer.Argument(help="user id")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="the tenant whose user this "
                      "is: `doxa serve` stores tenant T's user u as T/u")]


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"doxa {__version__}\n")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", metavar="", callback=_print_version,
                       is_eager=True, help="print doxa's version and exit")] = False,
) -> None:
    """doxa: build a queryable model of each user from their events."""


def store_url(db: str) -> str:
    return db if "://" in db else f"sqlite:///{db}"


def require_provider(model: str, base_url: str | None) -> None:
    """Exit 1 naming the three ways forward when the model has no key: before any input is
    read or a store is created, so a first try without a key leaves nothing behind."""
    try:
        require_credentials(parse_provider(model, base_url))
    except DoxaError as exc:
        print_error(exc)
        raise typer.Exit(1) from None


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; turn doxa's typed errors into a clear message and exit code 1."""
    async def main() -> T:
        return await make()
    try:
        return asyncio.run(main())
    except DoxaError as exc:
        print_error(exc)
        raise typer.Exit(1) from None


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="JSONL or JSON-array file of events")],
    user: UserOpt = None,
    model: ModelOpt = DEFAULT_MODEL,
    db: DbOpt = DEFAULT_DB,
    base_url: BaseUrlOpt = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", metavar="",
                            help="ingest the valid events and report the invalid ones")] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="users ingested at once")] = 4,
    schema: Annotated[Path | None, typer.Option("--schema", help="model schema (YAML/TOML): "
                      "extract only its dimensions")] = None,
    rpm: Annotated[float | None, typer.Option("--rpm", min=0.001, help="the provider's "
                   "requests-per-minute limit: calls are paced to stay under it")] = None,
    tpm: Annotated[float | None, typer.Option("--tpm", min=1, help="the provider's tokens-per-"
                   "minute limit (prompt + completion)")] = None,
    on_ray: Annotated[bool, typer.Option("--ray", metavar="", help="spread users over Ray workers "
                      "(doxa[ray]); --db must be a store they all reach")] = False,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Ray cluster to "
                           "join (ray://head:10001, auto); default: a local Ray")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Extract beliefs, goals and preferences from a file of events into the store.

    The file is streamed (validated line by line and grouped by user on disk), so its size
    does not bound memory; a file with any invalid line is refused whole.
    """
    require_provider(model, base_url)
    if on_ray or ray_address:
        _ingest_on_ray(file, as_json, store=store_url(db), model=model, base_url=base_url,
                       concurrency=concurrency, address=ray_address, skip_invalid=skip_invalid,
                       only_user=user, engine_options={
                           k: v for k, v in {"schema": schema, "rpm": rpm, "tpm": tpm}.items()
                           if v is not None} or None)
        return
    with open_spool(file, skip_invalid=skip_invalid, user=user) as spool:
        totals = _Totals()
        if not spool.events:
            _say_no_events(file, spool, user)
            _report_ingest({}, totals, spool.invalid, as_json)
            return
        results = run(lambda: _ingest_all(spool, model, store_url(db), base_url,
                                          concurrency, schema, show_progress=not as_json,
                                          totals=totals, keep_results=as_json,
                                          rpm=rpm, tpm=tpm))
    _report_ingest(results, totals, spool.invalid, as_json)


def _ingest_on_ray(file: Path, as_json: bool, **options: Any) -> None:
    """`doxa ingest --ray`: the same ingest, users spread over Ray tasks (doxa.runs.distributed)."""
    from doxa.runs.distributed import ingest_ray  # Ray itself is imported only on this path

    try:
        summary = ingest_ray(file, **options)
    except DoxaError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    if as_json:
        _print_json(summary.model_dump(mode="json"))
    else:
        console.print(f"{summary.users} user(s) ingested by {summary.workers} Ray worker(s): "
                      f"{summary.changes} change(s), {summary.llm_calls} LLM call(s), "
                      f"{summary.input_tokens} input + {summary.output_tokens} output tokens")
    for user, error in summary.errors.items():
        err_console.print(labelled("failed", "red", f"{user}: {error}"))
    if summary.errors:
        raise typer.Exit(1)


@contextmanager
def open_spool(file: Path, *, skip_invalid: bool, user: str | None) -> Iterator[UserSpool]:
    """The file grouped by user on disk, its skipped lines reported; exit 1 on bad input."""
    try:
        spool = UserSpool.from_file(file, skip_invalid=skip_invalid, default_user_id=user,
                                    only_user=user)
    except DoxaError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    with spool:
        for skipped in spool.skipped:
            err_console.print(labelled("skipped", "yellow", str(skipped)))
        yield spool


def _say_no_events(file: Path, spool: UserSpool, user: str | None) -> None:
    """An events file with nothing to ingest is not an error (a nightly export can be
    empty), but it is said, on stderr, and no store is created for it."""
    valid = " valid" if spool.invalid else ""
    whose = f" for user {user}" if user else ""
    err_console.print(f"{file} holds no{valid} events{whose}: nothing to ingest")


@dataclass
class _Totals:
    """What `doxa ingest` prints, summed as users finish: a file of any size, flat memory."""

    users: int = 0
    changes: int = 0
    dropped: int = 0
    usage: Usage = field(default_factory=Usage)

    def add(self, result: IngestResult) -> None:
        self.users += 1
        self.changes += len(result.changes)
        self.dropped += len(result.dropped)
        self.usage = self.usage + result.usage


async def _ingest_all(spool: UserSpool, model: str, db: str, base_url: str | None,
                      concurrency: int, schema: Path | None, *, show_progress: bool,
                      totals: _Totals, keep_results: bool,
                      rpm: float | None = None, tpm: float | None = None,
                      ) -> dict[str, IngestResult | BaseException]:
    engine = Engine(model=model, store=db, base_url=base_url, schema=schema, rpm=rpm, tpm=tpm)
    try:
        with Progress(TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("users"), TimeElapsedColumn(), console=err_console,
                      disable=not show_progress) as progress:
            task = progress.add_task("users", total=spool.user_count())

            def done(_user: str, result: IngestResult | BaseException) -> None:
                if isinstance(result, IngestResult):
                    totals.add(result)
                progress.advance(task)

            return await engine.ingest_many(spool.users(), concurrency=concurrency,
                                            on_done=done, keep_results=keep_results)
    finally:
        await engine.close()


def _report_ingest(results: dict[str, IngestResult | BaseException], totals: _Totals,
                   skipped: int, as_json: bool) -> None:
    ok = {u: r for u, r in results.items() if isinstance(r, IngestResult)}
    failed = {u: r for u, r in results.items() if not isinstance(r, IngestResult)}
    if as_json:
        _print_json({"users": {u: r.model_dump(mode="json") for u, r in ok.items()},
                     "errors": {u: str(e) for u, e in failed.items()},
                     "skipped_events": skipped})
    else:
        usage = totals.usage
        cost = "unknown" if usage.cost_usd is None else f"${usage.cost_usd:.4f}"
        console.print(f"{totals.users} user(s) ingested: {totals.changes} change(s), "
                      f"{usage.llm_calls} LLM call(s), {usage.input_tokens} input + "
                      f"{usage.output_tokens} output tokens, cost {cost}, "
                      f"{totals.dropped} invalid record(s) dropped, {skipped} event(s) skipped")
        for u, exc in failed.items():
            err_console.print(labelled("failed", "red", f"{u}: {exc}"))
    if failed:
        raise typer.Exit(1)


@app.command()
def show(
    user: UserArg,
    db: DbOpt = DEFAULT_DB,
    tenant: TenantOpt = None,
    min_confidence: Annotated[float, typer.Option(min=0.0, max=1.0,
                              help="hide records below this (0 to 1)")] = 0.0,
    all_records: Annotated[bool, typer.Option("--all", metavar="", help="include superseded, "
                                              "achieved and abandoned records")] = False,
    dimensions: Annotated[bool, typer.Option("--dimensions", metavar="", help="typed answers "
                          "per schema dimension (value, confidence, evidence)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a user's model: kind, statement, confidence, evidence count, last seen."""
    user = stored_user(user, tenant)
    model = _load(db, user)
    if dimensions:
        values = [model.value(d, min_confidence=min_confidence) for d in model.dimensions()]
        if as_json:
            _print_json([v.model_dump(mode="json") for v in values])
            return
        if not values:
            _say_none(f"dimension values for user {user}", db)
        for v in values:
            console.print(f"{v.dimension}: {v.value} ({v.confidence:.2f}; evidence "
                          f"{', '.join(v.evidence) or '-'})")
        return
    if as_json:
        _print_json(model.model_dump(mode="json", exclude={"events"})
                    | {"is_cold": model.is_cold(), "readiness": model.readiness()})
        return
    if not model.records:
        _say_none(f"records for user {user}", db)
        if tenant is None:
            _hint_tenant(db, user)
        return
    console.print(model_table(model, include_inactive=all_records, min_confidence=min_confidence))


@app.command()
def explain(
    user: UserArg,
    record_id: Annotated[str, typer.Argument(help="record id (from `doxa show`)")],
    db: DbOpt = DEFAULT_DB,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Why doxa holds a record: each piece of evidence with its event, and the history."""
    model = _load(db, stored_user(user, tenant))
    try:
        explanation = model.explain(record_id)
    except DoxaError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    if as_json:
        _print_json(explanation.model_dump(mode="json"))
    else:
        print_explanation(console, explanation)


@schema_app.command("check")
def schema_check(file: Annotated[Path, typer.Argument(help="schema file (YAML or TOML)")]) -> None:
    """Validate a model schema; a malformed one is refused naming the line and the problem."""
    try:
        loaded = load_schema(file)
    except DoxaError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    closed = sum(1 for d in loaded.dimensions if d.closed)
    console.print(f"{file}: ok, {len(loaded.dimensions)} dimension(s) ({closed} closed), "
                  f"kinds {', '.join(loaded.all_kinds)}, other: {loaded.other}")


@schema_app.command("init")
def schema_init(
    path: Annotated[Path, typer.Argument(help="where to write it")] = Path("doxa-schema.yaml"),
    force: Annotated[bool, typer.Option("--force", metavar="",
                     help="overwrite an existing file")] = False,
) -> None:
    """Write the commented starter schema for a B2B SaaS product, for a team to edit."""
    if path.exists() and not force:
        print_error(f"{path} exists; pass --force to overwrite it")
        raise typer.Exit(1)
    path.write_text(starter_schema_text(), encoding="utf-8")
    console.print(f"wrote {path}; edit it, then: doxa schema check {path}")


@app.command()
def history(
    user: UserArg,
    record_id: Annotated[str | None, typer.Argument(help="one record; all when omitted")] = None,
    db: DbOpt = DEFAULT_DB,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The trajectory of a user's records: every change, when, what and why, oldest first."""
    user = stored_user(user, tenant)
    model = _load(db, user)
    try:
        chosen = [model.get(record_id)] if record_id else list(model.records)
    except DoxaError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    chosen.sort(key=lambda r: min((rev.recorded_at, rev.observed_at) for rev in r.history)
                if r.history else (r.last_evidence_at, r.last_evidence_at))
    if as_json:
        _print_json({r.id: [rev.model_dump(mode="json") for rev in r.history] for r in chosen})
    elif not any(r.history for r in chosen):
        _say_none(f"history for user {user}", db)
    else:
        console.print(history_table(chosen))


@app.command()
def outcome(
    user: UserArg,
    record_id: Annotated[str, typer.Argument(help="the record that drove the delivery")],
    result: Annotated[str, typer.Argument(help="engaged | ignored | converted | dismissed")],
    event_id: Annotated[str | None, typer.Option(help="id of the delivery outcome event; "
                        "default: one derived from user, record and outcome, so the same "
                        "outcome recorded twice changes nothing (give each delivery its own "
                        "id to count them all)")] = None,
    db: DbOpt = DEFAULT_DB,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Feed a delivery outcome back into the record's confidence."""
    if result not in ("engaged", "ignored", "converted", "dismissed"):
        print_error("outcome must be engaged, ignored, converted or dismissed")
        raise typer.Exit(1)
    user = stored_user(user, tenant)
    # A tenant's user is `T/u`, which only the server's scope accepts as a user id; --tenant
    # is the operator saying "the server's user", so the same scope applies.
    with tenant_scoped_user_ids() if tenant is not None else nullcontext():
        changes = _with_engine(db, lambda engine: engine.record_outcome(
            user, record_id, result, event_id=event_id))  # type: ignore[arg-type]
    if as_json:
        _print_json({"already_recorded": not changes,
                     "changes": [c.model_dump(mode="json") for c in changes]})
        return
    if not changes:
        console.print(f"already recorded: this {result} outcome for {record_id} changed "
                      "nothing (pass a new --event-id for another delivery)")
    for change in changes:
        console.print(f"{change.record_id}: confidence {change.confidence_before:.2f} → "
                      f"{change.confidence_after:.2f} ({change.action})")


@app.command()
def trajectories(
    db: DbOpt = DEFAULT_DB,
    kind: Annotated[str, typer.Option(help="belief | goal | preference")] = "goal",
    by: Annotated[str, typer.Option(help="group records by context tag or statement")] = "context",
    top: Annotated[int, typer.Option(min=1, help="how many common paths to print")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """How records move across all users: counted transitions and the common paths."""
    from doxa.core.trajectories import aggregate

    if kind not in ("belief", "goal", "preference") or by not in ("context", "statement"):
        print_error("--kind belief|goal|preference, --by context|statement")
        raise typer.Exit(1)

    async def models(engine: Engine) -> list[Any]:
        return [await engine.model(u) for u in await engine.users()]
    report = aggregate(_with_engine(db, models), kind=kind,
                       group_by=by, top=top)  # type: ignore[arg-type]
    if as_json:
        _print_json(report.model_dump(mode="json"))
        return
    console.print(f"{report.users} user(s) with {kind} records, grouped by {by}")
    for t in report.transitions[:top]:
        console.print(f"  {t.source} → {t.target}: {t.users} user(s)")
    console.print("common paths:")
    for p in report.paths:
        console.print(f"  {' → '.join(p.path)}: {p.users} user(s)")


@app.command()
def users(
    db: DbOpt = DEFAULT_DB,
    tenant: Annotated[str | None, typer.Option("--tenant", help="only this tenant's users "
                      "(as `doxa serve` stores them), without the tenant prefix")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the users the store holds (a server's users show as tenant/user)."""
    found = _with_engine(db, lambda engine: engine.users())
    if tenant is not None:
        prefix = stored_user("", tenant)
        found = [u.removeprefix(prefix) for u in found if u.startswith(prefix)]
    if as_json:
        _print_json(found)
        return
    if not found:
        _say_none("users" + (f" of tenant {tenant}" if tenant is not None else ""), db)
    for u in found:
        console.print(u)


@app.command()
def delete(
    user: UserArg,
    db: DbOpt = DEFAULT_DB,
    tenant: TenantOpt = None,
    yes: Annotated[bool, typer.Option("--yes", metavar="", help="do not ask")] = False,
) -> None:
    """Erase everything held about a user: records, evidence, history, events, ledger, cache."""
    user = stored_user(user, tenant)
    url = existing_store(db)
    if not yes and not typer.confirm(f"Erase everything doxa holds about {user}?"):
        raise typer.Exit(1)
    _with_engine(url, lambda engine: engine.delete_user(user))
    console.print(f"Erased user {user}.")


@app.command()
def export(user: UserArg, db: DbOpt = DEFAULT_DB, tenant: TenantOpt = None) -> None:
    """Print everything held about a user as JSON."""
    user = stored_user(user, tenant)
    _print_json(_with_engine(db, lambda engine: engine.export_user(user)))


@app.command()
def demo(
    model: Annotated[str | None, typer.Option("--model", "-m", help="call this model live "
                     "instead of replaying the recorded extraction")] = None,
    base_url: BaseUrlOpt = None,
    record: Annotated[Path | None, typer.Option("--record", help="with --model: record the "
                      "live traffic to this cassette (scripts/record-cassettes uses it)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the real pipeline on the sample events in fixtures/demo/ and print the model.

    By default the LLM's answer is replayed from a recording of a real model (no key, no
    network); every other step runs for real. With --model the model is called live.
    """
    from doxa.cli.demo import run_demo

    result, model_ = run(lambda: run_demo(model=model, base_url=base_url, record_to=record))
    if as_json:
        _print_json({"ingest": result.model_dump(mode="json"),
                     "model": model_.model_dump(mode="json", exclude={"events"})})
        return
    console.print(f"{result.model} · prompt {result.prompt_version} · "
                  f"{result.llm_calls} LLM call(s) · {result.input_tokens} input + "
                  f"{result.output_tokens} output tokens"
                  + (" · replayed from recording" if model is None else ""), style="dim")
    console.print(model_table(model_))
    for r in model_.active()[:3]:
        print_explanation(console, model_.explain(r.id))


def existing_store(db: str) -> str:
    """The store URL of `--db` for a command that reads: a SQLite file that does not exist
    is refused naming its path, since opening it would create an empty store (and its
    directory) and answer every question with "nothing", hiding a typo."""
    url = store_url(db)
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite:///").removeprefix("sqlite://").partition("?")[0]
        if path not in ("", ":memory:") and not Path(path).exists():
            print_error(f"no store at {path}: check --db (or DOXA_DB); `doxa ingest` "
                        "creates one")
            raise typer.Exit(1)
    return url


def _with_engine(db: str, use: Callable[[Engine], Awaitable[T]]) -> T:
    """`use` an engine over the existing store `db` (no model, no key), closed after."""
    url = existing_store(db)

    async def go() -> T:
        engine = Engine(store=url)
        try:
            return await use(engine)
        finally:
            await engine.close()
    return run(go)


def _load(db: str, user: str) -> UserModel:
    return _with_engine(db, lambda engine: engine.model(user))


def stored_user(user: str, tenant: str | None) -> str:
    """The store's id for `user`: `doxa serve` keeps tenant T's user u as `T/u`."""
    return user if tenant is None else f"{tenant}{TENANT_SEPARATOR}{user}"


def _hint_tenant(db: str, user: str) -> None:
    """A user a server stored is `tenant/user`: when that is why nothing was found, say so."""
    tenants = sorted(u.rsplit(TENANT_SEPARATOR, 1)[0]
                     for u in _with_engine(db, lambda engine: engine.users())
                     if u.endswith(TENANT_SEPARATOR + user))
    if tenants:
        err_console.print(f"{user} is stored by `doxa serve` for tenant(s) "
                          f"{', '.join(tenants)}: add --tenant {tenants[0]}")


def _say_none(what: str, db: str) -> None:
    """Every read command says "No ... in DB." the same way when it finds nothing."""
    console.print(f"No {what} in {db}.")


def main() -> None:
    # instructor logs every re-ask at ERROR; doxa reports what was dropped itself.
    logging.getLogger("instructor").setLevel(logging.CRITICAL)
    app()


if __name__ == "__main__":
    main()
