"""The review of an answer's records: what is repaired, what is refused for good, what is
left to a re-ask, and that a repair never puts words in the user's mouth."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from doxa.events.parse import Event
from doxa.llm.evidence import ChatValidation, RepairedQuote, repair_record, review_records
from doxa.llm.schema import EvidenceQuote, ProposedRecord
from doxa.relevance import Batch, make_batches

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def chat_batch() -> Batch:
    return make_batches("u1", [
        Event(id="a1", user_id="u1", type="message", timestamp=T0, speaker="assistant",
              text="Many people enjoy podcasts for this. Would you like a list of podcasts?"),
        Event(id="u2", user_id="u1", type="message", timestamp=T0, speaker="user",
              text="nah, I can't stand podcasts. I learn best from short written guides."),
        Event(id="u3", user_id="u1", type="message", timestamp=T0, speaker="user",
              text="I learn best in the morning, before work."),
        Event(id="p4", user_id="u1", type="page_view", timestamp=T0,
              properties={"path": "/guides"}),
        Event(id="s5", user_id="u1", type="system_message", timestamp=T0,
              text="The user has enabled dark mode."),
    ])[0]


def ctx() -> ChatValidation:
    return ChatValidation(batch=chat_batch(), known_record_ids=frozenset())


def proposal(*evidence: tuple[str, str], statement: str = "Prefers short written guides"
             ) -> ProposedRecord:
    return ProposedRecord(kind="preference", statement=statement, context="learning",
                          basis="explicit",
                          evidence=[EvidenceQuote(event_id=e, quote=q) for e, q in evidence])


def test_a_near_miss_is_mended_and_what_the_model_wrote_is_kept() -> None:
    record = proposal(("u2", "I learn best from short, written guides"))
    result = review_records([record], ctx())
    assert (len(result.kept), result.repairs) == (1, 1)
    [ev] = result.kept[0].evidence
    assert isinstance(ev, RepairedQuote)
    assert (ev.quote, ev.quote_as_written) == ("I learn best from short written guides",
                                               "I learn best from short, written guides")
    assert record.evidence[0].quote == "I learn best from short, written guides"  # not mutated


def test_a_verbatim_quote_is_left_alone() -> None:
    record = proposal(("u2", "I learn best from short written guides"))
    assert repair_record(record, ctx()) == (record, 0)


def test_a_quote_said_in_two_events_is_not_moved_to_either() -> None:
    record = proposal(("a1", "I learn best"))  # u2 and u3 both say it: ambiguous
    result = review_records([record], ctx())
    assert result.kept == [] and result.repairs == 0
    assert "is the assistant's words" in result.dropped[0].reasons[0]  # refused for good


def test_only_other_speakers_support_is_refused_for_good_and_a_bad_quote_is_fixable() -> None:
    result = review_records([
        proposal(("a1", "Many people enjoy podcasts"), statement="Enjoys podcasts"),
        proposal(("s5", "enabled dark mode"), statement="Uses dark mode"),
        proposal(("u2", "I adore long video courses"), statement="Likes video courses"),
    ], ctx())
    assert [d.record.statement for d in result.dropped] == ["Enjoys podcasts", "Uses dark mode"]
    assert "is the system's words" in result.dropped[1].reasons[0]
    assert [d.record.statement for d in result.fixable] == ["Likes video courses"]


def test_the_assistants_words_filed_under_a_users_event_are_refused_without_a_reask() -> None:
    record = proposal(("u2", "Many people enjoy podcasts"), statement="Enjoys podcasts")
    result = review_records([record], ctx())
    assert result.kept == [] and result.fixable == []
    assert "another speaker's words" in result.dropped[0].reasons[0]


def test_words_the_user_also_said_are_not_taken_for_the_assistants() -> None:
    record = proposal(("u3", "podcasts"), statement="Mentions podcasts")  # a1 and u2 say it
    result = review_records([record], ctx())
    assert result.dropped == []
    assert [ev.event_id for ev in result.kept[0].evidence] == ["u2"]  # moved to the user's


def test_behaviour_cited_beside_words_stays_and_the_assistant_leaves() -> None:
    record = proposal(("a1", "short written guides"), ("u2", "short written guides"),
                      ("p4", ""))
    fixed, repairs = repair_record(record, ctx())
    assert [ev.event_id for ev in fixed.evidence] == ["u2", "p4"] and repairs == 1


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60), st.sampled_from(["a1", "u2", "u3", "s5", "nope"]))
def test_a_mended_quote_is_always_verbatim_in_a_users_own_event(quote: str, cited: str) -> None:
    c = ctx()
    fixed, _ = repair_record(proposal((cited, quote)), c)
    for ev in fixed.evidence:
        if isinstance(ev, RepairedQuote):
            event = c.batch.event(ev.event_id)
            assert event is not None and event.text is not None
            assert ev.quote in event.text and c.citable(ev.event_id)


def test_records_waiting_for_a_later_reask_are_neither_lost_nor_kept() -> None:
    from doxa.llm.evidence import Review
    from doxa.llm.schema import DroppedRecord

    waiting = DroppedRecord(proposal(("u2", "not said")), ["quote 'not said' is not in ..."])
    fixed = proposal(("u3", "I learn best in the morning"), statement="Learns best mornings")
    combined = Review(fixable=[waiting]).then(Review(kept=[fixed], repairs=1))
    assert (combined.kept, combined.fixable, combined.repairs) == ([fixed], [waiting], 1)
    assert combined.settled().dropped == [waiting] and combined.settled().fixable == []


def test_a_question_written_as_the_statement_is_refused_without_a_re_ask() -> None:
    """"What do I need?" citing the user's opening question says nothing about them."""
    asked = proposal(("u2", "I learn best from short written guides"),
                     statement="What should I learn first?")
    quoted = proposal(("u3", "I learn best in the morning"),
                      statement='"Is morning best?"')
    said = proposal(("u3", "I learn best in the morning"), statement="Learns best in the morning")
    result = review_records([asked, quoted, said], ctx())
    assert [r.statement for r in result.kept] == ["Learns best in the morning"]
    assert result.fixable == [] and len(result.dropped) == 2
    assert all("is a question" in d.reasons[0] for d in result.dropped)
