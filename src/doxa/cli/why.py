"""The "why" commands: `doxa observe`, `doxa link`, `doxa twin`, `doxa leverage`.

Thin over the engine (`Engine.observe`, `.link`, `UserModel.twin`, `Engine.leverage`) and
`doxa.runs.observe` for a file of observations; every one prints JSON with `--json`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast, get_args

import typer

from doxa.cli.options import (
    DEFAULT_DB,
    DbOpt,
    JsonOpt,
    TenantOpt,
    print_changes_json,
    print_json,
    store_url,
)
from doxa.cli.terminal import console, fail, run
from doxa.core.groups import GroupBy
from doxa.core.leverage import LeverageReport
from doxa.engine import Engine
from doxa.events.fields import tenant_scoped_user_ids
from doxa.model.records import Change, Relation

T = TypeVar("T")
EvidenceOpt = Annotated[list[str] | None, typer.Option(
    "--evidence", "-e", help="an event id doxa holds or an id from your own systems "
    "(repeat for more); none: the observation is its own evidence")]
ConfidenceOpt = Annotated[float | None, typer.Option(
    min=0.0, max=1.0, help="your prior for this evidence (0 to 1); later evidence moves it")]
SourceOpt = Annotated[str, typer.Option(help='who observed it: "manual" or "rule:<name>"')]
IdOpt = Annotated[str | None, typer.Option("--id", help="the observation's id: the same id "
                                           "twice changes nothing (default: derived from "
                                           "what is observed)")]
AtOpt = Annotated[datetime | None, typer.Option(help="when it was observed (ISO 8601; "
                                                "default now)")]


def _engine_run(db: str, use: Callable[[Engine], Awaitable[T]], tenant: str | None) -> T:
    """`use` an engine over `db` (created if new: observing may start a store), closed
    after; a tenant's user ids (`T/u`) are accepted when --tenant names one."""
    async def go() -> T:
        engine = Engine(store=store_url(db))
        try:
            with tenant_scoped_user_ids() if tenant is not None else nullcontext():
                return await use(engine)
        finally:
            await engine.close()
    return run(go)


def _stored(user: str, tenant: str | None) -> str:
    from doxa.cli.main import stored_user  # main registers these commands

    return stored_user(user, tenant)


def _print_changes(changes: list[Change], as_json: bool, what: str) -> None:
    if as_json:
        print_changes_json(changes)
        return
    if not changes:
        console.print(f"already recorded: this {what} changed nothing (its id was seen "
                      "before; give another --id to record it again)")
    for c in changes:
        before = "new" if c.confidence_before is None else f"{c.confidence_before:.2f}"
        console.print(f"{c.record_id} {c.kind}: {c.action}, confidence {before} → "
                      f"{c.confidence_after:.2f} · {c.statement}")


def _aware(at: datetime | None) -> datetime | None:
    if at is not None and at.tzinfo is None:
        fail("--at needs a time zone, e.g. 2026-03-02T10:00:00+00:00")
    return at


def observe(
    user: Annotated[str | None, typer.Argument(help="user id")] = None,
    kind: Annotated[str | None, typer.Argument(
        help="belief | goal | preference | motivation | constraint (or a schema's kind)")] = None,
    statement: Annotated[str | None, typer.Argument(help="one plain sentence about the user, "
                                                    "e.g. 'Is building a business case'")
                         ] = None,
    evidence: EvidenceOpt = None,
    confidence: ConfidenceOpt = None,
    context: Annotated[str | None, typer.Option(help="a short tag, e.g. purchase_intent")
                       ] = None,
    source: SourceOpt = "manual",
    id_: IdOpt = None,
    at: AtOpt = None,
    contradicts: Annotated[str | None, typer.Option(help="the record this contradicts")] = None,
    reinforces: Annotated[str | None, typer.Option(help="the record this reinforces")] = None,
    refines: Annotated[str | None, typer.Option(help="the record this restates")] = None,
    dimension: Annotated[str | None, typer.Option(help="the schema dimension it fills")] = None,
    value: Annotated[str | None, typer.Option(help="for a closed dimension, its value")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="a JSONL file of observations, "
                    "links, traits and outcomes (one per line; see docs/guides/why.md)")] = None,
    db: DbOpt = DEFAULT_DB,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record what you observed about a user, without an LLM: merged as extracted records
    are (reinforce, contradict, supersede), with its source kept for `explain`."""
    if file is not None:
        if user or kind or statement:
            fail("give either USER KIND STATEMENT or --file, not both")
        _observe_file(file, db, as_json)
        return
    if not (user and kind and statement):
        fail("USER, KIND and STATEMENT are required (or --file)")
    related = [(r, n) for r, n in (("contradicts", contradicts), ("reinforces", reinforces),
                                   ("refines", refines)) if n]
    if len(related) > 1:
        fail("give at most one of --contradicts, --reinforces, --refines")
    relation, related_id = related[0] if related else ("new", None)
    stored = _stored(user, tenant)
    changes = _engine_run(db, lambda engine: engine.observe(
        stored, kind, statement, evidence=evidence or (), confidence=confidence,
        context=context, source=source, id=id_, at=_aware(at),
        relation=cast(Literal["new", "reinforces", "refines", "contradicts"], relation),
        related_record_id=related_id, dimension=dimension, value=value), tenant)
    _print_changes(changes, as_json, "observation")


def _observe_file(file: Path, db: str, as_json: bool) -> None:
    from doxa.runs.observe import observe_file

    result = _engine_run(db, lambda engine: observe_file(engine, file), None)
    if as_json:
        print_json({"lines": result.lines, "users": len(result.users),
                    "changes": [c.model_dump(mode="json") for c in result.changes]})
        return
    counted = ", ".join(f"{n} {sort}" for sort, n in sorted(result.lines.items()))
    console.print(f"{file}: {counted or 'nothing'} for {len(result.users)} user(s); "
                  f"{len(result.changes)} change(s) to models")


def link(
    user: Annotated[str, typer.Argument(help="user id")],
    goal: Annotated[str, typer.Argument(help="the goal's record id (or the id of the "
                                        "observation that made it)")],
    relation: Annotated[str, typer.Argument(
        help="because (a motivation) | constrained_by (a constraint) | blocked_by (a belief) "
             "| in_order_to (another goal)")],
    target: Annotated[str, typer.Argument(help="the record the goal links to (or the id of "
                                          "the observation that made it)")],
    evidence: EvidenceOpt = None,
    confidence: ConfidenceOpt = None,
    source: SourceOpt = "manual",
    id_: IdOpt = None,
    at: AtOpt = None,
    db: DbOpt = DEFAULT_DB,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record why a user pursues a goal: a causal link with its own evidence."""
    if relation not in get_args(Relation):
        fail(f"RELATION must be one of {', '.join(get_args(Relation))}")
    stored = _stored(user, tenant)
    changes = _engine_run(db, lambda engine: engine.link(
        stored, goal, cast(Relation, relation), target, evidence=evidence or (),
        confidence=confidence, source=source, id=id_, at=_aware(at)), tenant)
    _print_changes(changes, as_json, "link")


def twin(
    user: Annotated[str, typer.Argument(help="user id")],
    recent_days: Annotated[float, typer.Option(min=0.0, help="changes within this many days "
                           "of the latest count as recent")] = 30.0,
    min_confidence: Annotated[float, typer.Option(min=0.0, max=1.0, help="with --prompt: "
                              "leave out what is less sure than this")] = 0.5,
    prompt: Annotated[bool, typer.Option("--prompt", metavar="", help="print as_prompt(), "
                      "the compact text for a delivery prompt")] = False,
    db: DbOpt = DEFAULT_DB,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The user's digital twin: active goals with their motivations, constraints and
    blocking beliefs (confidence and evidence), and what changed recently."""
    from doxa.cli.main import _load

    model = _load(db, _stored(user, tenant))
    view = model.twin(recent_days=recent_days)
    if as_json:
        print_json(view.model_dump(mode="json"))
        return
    if prompt:
        console.print(view.as_prompt(min_confidence=min_confidence))
        return
    console.print(view.as_prompt(min_confidence=0.0, recent=len(view.recent)))
    for goal in view.goals:
        console.print(f"  {goal.record_id}: evidence {', '.join(goal.evidence) or '-'}")
        for linked in (*goal.motivations, *goal.constraints, *goal.blockers, *goal.serves):
            console.print(f"    {linked.relation} {linked.record_id}: link evidence "
                          f"{', '.join(linked.link_evidence) or '-'}")


def leverage(
    outcome: Annotated[str, typer.Option(help="the outcome users reach, e.g. converted")],
    against: Annotated[str | None, typer.Option(help="compare only with users who reached "
                       "this outcome instead (e.g. churned); default: every other user")] = None,
    by: Annotated[str, typer.Option(help="dimension (a schema dimension's value) | "
                  "statement-cluster (similar statements)")] = "statement-cluster",
    min_users: Annotated[int, typer.Option(min=1, help="leave out groups held by fewer "
                         "users")] = 3,
    kind: Annotated[list[str] | None, typer.Option("--kind", help="only records of this "
                    "kind (repeat for more)")] = None,
    matcher: Annotated[str, typer.Option(help="lexical | embedding (the `embeddings` "
                       "extra): how statements are clustered")] = "lexical",
    user: Annotated[str | None, typer.Option("--user", help="also rank this user's records "
                    "by the leverage of their groups")] = None,
    top: Annotated[int, typer.Option(min=1, help="groups to print")] = 10,
    db: DbOpt = DEFAULT_DB,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Which record groups separate users who reach an outcome from those who do not:
    counts, outcome rates with and without, the lift with a 95% interval. Associations
    across users, not proven causes."""
    if by not in get_args(GroupBy):
        fail("--by dimension|statement-cluster")
    if matcher not in ("lexical", "embedding"):
        fail("--matcher lexical|embedding")
    from doxa.cli.main import existing_store

    url = existing_store(db)

    async def go(engine: Engine) -> tuple[LeverageReport, Any]:
        report = await engine.leverage(
            outcome, against=against, by=cast(GroupBy, by), min_users=min_users, kinds=kind,
            matcher=cast(Literal["lexical", "embedding"], matcher), tenant=tenant)
        held = None if user is None else (await engine.model(_stored(user, tenant))
                                          ).leverage(report)
        return report, held

    report, held = _engine_run(url, go, tenant)
    if as_json:
        print_json(report.model_dump(mode="json") | (
            {} if held is None else {"user": [h.model_dump(mode="json") for h in held]}))
        return
    versus = f"users who reached {against}" if against else "every other user"
    console.print(f"{report.reached} of {report.users} user(s) reached {outcome}; compared "
                  f"with {versus}; groups by {by}, held by at least {min_users} user(s)")
    console.print(report.note)
    for n, g in enumerate(report.groups[:top], start=1):
        s = g.stats
        place = f"appears {g.appears}" if g.appears else ""
        lead = (f", {g.days_before_outcome:.0f} days before {outcome}"
                if g.days_before_outcome is not None else "")
        console.print(f"{n}. [{g.kind}] {g.label}\n   lift {s.lift:.2f} (95% {s.low:.2f}–"
                      f"{s.high:.2f}{', 0.5 added to zero cells' if s.corrected else ''}): "
                      f"{s.with_outcome}/{s.with_total} holders reached {outcome} "
                      f"({g.rate_with:.0%}) vs {s.without_outcome}/{s.without_total} others "
                      f"({g.rate_without:.0%}); {place}{lead}")
    if not report.groups:
        console.print(f"no group is held by at least {min_users} user(s) and not by all")
    if held is not None:
        console.print(f"{user}'s records by leverage (associations):")
        for h in held:
            console.print(f"  {h.record_id} [{h.kind}] {h.statement}: lift {h.lift:.2f} "
                          f"({h.low:.2f}–{h.high:.2f}), {h.direction} {outcome}")
