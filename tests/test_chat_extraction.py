"""Repair before re-asking, targeted re-asks and speaker rules, end to end through the engine
and a fake provider: what is sent, what is kept, what is counted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from doxa.engine import Engine
from doxa.llm.client import RetryPolicy
from doxa.llm.extractor import ExtractionSettings
from doxa.testing.fake_provider import FakeProvider, events_in

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CHAT = [
    ("a1", "assistant", "Hi! Many people love podcasts for learning. Would you like a list?"),
    ("u2", "user", "nah. I usually prefer in-person learning over online stuff - can't stand "
                   "those digital courses"),
    ("a3", "assistant", "Got it. A quick stir-fry is a popular dinner, by the way."),
    ("u4", "user", "fyi I don't eat meat, and I need to save money this month"),
    ("u5", "user", "what time does the library open on Sundays?"),
    ("u6", "user", "also we are moving house in May so my evenings are busy"),
]


def chat_events() -> list[dict[str, Any]]:
    return [{"id": eid, "type": "message", "text": text, "properties": {"role": role},
             "timestamp": (T0 + timedelta(minutes=n)).isoformat()}
            for n, (eid, role, text) in enumerate(CHAT)]


def rec(statement: str, *evidence: tuple[str, str], kind: str = "preference") -> dict[str, Any]:
    return {"kind": kind, "statement": statement, "context": "general", "basis": "explicit",
            "relation": "new", "evidence": [{"event_id": e, "quote": q} for e, q in evidence]}


LEARNING = rec("Prefers in-person learning", ("u2", "I usually prefer in-person learning"))
MEAT = rec("Does not eat meat", ("u4", "I don't eat meat"))
"""Records citing the two turns that state something plainly (u2, u4): an answer citing
both leaves no sentence passed over, so nothing is asked again about them."""


def is_reask(body: dict[str, Any]) -> bool:
    return "You correct records" in json.dumps(body)


def scripted(first: list[dict[str, Any]],
             again: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None
             ) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        if is_reask(body):
            return {"notes": "", "records": again(body) if again else []}
        return {"notes": "", "records": first}
    return answer


OPENED: list[Engine] = []


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider(keep_bodies=True).start()
    yield provider
    while OPENED:
        await OPENED.pop().close()
    await provider.stop()


def engine_for(fake: FakeProvider, reasks: int = 2) -> Engine:
    engine = Engine(model="openai/fake", store="memory://", base_url=fake.base_url,
                    api_key="x", retry=RetryPolicy(attempts=1),
                    settings=ExtractionSettings(reasks=reasks))
    OPENED.append(engine)
    return engine


async def test_a_near_miss_quote_is_repaired_without_a_reask_and_the_repair_is_kept(
        fake: FakeProvider) -> None:
    fake.answer = scripted([rec("Prefers in-person learning",
                                ("u2", "I usually prefer in-person learning over online "
                                       "courses")), MEAT])
    engine = engine_for(fake)
    result = await engine.ingest("u1", chat_events())
    assert fake.stats.requests == 1
    assert (result.llm_calls, result.reasks, result.repairs) == (1, 0, 1)
    [record] = [r for r in (await engine.model("u1")).records if "learning" in r.statement]
    [link] = record.evidence
    assert link.quote == "I usually prefer in-person learning over online stuff"
    assert link.quote_as_written == "I usually prefer in-person learning over online courses"
    assert record.history[0].note == "quote repaired: u2"
    explained = str((await engine.model("u1")).explain(record.id))
    assert 'repaired from: "I usually prefer in-person learning over online courses"' in explained
    assert "quote repaired: u2" in explained


async def test_the_reask_holds_only_the_failing_records_and_the_events_they_cite(
        fake: FakeProvider) -> None:
    fixed = rec("Does not eat meat", ("u4", "I don't eat meat"), kind="preference")
    fake.answer = scripted([
        rec("Prefers in-person learning", ("u2", "I usually prefer in-person learning")),
        rec("Is moving house in May", ("u6", "we are moving house in May"), kind="goal"),
        rec("Is vegetarian", ("u4", "I am a vegetarian since 2019")),  # not in u4: re-asked
    ], again=lambda body: [fixed])
    engine = engine_for(fake)
    result = await engine.ingest("u1", chat_events())
    assert fake.stats.requests == 2
    first, reask = fake.stats.bodies
    # the assistant's turns are shown as context, without an id to cite
    assert {eid for eid, _ in events_in(first)} == {"u2", "u4", "u5", "u6"}
    assert [eid for eid, _ in events_in(reask)] == ["u4"]  # only what the failing record cites
    sent = json.dumps(reask)
    assert "I am a vegetarian since 2019" in sent and "is not in the text of event 'u4'" in sent
    assert "in-person learning" not in sent and "moving house" not in sent
    assert (result.llm_calls, result.reasks) == (2, 1)
    assert 0 < result.reask_input_tokens < result.input_tokens - result.reask_input_tokens
    statements = sorted(r.statement for r in (await engine.model("u1")).records)
    assert statements == ["Does not eat meat", "Is moving house in May",
                          "Prefers in-person learning"]
    assert result.dropped == []


async def test_a_record_still_wrong_after_the_reasks_is_dropped_and_counted(
        fake: FakeProvider) -> None:
    wrong = rec("Is vegetarian", ("u4", "I am a vegetarian since 2019"))
    fake.answer = scripted([wrong], again=lambda body: [wrong])
    result = await engine_for(fake, reasks=2).ingest("u1", chat_events())
    assert fake.stats.requests == 3 and (result.llm_calls, result.reasks) == (3, 2)
    assert len(result.dropped) == 1 and "is not in the text" in result.dropped[0].reasons[0]


async def test_a_record_only_the_assistant_supports_is_refused_without_a_reask(
        fake: FakeProvider) -> None:
    fake.answer = scripted([
        rec("Loves podcasts", ("a1", "Many people love podcasts for learning")),
        rec("Likes stir-fry", ("a3", "A quick stir-fry is a popular dinner")),
    ])
    engine = engine_for(fake)
    result = await engine.ingest("u1", chat_events())
    # one re-ask, about the user's own sentences passed over; never about the refused two
    assert fake.stats.requests == 2 and result.reasks == 1
    reask = json.dumps(fake.stats.bodies[1])
    assert "Loves podcasts" not in reask and "stir-fry" not in reask
    assert len(await engine.model("u1")) == 0
    assert [d.statement for d in result.dropped] == ["Loves podcasts", "Likes stir-fry"]
    assert "is the assistant's words, not the user's" in result.dropped[0].reasons[0]


async def test_an_assistant_turn_cited_beside_the_users_own_leaves_the_evidence(
        fake: FakeProvider) -> None:
    fake.answer = scripted([rec("Does not eat meat", ("a3", "A quick stir-fry"),
                                ("u4", "I don't eat meat")), LEARNING])
    engine = engine_for(fake)
    result = await engine.ingest("u1", chat_events())
    assert fake.stats.requests == 1 and result.repairs == 1
    [record] = [r for r in (await engine.model("u1")).records if "meat" in r.statement]
    assert [link.event_id for link in record.evidence] == ["u4"]


async def test_a_quote_cited_to_the_wrong_event_moves_to_the_one_that_says_it(
        fake: FakeProvider) -> None:
    fake.answer = scripted([rec("Needs to save money", ("u5", "I need to save money this month"),
                                kind="goal"), LEARNING])
    engine = engine_for(fake)
    result = await engine.ingest("u1", chat_events())
    assert fake.stats.requests == 1 and result.repairs == 1
    [link] = next(r for r in (await engine.model("u1")).records if r.kind == "goal").evidence
    assert (link.event_id, link.quote) == ("u4", "I need to save money this month")


async def test_a_repaired_answer_replays_from_the_cache_with_its_repair(
        fake: FakeProvider, tmp_path: Any) -> None:
    fake.answer = scripted([rec("Prefers in-person learning",
                                ("u2", "I USUALLY prefer in-person learning")), MEAT])
    cache = f"sqlite:///{tmp_path}/cache.db"
    results, links = [], []
    for _ in range(2):  # two engines with empty stores, one shared response cache
        engine = Engine(model="openai/fake", store="memory://", base_url=fake.base_url,
                        api_key="x", retry=RetryPolicy(attempts=1), cache=True,
                        cache_store=cache)
        results.append(await engine.ingest("u1", chat_events()))
        links.append(next(r for r in (await engine.model("u1")).records
                      if "learning" in r.statement).evidence[0])
        await engine.close()
    assert fake.stats.requests == 1 and results[1].cache_hits == 1
    assert [r.repairs for r in results] == [1, 1]
    assert links[0] == links[1]
    assert (links[1].quote, links[1].quote_as_written) == (
        "I usually prefer in-person learning", "I USUALLY prefer in-person learning")


async def test_a_plainly_stated_sentence_no_record_cites_is_asked_about_with_only_its_event(
        fake: FakeProvider) -> None:
    meat = rec("Does not eat meat", ("u4", "fyi I don't eat meat, and I need to save money "
                                           "this month"))
    fake.answer = scripted([rec("Prefers in-person learning",
                                ("u2", "I usually prefer in-person learning"))],
                           again=lambda body: [meat])
    engine = engine_for(fake)
    result = await engine.ingest("u1", chat_events())
    _first, reask = fake.stats.bodies
    assert [eid for eid, _ in events_in(reask)] == ["u4"]
    sent = json.dumps(reask)
    assert "no record was written for these words" in sent and "in-person" not in sent
    assert (result.llm_calls, result.reasks) == (2, 1)
    assert sorted(r.statement for r in (await engine.model("u1")).records) == [
        "Does not eat meat", "Prefers in-person learning"]


async def test_a_follow_up_quoting_its_own_statement_takes_the_asked_sentence_as_quote(
        fake: FakeProvider) -> None:
    """Asked about one sentence, the model wrote its statement as the quote: the sentence
    it was asked about is the quote (the person's words, verbatim), with no second re-ask."""
    fake.answer = scripted([LEARNING], again=lambda body: [
        rec("Does not eat meat", ("u4", "Follows a vegetarian diet"))])
    engine = engine_for(fake)
    result = await engine.ingest("u1", chat_events())
    assert (result.llm_calls, result.reasks, result.dropped) == (2, 1, [])
    [meat] = [r for r in (await engine.model("u1")).records if r.statement == "Does not eat meat"]
    [ev] = meat.evidence
    assert (ev.event_id, ev.quote) == ("u4", "fyi I don't eat meat, and I need to save money "
                                             "this month")
    assert ev.quote_as_written == "Follows a vegetarian diet"


async def test_a_missed_sentence_rides_on_the_reask_a_failing_record_needs_anyway(
        fake: FakeProvider) -> None:
    fake.answer = scripted([rec("Is vegetarian", ("u4", "I am a vegetarian since 2019"))],
                           again=lambda body: [])
    result = await engine_for(fake).ingest("u1", chat_events())
    assert fake.stats.requests == 2 and result.reasks == 1
    reask = json.dumps(fake.stats.bodies[1])
    assert "I am a vegetarian since 2019" in reask  # the record to fix
    assert "no record was written for these words" in reask  # and u2, passed over
    assert sorted(eid for eid, _ in events_in(fake.stats.bodies[1])) == ["u2", "u4"]


async def test_sentences_cited_or_weakly_stated_and_a_zero_reask_budget_ask_nothing(
        fake: FakeProvider) -> None:
    fake.answer = scripted([rec("Prefers in-person learning",
                                ("u2", "I usually prefer in-person learning")),
                            rec("Wants to save money", ("u4", "I need to save money"),
                                kind="goal")])
    await engine_for(fake).ingest("u1", chat_events())  # u6 has no word of stance
    assert fake.stats.requests == 1
    fake.answer = scripted([rec("Is moving house in May", ("u6", "we are moving house in May"),
                                kind="goal")])
    await engine_for(fake, reasks=0).ingest("u2", chat_events())
    assert fake.stats.requests == 2
