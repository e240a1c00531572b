"""Plain-data builders for tests: events, batches, proposals, eval suites on disk."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from doxa.core.merge import merge
from doxa.events.parse import Event
from doxa.llm.schema import EvidenceQuote, ProposedRecord
from doxa.model.records import Record
from doxa.relevance import Batch, make_batches

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def chat(event_id: str, text: str, *, day: float = 0.0, user: str = "u1") -> Event:
    return Event(id=event_id, user_id=user, type="chat_message",
                 timestamp=T0 + timedelta(days=day), text=text)


def batch(*events: Event) -> Batch:
    [b] = make_batches(events[0].user_id, events)
    return b


def said(kind: str, statement: str, *event_ids: str, relation: str = "new",
         related: str | None = None, status: str = "active", basis: str = "explicit",
         context: str = "general") -> ProposedRecord:
    return ProposedRecord.model_validate({
        "kind": kind, "statement": statement, "context": context, "basis": basis,
        "evidence": [EvidenceQuote(event_id=e) for e in event_ids],
        "relation": relation, "related_record_id": related, "status": status})


async def seed_goal(store: Any, user_id: str, statement: str, *, generation: int = 0) -> Record:
    """Commit one goal for the user, as an ingest's merge would make it, and return it."""
    b = batch(chat(f"seed-{uuid.uuid4().hex[:8]}", statement, user=user_id))
    stored = await store.load(user_id)
    made = merge(stored, [said("goal", statement, *b.events)], b, now=NOW, prompt_version="p")
    await store.commit(made.model, expected_version=stored.version, changes=made.changes,
                       events=list(b.events.values()), processed_ids=list(b.events),
                       generation=generation)
    return next(r for r in made.model.records if r.statement == statement)


def write_suite(folder: Path, cases: Mapping[str, Any]) -> Path:
    """An eval suite on disk: each case written as JSON under its relative path."""
    for name, case in cases.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(case))
    return folder
