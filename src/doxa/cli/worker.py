"""`doxa worker` flushes buffered events into models; `doxa buffers` shows what waits.

Events added one at a time (`Engine.add`, the collection webhooks) wait in the store's
per-user buffers until the flush policy says a user's are worth an LLM call. The worker is
the process that makes those calls: it polls the buffers, flushes the due ones through the
engine (under its rate limiter) and exits cleanly on SIGTERM or Ctrl-C, after the pass in
flight. Both commands take the same policy flags, so `doxa buffers` says what the worker,
run with those flags, would do.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from doxa.cli.ingest import require_provider
from doxa.cli.options import (
    DEFAULT_DB,
    DEFAULT_MODEL,
    BaseUrlOpt,
    DbOpt,
    JsonOpt,
    ModelOpt,
    SchemaOpt,
    WhyOpt,
    print_json,
    store_url,
)
from doxa.cli.terminal import console, err_console, print_labelled, run
from doxa.core.flush import DEFAULT_HIGH_SIGNAL_TYPES, BufferSummary, FlushPolicy
from doxa.engine import Engine, FlushReport

_DEFAULTS = FlushPolicy()
MaxEventsOpt = Annotated[int, typer.Option(
    "--max-events", min=1, help="flush a user once this many events wait")]
MaxTokensOpt = Annotated[int, typer.Option(
    "--max-tokens", min=1, help="flush a user once their waiting events hold this many "
    "relevant text tokens")]
MaxWaitOpt = Annotated[float, typer.Option(
    "--max-wait", min=0.001, help="flush a user whose oldest waiting event arrived this many "
    "seconds ago")]
HighSignalOpt = Annotated[list[str] | None, typer.Option(
    "--high-signal", help="an event type that flushes its user at once (repeat it; replaces "
    f"the default list: {', '.join(sorted(DEFAULT_HIGH_SIGNAL_TYPES))})")]


def flush_policy(max_events: int, max_tokens: int, max_wait: float,
                 high_signal: list[str] | None) -> FlushPolicy:
    return FlushPolicy(max_events=max_events, max_tokens=max_tokens, max_wait_s=max_wait,
                       high_signal_types=frozenset(high_signal) if high_signal
                       else DEFAULT_HIGH_SIGNAL_TYPES)


def worker(
    model: ModelOpt = DEFAULT_MODEL,
    db: DbOpt = DEFAULT_DB,
    base_url: BaseUrlOpt = None,
    schema: SchemaOpt = None,
    why: WhyOpt = False,
    concurrency: Annotated[int, typer.Option(min=1, help="users flushed at once")] = 4,
    rpm: Annotated[float | None, typer.Option("--rpm", min=0.001, help="the provider's "
                   "requests-per-minute limit: calls are paced to stay under it")] = None,
    tpm: Annotated[float | None, typer.Option("--tpm", min=1, help="the provider's tokens-per-"
                   "minute limit (prompt + completion)")] = None,
    poll: Annotated[float, typer.Option("--poll", min=0.01, help="seconds between looks at "
                    "the buffers")] = 1.0,
    lease: Annotated[float, typer.Option("--lease", min=0.1, help="seconds a flush holds a "
                     "user's events (renewed while it runs); a crashed worker's events go "
                     "to the next worker after this")] = 60.0,
    max_events: MaxEventsOpt = _DEFAULTS.max_events,
    max_tokens: MaxTokensOpt = _DEFAULTS.max_tokens,
    max_wait: MaxWaitOpt = _DEFAULTS.max_wait_s,
    high_signal: HighSignalOpt = None,
    drain: Annotated[bool, typer.Option("--drain", metavar="", help="flush every buffered "
                     "event now, whatever the policy, and exit when none is left")] = False,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="print one JSON object "
                       "per pass that flushed (JSON Lines)")] = False,
) -> None:
    """Extract buffered events into user models as the flush policy makes them due.

    Runs until SIGTERM or Ctrl-C (then finishes the pass in flight), or with --drain until
    the buffers are empty. Exits 1 when a drain ends with users it could not flush.
    """
    require_provider(model, base_url)
    policy = flush_policy(max_events, max_tokens, max_wait, high_signal)
    failed: dict[str, str] = {}

    def report(flushed: FlushReport) -> None:
        failed.clear()
        failed.update(flushed.errors)
        if as_json:
            sys.stdout.write(flushed.model_dump_json() + "\n")
            sys.stdout.flush()
            return
        if flushed.users_flushed:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(_count(flushed).items()))
            console.print(f"{_now()} flushed {flushed.users_flushed} user(s), {flushed.events} "
                          f"event(s) ({reasons}): {flushed.llm_calls} LLM call(s), "
                          f"{flushed.input_tokens} input + {flushed.output_tokens} output "
                          f"tokens; {flushed.users_waiting} user(s) still buffered")
        for user, error in flushed.errors.items():
            print_labelled("failed", "red", f"{user}: {error}")

    async def go() -> None:
        engine = Engine(model=model, store=store_url(db), base_url=base_url, schema=schema,
                        rpm=rpm, tpm=tpm, flush=policy, why=why)
        # The provider's SDK is loaded now, not on the first flush, so a worker holds no
        # user's events while it starts up, and a missing SDK fails before any claim.
        _ = engine.extractor
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await engine.run_worker(poll_s=poll, concurrency=concurrency, lease_s=lease,
                                    stop=stop, drain=drain, on_flush=report)
        finally:
            await engine.close()

    if not as_json:
        err_console.print(f"worker on {db}: " + ("draining the buffers" if drain else
                          f"polling every {poll:g}s; SIGTERM or Ctrl-C stops it"), style="dim")
    run(go)
    if drain and failed:
        raise typer.Exit(1)


def buffers(
    db: DbOpt = DEFAULT_DB,
    tenant: Annotated[str | None, typer.Option("--tenant", help="only this tenant's users "
                      "(as `doxa serve` stores them), without the tenant prefix")] = None,
    max_events: MaxEventsOpt = _DEFAULTS.max_events,
    max_tokens: MaxTokensOpt = _DEFAULTS.max_tokens,
    max_wait: MaxWaitOpt = _DEFAULTS.max_wait_s,
    high_signal: HighSignalOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the events waiting per user, since when, and when the worker flushes them."""
    from doxa.cli.main import existing_store, stored_user

    policy = flush_policy(max_events, max_tokens, max_wait, high_signal)
    url = existing_store(db)
    now = datetime.now(UTC)

    async def read() -> list[BufferSummary]:
        engine = Engine(store=url)
        try:
            return await engine.store.buffer_summaries(
                now=now, high_signal_types=policy.high_signal_types)
        finally:
            await engine.close()

    found = run(read)
    if tenant is not None:
        prefix = stored_user("", tenant)
        found = [replace(s, user_id=s.user_id.removeprefix(prefix)) for s in found
                 if s.user_id.startswith(prefix)]
    if as_json:
        print_json([_row(s, policy, now) for s in found])
        return
    if not found:
        console.print(f"No buffered events in {db}" + (f" for tenant {tenant}" if tenant
                                                       else "") + ".")
        return
    table = Table("user", "pending", "tokens", "high-signal", "held by a worker",
                  "oldest arrived", "due")
    for s in found:
        due_at = policy.due_at(s)
        table.add_row(s.user_id, str(s.events), str(s.tokens), str(s.high_signal),
                      str(s.claimed), _when(s.oldest, now),
                      policy.due(s, now) or (f"at {due_at:%Y-%m-%d %H:%M:%S}Z" if due_at
                                             else "-"))
    console.print(table)


def _when(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "-"
    return f"{at:%Y-%m-%d %H:%M:%S}Z ({(now - at).total_seconds():.0f}s ago)"


def _row(summary: BufferSummary, policy: FlushPolicy, now: datetime) -> dict[str, object]:
    due_at = policy.due_at(summary)
    return {"user_id": summary.user_id, "pending": summary.events, "tokens": summary.tokens,
            "high_signal": summary.high_signal, "claimed": summary.claimed,
            "oldest": summary.oldest.isoformat() if summary.oldest else None,
            "newest": summary.newest.isoformat() if summary.newest else None,
            "waiting_s": round((now - summary.oldest).total_seconds(), 3)
            if summary.oldest else None,
            "due_reason": policy.due(summary, now),
            "due_at": due_at.isoformat() if due_at else None}


def _count(flushed: FlushReport) -> dict[str, int]:
    counts: dict[str, int] = {}
    for user, reason in flushed.reasons.items():
        if user not in flushed.errors:
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")
