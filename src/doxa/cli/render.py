"""Human-readable renderings of models and ingest results for the CLI (rich)."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from doxa.model.records import KINDS, Explanation, Record, UserModel


def _ago(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def model_table(model: UserModel, *, include_inactive: bool = False,
                min_confidence: float = 0.0) -> Table:
    """Kind, statement, confidence, evidence count and last seen, surest first per kind."""
    cold = " (cold start: little evidence, treat as tentative)" if model.is_cold() else ""
    uncalibrated = ("" if model.calibrated else "\nconf. is an uncalibrated evidence score, "
                    "not a probability: no calibration profile for this model and prompt")
    table = Table(title=f"User {model.user_id}: {len(model.active())} active records{cold}"
                  f"{uncalibrated}", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("id", "left"), ("kind", "left"), ("statement", "left"), ("context", "left"),
        ("conf.", "right"), ("evidence", "right"), ("status", "left"), ("last seen", "left"))
    for col, justify in columns:
        table.add_column(col, justify=justify, overflow="fold")
    for kind in sorted({r.kind for r in model.records}, key=lambda k: (k not in KINDS, k)):
        rows = [r for r in model.records if r.kind == kind
                and (include_inactive or r.status == "active") and r.confidence >= min_confidence]
        for r in sorted(rows, key=lambda r: (-r.confidence, r.id)):
            context = f"{r.dimension}={r.value}" if r.dimension and r.value else (
                r.dimension or r.context)
            table.add_row(r.id, r.kind, r.statement, context, f"{r.confidence:.2f}",
                          _evidence_count(r), r.status, _ago(r.last_evidence_at))
    return table


def _evidence_count(record: Record) -> str:
    n_for, n_against = len(record.supporting), len(record.contradicting)
    return f"{n_for}" + (f" (-{n_against})" if n_against else "")


def print_explanation(console: Console, explanation: Explanation) -> None:
    """The record, then each piece of evidence with its event, then its history."""
    r = explanation.record
    score = ("uncalibrated" if r.evidence_score is None
             else f"evidence score {r.evidence_score:.2f}")
    console.print(Text.assemble((r.id, "bold"), f" {r.kind} · {r.status} · confidence "
                                f"{r.confidence:.2f}, {score}"))
    console.print(Text.assemble(f"  {r.statement}  ",
                                (f"({r.context}; prompt {r.prompt_version})", "dim")))
    table = Table(title="evidence", title_justify="left")
    for col in ("event", "at", "bearing", "basis", "what happened / quote"):
        table.add_column(col, overflow="fold")
    for item in explanation.evidence:
        ev, link = item.event, item.link
        what = (ev.text or f"{ev.type} {ev.properties}") if ev is not None else (
            "(an external id, not an event doxa holds)" if link.source else "(event erased)")
        if link.quote:
            what += f'\n  quote: "{link.quote}"'
        if link.quote_as_written is not None:
            what += f'\n  repaired from: "{link.quote_as_written}"'
        basis = link.basis + (f" · observed by {link.source}" if link.source else "")
        table.add_row(link.event_id, _ago(link.observed_at), link.polarity, basis, what)
    console.print(table)
    if r.links:
        console.print(links_table(r))
    if r.history:
        console.print(history_table([r]))


def links_table(record: Record) -> Table:
    """The goal's causal links: relation, the record it points at, confidence, evidence."""
    table = Table(title="links", title_justify="left")
    for col in ("relation", "record", "status", "conf.", "evidence", "note"):
        table.add_column(col, overflow="fold")
    for link in record.links:
        table.add_row(link.relation, link.target_id, link.status, f"{link.confidence:.2f}",
                      ", ".join(e.event_id for e in link.evidence), link.note)
    return table


def history_table(records: list[Record]) -> Table:
    """One row per revision: system time, event time, action, confidence, status, why."""
    table = Table(title="history", title_justify="left")
    for col in ("record", "recorded", "event time", "action", "conf.", "status", "statement",
                "events", "prompt"):
        table.add_column(col, overflow="fold")
    for r in records:
        for rev in r.history:
            table.add_row(r.id, _ago(rev.recorded_at), _ago(rev.observed_at), rev.action,
                          f"{rev.confidence:.2f}", rev.status, rev.statement,
                          ", ".join(rev.event_ids),
                          " · ".join(part for part in (rev.prompt_version, rev.note) if part))
    return table
