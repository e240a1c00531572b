"""Causal links through merge (proposed, followed, ended), the twin, segment fallback."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from builders import NOW, T0, batch, chat, said
from doxa.core.links import LinkProposal
from doxa.core.merge import merge
from doxa.engine import Engine
from doxa.errors import SegmentNotLoadedError
from doxa.llm.schema import EvidenceQuote, Proposal
from doxa.model.records import UserModel
from doxa.store import open_store


def proposed(source: str, relation: str, target: str, *event_ids: str) -> LinkProposal:
    return LinkProposal.model_validate({
        "source": source, "relation": relation, "target": target,
        "evidence": [EvidenceQuote(event_id=e) for e in event_ids]})


def stated(kind: str, statement: str, event_id: str) -> Proposal:
    """A proposal of any kind (what a schema-shaped extraction sends for motivations)."""
    return Proposal(kind=kind, statement=statement, context="general", basis="explicit",
                    evidence=[EvidenceQuote(event_id=event_id)])


def cfo_model() -> UserModel:
    """A goal, its motivation, constraint and blocking belief, linked in one batch."""
    b = batch(chat("e1", "We want the AI pilot live this quarter", day=0),
              chat("e2", "I have to prove AI ROI to a skeptical board", day=0.1),
              chat("e3", "Finance only signs if payback is under six months", day=0.2),
              chat("e4", "Honestly the implementation complexity scares me most", day=0.3))
    proposals = [said("goal", "Wants the AI pilot live this quarter", "e1"),
                 stated("motivation", "Needs to prove AI ROI to a skeptical board", "e2"),
                 stated("constraint", "Budget approval needs payback under six months", "e3"),
                 said("belief", "Believes implementation complexity is the main risk", "e4")]
    links = [proposed("#0", "because", "#1", "e2"), proposed("#0", "constrained_by", "#2", "e3"),
             proposed("#0", "blocked_by", "#3", "e4", "e1"),
             proposed("#1", "because", "#0", "e2"),  # not from a goal: left out
             proposed("#0", "because", "#3", "e4"),  # a belief is not a motivation: left out
             proposed("#0", "because", "#9", "e2")]  # no such proposal: left out
    return merge(UserModel(user_id="u1"), proposals, b, now=NOW, prompt_version="p",
                 links=links).model


def test_proposed_links_land_on_the_goal_and_invalid_ones_are_left_out() -> None:
    model = cfo_model()
    [goal] = model.goals()
    assert sorted(link.relation for link in goal.active_links()) == [
        "because", "blocked_by", "constrained_by"]
    blocked = goal.active_links("blocked_by")[0]
    assert [e.event_id for e in blocked.evidence] == ["e1", "e4"]
    assert model.get(blocked.target_id).kind == "belief"
    assert [rev.action for rev in goal.history] == ["created", "linked", "linked", "linked"]
    assert 0 < blocked.confidence < 1


def test_a_superseded_goals_links_follow_it_and_links_to_a_superseded_record_end() -> None:
    model = cfo_model()
    [goal] = model.goals()
    belief_id = goal.active_links("blocked_by")[0].target_id
    b = batch(chat("e9", "We moved the pilot to next year, after the budget cycle", day=5),
              chat("e10", "Turns out the implementation was easy, our IT did it in a day",
                   day=5.1))
    later = merge(model, [
        said("goal", "Wants the AI pilot next year", "e9", relation="contradicts",
             related=goal.id),
        said("belief", "Believes implementation is easy", "e10", relation="contradicts",
             related=belief_id)], b, now=NOW + timedelta(days=5), prompt_version="p").model
    old = later.get(goal.id)
    assert old.status == "superseded" and not old.active_links()
    [new_goal] = later.goals()
    assert {link.relation for link in new_goal.active_links()} == {"because", "constrained_by"}
    ended = [link for link in new_goal.links if link.status == "ended"]
    assert [(link.relation, link.target_id) for link in ended] == [("blocked_by", belief_id)]
    assert "superseded by" in ended[0].note
    assert any(rev.action == "unlinked" for rev in new_goal.history)
    # as_of before the change shows the old goal's links active again
    past = later.as_of(NOW)
    assert len(past.get(goal.id).active_links()) == 3


def test_the_twin_gathers_each_goal_with_its_why_and_renders_a_prompt() -> None:
    twin = cfo_model().twin()
    [goal] = twin.goals
    assert goal.statement == "Wants the AI pilot live this quarter"
    assert [m.statement for m in goal.motivations] == ["Needs to prove AI ROI to a skeptical board"]
    assert [c.statement for c in goal.constraints] == [
        "Budget approval needs payback under six months"]
    assert [b.statement for b in goal.blockers] == [
        "Believes implementation complexity is the main risk"]
    assert goal.blockers[0].link_evidence == ["e1", "e4"]
    assert {c.action for c in twin.recent} == {"created", "linked"}
    text = twin.as_prompt(min_confidence=0.0)
    assert "- Goal: Wants the AI pilot live this quarter" in text
    assert "  - because: Needs to prove AI ROI to a skeptical board" in text
    assert "  - blocked by: Believes implementation complexity is the main risk" in text
    assert "Recent changes:" in text
    assert "no goal with enough confidence" in twin.as_prompt(min_confidence=0.99)


async def test_an_unlinked_motivation_is_shown_apart() -> None:
    eng = Engine(store="memory://", clock=lambda: NOW)
    await eng.observe("u1", "motivation", "Wants recognition from the new VP", id="m", at=T0)
    twin = (await eng.model("u1")).twin()
    assert twin.goals == [] and [r.statement for r in twin.unlinked] == [
        "Wants recognition from the new VP"]


async def segment_engine() -> Engine:
    eng = Engine(store="memory://", clock=lambda: NOW)
    styles = {"a": "bullets", "b": "bullets", "c": "narrative", "d": "narrative"}
    plans = {"a": "pro", "b": "pro", "c": "pro", "d": "free", "me": "pro"}
    for user, plan in plans.items():
        await eng.identify(user, {"plan": plan, "role": "cto"}, at=T0)
        if user in styles:
            await eng.observe(user, "preference", f"Prefers {styles[user]} answers",
                              dimension="communication_style", value=styles[user],
                              confidence=0.8, id=f"{user}-s", at=T0)
            await eng.observe(user, "goal", "Wants to cut cloud spend", confidence=0.8,
                              id=f"{user}-g", at=T0)
    await eng.observe("me", "preference", "Maybe prefers narrative answers",
                      dimension="communication_style", value="narrative", confidence=0.4,
                      id="me-s", at=T0)
    return eng


async def test_a_dimension_below_threshold_falls_back_to_the_segment_with_support() -> None:
    eng = await segment_engine()
    model = await eng.model("me", segment_by=["plan"])
    answer = model.value("communication_style", fallback="segment")
    assert (answer.value, answer.source, answer.fallback, answer.support) == (
        "bullets", "segment", True, 3)
    assert answer.confidence == pytest.approx(2 / 3)
    assert answer.distribution == pytest.approx({"bullets": 2 / 3, "narrative": 1 / 3})
    assert model.segment is not None and model.segment.traits == {"plan": "pro"}
    assert model.segment.members == 3
    own = model.value("communication_style", min_confidence=0.3, fallback="segment")
    assert (own.value, own.source) == ("narrative", "user")


async def test_top_falls_back_to_what_the_segment_holds_never_another_users_record() -> None:
    eng = await segment_engine()
    model = await eng.model("me", segment_by=["plan", "role"])
    answer = model.top("goal", fallback="segment")
    assert answer is not None and not hasattr(answer, "id")
    assert (answer.statement, answer.share, answer.support) == ("Wants to cut cloud spend",
                                                                1.0, 3)
    assert model.top("goal") is None


async def test_without_the_trait_or_a_loaded_segment_there_is_no_segment_answer() -> None:
    eng = await segment_engine()
    cold = await eng.model("me", segment_by=["region"])
    fallback = cold.value("communication_style", default="bullets", fallback="segment")
    assert (fallback.value, fallback.source, fallback.support) == ("bullets", "default", 0)
    with pytest.raises(SegmentNotLoadedError, match="segment_by"):
        (await eng.model("me")).value("communication_style", fallback="segment")


async def test_links_and_the_events_they_cite_survive_a_sqlite_store(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'why.db'}")
    eng = Engine(store=store, clock=lambda: NOW)
    await eng.ingest("u1", [{"id": "e1", "type": "identify", "timestamp": T0,
                             "properties": {"plan": "pro"}}])
    [g] = await eng.observe("u1", "goal", "Wants to launch the pilot", id="g", at=T0)
    [m] = await eng.observe("u1", "motivation", "Needs to prove ROI", id="m", at=T0)
    await eng.link("u1", "g", "because", "m", id="l", at=T0 + timedelta(hours=1))
    await eng.close()
    again = Engine(store=f"sqlite:///{tmp_path / 'why.db'}", clock=lambda: NOW)
    model = await again.model("u1")
    [link] = model.get(g.record_id).active_links()
    assert (link.relation, link.target_id) == ("because", m.record_id)
    assert "l" in model.events  # the link's own evidence: the observation event
    assert (await again.profile("u1")).traits == {"plan": "pro"}
    await again.close()


async def test_a_tenants_user_is_compared_with_that_tenants_users_only() -> None:
    from doxa.events.fields import tenant_scoped_user_ids

    eng = Engine(store="memory://", clock=lambda: NOW)
    with tenant_scoped_user_ids():
        for user, style in (("acme/a", "bullets"), ("globex/b", "narrative"),
                            ("globex/c", "narrative"), ("acme/me", None)):
            await eng.identify(user, {"plan": "pro"}, at=T0)
            if style:
                await eng.observe(user, "preference", f"Prefers {style} answers",
                                  dimension="communication_style", value=style,
                                  confidence=0.8, id=f"{user}-s", at=T0)
        model = await eng.model("acme/me", segment_by=["plan"])
        report = await eng.leverage("converted", tenant="acme", min_users=1)
    answer = model.value("communication_style", fallback="segment")
    assert (answer.value, answer.support) == ("bullets", 1)
    assert report.users == 2
