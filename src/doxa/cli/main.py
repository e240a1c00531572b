"""`doxa` command line: a thin typer app over the engine; no logic of its own.

One command per module where a command has helpers of its own (cli/ingest.py,
cli/backfill.py, cli/serve.py, cli/eval.py, cli/demo.py); the read commands over one
store live here. Options and defaults are shared from cli/options.py, and every failure
is reported by cli/terminal.py's `print_error`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, TypeVar, cast, get_args

import typer

from doxa import __version__
from doxa.cli import why
from doxa.cli.backfill import backfill
from doxa.cli.calibration import calibration_command
from doxa.cli.eval import app as eval_app
from doxa.cli.ingest import ingest
from doxa.cli.options import (
    DEFAULT_DB,
    DEFAULT_MODEL,
    BaseUrlOpt,
    DbOpt,
    JsonOpt,
    TenantOpt,
    UserArg,
    print_changes_json,
    print_json,
    store_url,
)
from doxa.cli.render import history_table, model_table, print_explanation
from doxa.cli.serve import serve
from doxa.cli.terminal import console, err_console, exit_on_error, fail, run
from doxa.cli.worker import buffers, worker
from doxa.core.merge import Outcome
from doxa.core.trajectories import GroupBy, aggregate
from doxa.engine import Engine
from doxa.events.fields import tenant_scoped_user_ids
from doxa.model.records import KINDS, UserModel
from doxa.model.schema import load_schema, starter_schema_text
from doxa.server.tenancy import SEPARATOR as TENANT_SEPARATOR

T = TypeVar("T")
app = typer.Typer(help="doxa: build a queryable model of each user from their events.",
                  no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None)
app.add_typer(eval_app, name="eval", help="Score extraction against labelled fixtures.")
schema_app = typer.Typer(help="Model schemas: declare the dimensions worth knowing.",
                         no_args_is_help=True)
app.add_typer(schema_app, name="schema")
app.command("ingest")(ingest)  # doxa/cli/ingest.py: the file's users through the engine
app.command("serve")(serve)  # FastAPI and uvicorn load inside it: the `server` extra
app.command("backfill")(backfill)  # doxa/cli/backfill.py: --batch-api, resume
app.command("worker")(worker)  # doxa/cli/worker.py: flush buffered events (Engine.add)
app.command("buffers")(buffers)  # doxa/cli/worker.py: what waits in the buffers
app.command("observe")(why.observe)  # doxa/cli/why.py: the "why" layer's commands
app.command("link")(why.link)
app.command("twin")(why.twin)
app.command("leverage")(why.leverage)
app.command("calibration")(calibration_command)  # doxa/cli/calibration.py: outcomes' table


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
            print_json([v.model_dump(mode="json") for v in values])
            return
        if not values:
            _say_none(f"dimension values for user {user}", db)
        for v in values:
            console.print(f"{v.dimension}: {v.value} ({v.confidence:.2f}; evidence "
                          f"{', '.join(v.evidence) or '-'})")
        return
    if as_json:
        print_json(model.model_dump(mode="json", exclude={"events"})
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
    with exit_on_error():
        explanation = model.explain(record_id)
    if as_json:
        print_json(explanation.model_dump(mode="json"))
    else:
        print_explanation(console, explanation)


@schema_app.command("check")
def schema_check(
    file: Annotated[Path, typer.Argument(help="schema file (YAML or TOML)")],
    as_json: JsonOpt = False,
) -> None:
    """Validate a model schema; a malformed one is refused naming the line and the problem."""
    with exit_on_error():
        loaded = load_schema(file)
    if as_json:  # the schema as doxa read it, defaults filled in
        print_json(loaded.model_dump(mode="json"))
        return
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
        fail(f"{path} exists; pass --force to overwrite it")
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
    with exit_on_error():
        chosen = [model.get(record_id)] if record_id else list(model.records)
    chosen.sort(key=lambda r: min((rev.recorded_at, rev.observed_at) for rev in r.history)
                if r.history else (r.last_evidence_at, r.last_evidence_at))
    if as_json:
        print_json({r.id: [rev.model_dump(mode="json") for rev in r.history] for r in chosen})
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
    if result not in get_args(Outcome):
        fail("outcome must be engaged, ignored, converted or dismissed")
    outcome_ = cast(Outcome, result)
    user = stored_user(user, tenant)
    # A tenant's user is `T/u`, which only the server's scope accepts as a user id; --tenant
    # is the operator saying "the server's user", so the same scope applies.
    with tenant_scoped_user_ids() if tenant is not None else nullcontext():
        changes = _with_engine(db, lambda engine: engine.record_outcome(
            user, record_id, outcome_, event_id=event_id))
    if as_json:
        print_changes_json(changes)
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
    kind: Annotated[str, typer.Option(help="belief | goal | preference | motivation | "
                                      "constraint")] = "goal",
    by: Annotated[str, typer.Option(help="group records by context tag or statement")] = "context",
    top: Annotated[int, typer.Option(min=1, help="how many common paths to print")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """How records move across all users: counted transitions and the common paths."""

    if kind not in KINDS or by not in get_args(GroupBy):
        fail(f"--kind {'|'.join(KINDS)}, --by context|statement")

    async def models(engine: Engine) -> list[UserModel]:
        return [await engine.model(u) for u in await engine.users()]
    report = aggregate(_with_engine(db, models), kind=kind,
                       group_by=cast(GroupBy, by), top=top)
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    if not report.users:
        _say_none(f"{kind} records", db)
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
        print_json(found)
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
    as_json: JsonOpt = False,
) -> None:
    """Erase everything held about a user: records, evidence, history, events, ledger, cache."""
    user = stored_user(user, tenant)
    url = existing_store(db)
    if not yes and not typer.confirm(f"Erase everything doxa holds about {user}?"):
        raise typer.Exit(1)
    _with_engine(url, lambda engine: engine.delete_user(user))
    if as_json:
        print_json({"erased": user})
    else:
        console.print(f"Erased user {user}.")


@app.command()
def export(user: UserArg, db: DbOpt = DEFAULT_DB, tenant: TenantOpt = None) -> None:
    """Print everything held about a user as JSON."""
    user = stored_user(user, tenant)
    print_json(_with_engine(db, lambda engine: engine.export_user(user)))


@app.command()
def demo(
    model: Annotated[str | None, typer.Option("--model", "-m", help="call this model live "
                     "instead of replaying the recorded extraction")] = None,
    base_url: BaseUrlOpt = None,
    record: Annotated[Path | None, typer.Option("--record", help="with --model: record the "
                      "live traffic to this cassette (scripts/record-cassettes uses it)")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=1, help="with --model: seconds per LLM request (default 120); raise "
        "it for a slow local model")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the real pipeline on the sample events in fixtures/demo/ and print the model.

    By default the LLM's answer is replayed from a recording of a real model (no key, no
    network); every other step runs for real. With --model the model is called live.
    """
    from doxa.cli.demo import run_demo

    result, model_ = run(lambda: run_demo(model=model, base_url=base_url, record_to=record,
                                           timeout_s=timeout))
    if as_json:
        print_json({"ingest": result.model_dump(mode="json"),
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
            fail(f"no store at {path}: check --db (or DOXA_DB); `doxa ingest` creates one")
    return url


def _with_engine(db: str, use: Callable[[Engine], Awaitable[T]]) -> T:
    """`use` an engine over the existing store `db` (no model, no key), closed after."""
    url = existing_store(db)

    async def go() -> T:
        engine = Engine(model=DEFAULT_MODEL, store=url)  # its model picks the calibration
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
