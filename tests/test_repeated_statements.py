"""A statement written twice in one answer, once with the words that say it and once with a
stray quote: the stray repeat is dropped, so the merged record's evidence chain holds only
the event that shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from doxa.events.parse import Event
from doxa.llm.evidence import ChatValidation, review_records
from doxa.llm.schema import ProposedRecord
from doxa.relevance import make_batches

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
TURNS = ["my neck and shoulders are super stiff by the end of every workday.",
         "can you keep answers short? I read these on my phone"]


def ctx() -> ChatValidation:
    events = [Event(id=f"e{n}", user_id="u1", type="chat_message", text=text,
                    timestamp=T0 + timedelta(minutes=n)) for n, text in enumerate(TURNS, 1)]
    [batch] = make_batches("u1", events)
    return ChatValidation(batch=batch, known_record_ids=frozenset())


def proposal(statement: str, event_id: str, quote: str) -> ProposedRecord:
    return ProposedRecord.model_validate({
        "kind": "preference", "statement": statement,
        "evidence": [{"event_id": event_id, "quote": quote}]})


def test_a_repeat_cited_to_words_that_say_nothing_of_it_is_dropped() -> None:
    stray = proposal("Wants to keep answers short", "e1", TURNS[0])
    said = proposal("wants to keep answers short.", "e2", "can you keep answers short?")
    result = review_records([stray, said], ctx())
    assert [r.evidence[0].event_id for r in result.kept] == ["e2"]
    assert [d.record.evidence[0].event_id for d in result.dropped] == ["e1"]
    assert "say nothing of it" in result.dropped[0].reasons[0]


def test_repeats_are_kept_when_none_or_all_of_their_quotes_say_it() -> None:
    neither = [proposal("Prefers brevity", "e1", TURNS[0]),
               proposal("Prefers brevity", "e2", "I read these on my phone")]
    assert len(review_records(neither, ctx()).kept) == 2
    both = [proposal("Keeps answers short on the phone", "e2", "can you keep answers short?"),
            proposal("Keeps answers short on the phone", "e2", "I read these on my phone")]
    assert len(review_records(both, ctx()).kept) == 2


def test_a_lone_record_is_never_judged_by_its_wording() -> None:
    lone = proposal("Wants to keep answers short", "e1", TURNS[0])
    assert review_records([lone], ctx()).kept == [lone]
