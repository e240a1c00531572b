"""Plain-data builders for merge and confidence tests: events, batches, proposals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from doxa.events.parse import Event
from doxa.llm.schema import EvidenceQuote, ProposedRecord
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
