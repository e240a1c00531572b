"""Observations: records and links given without an LLM, merged as extracted ones are.

"Extracted" here is what an ingest merges: a batch and the proposals an extraction made
for it, committed by `Engine.merge_batch` (the step `ingest` runs after the LLM call).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from builders import NOW, T0, batch, chat, said
from doxa.engine import Engine
from doxa.errors import InvalidObservationError
from doxa.llm.extractor import ExtractionOutcome
from doxa.llm.schema import Proposal


def engine() -> Engine:
    return Engine(store="memory://", clock=lambda: NOW)


async def extracted(eng: Engine, *proposals: Proposal, day: float, text: str,
                    event_id: str) -> None:
    b = batch(chat(event_id, text, day=day))
    await eng.merge_batch(b, ExtractionOutcome(batch_id=b.id, proposals=list(proposals),
                                               dropped=[]))


async def manual_belief(eng: Engine, confidence: float = 0.78) -> str:
    [change] = await eng.observe("u1", "belief", "Is building an internal business case",
                                 evidence=["pricing_3x", "comparison_page"],
                                 confidence=confidence, context="purchase_intent",
                                 source="rule:pricing_visits", id="obs-1", at=T0)
    return change.record_id


async def test_an_observation_is_a_record_at_the_stated_confidence_with_its_source() -> None:
    eng = engine()
    rid = await manual_belief(eng)
    model = await eng.model("u1")
    record = model.get(rid)
    assert (record.kind, record.context, record.confidence) == ("belief", "purchase_intent",
                                                                pytest.approx(0.78, abs=1e-4))
    assert [(e.event_id, e.source) for e in record.evidence] == [
        ("comparison_page", "rule:pricing_visits"), ("pricing_3x", "rule:pricing_visits")]
    assert record.history[0].action == "created"
    shown = str(model.explain(rid))
    assert "observed by rule:pricing_visits" in shown
    assert "an external id, not an event doxa holds" in shown


async def test_the_same_observation_id_twice_changes_nothing() -> None:
    eng = engine()
    await manual_belief(eng)
    version = (await eng.model("u1")).version
    assert await eng.observe("u1", "belief", "Is building an internal business case",
                             id="obs-1", confidence=0.2) == []
    assert (await eng.model("u1")).version == version


async def test_without_an_id_a_retried_observation_is_recorded_once() -> None:
    eng = engine()
    first = await eng.observe("u1", "goal", "Wants to launch in Q3", at=T0)
    again = await eng.observe("u1", "goal", "Wants to launch in Q3", at=T0 + timedelta(hours=1))
    assert len(first) == 1 and again == []


async def test_an_observation_without_evidence_is_its_own_evidence_and_explains() -> None:
    eng = engine()
    [change] = await eng.observe("u1", "motivation", "Needs to prove AI ROI to the board",
                                 id="obs-m", at=T0)
    model = await eng.model("u1")
    [item] = model.explain(change.record_id).evidence
    assert item.link.event_id == "obs-m" and item.event is not None
    assert item.event.type == "observation"
    assert item.event.text == "Needs to prove AI ROI to the board"


async def test_observed_evidence_that_doxa_holds_is_timed_by_the_event() -> None:
    eng = engine()
    await extracted(eng, said("goal", "Wants to cut onboarding time", "e1"), day=3,
                    text="We must cut onboarding time this quarter", event_id="e1")
    [change] = await eng.observe("u1", "constraint", "Budget approval needs payback in 6 months",
                                 evidence=["e1"], id="obs-c", at=T0 + timedelta(days=9))
    link = (await eng.model("u1")).get(change.record_id).evidence[0]
    assert link.observed_at == T0 + timedelta(days=3)


async def test_an_extracted_record_reinforces_a_manual_one() -> None:
    eng = engine()
    rid = await manual_belief(eng)
    await extracted(eng, said("belief", "Is building a business case", "e1",
                              relation="reinforces", related=rid),
                    day=2, text="I'm writing the business case for my boss", event_id="e1")
    record = (await eng.model("u1")).get(rid)
    assert record.history[-1].action == "reinforced"
    assert record.confidence > 0.78
    assert {e.source for e in record.evidence} == {"rule:pricing_visits", ""}


async def test_an_extracted_record_contradicts_a_manual_one_without_replacing_it() -> None:
    eng = engine()
    rid = await manual_belief(eng, confidence=0.95)
    await extracted(eng, said("belief", "Is not building any business case", "e1",
                              relation="contradicts", related=rid, basis="inferred"),
                    day=2, text="we just browse", event_id="e1")
    record = (await eng.model("u1")).get(rid)
    assert (record.status, record.history[-1].action) == ("active", "contradicted")
    assert record.confidence < 0.95


async def test_an_extracted_record_supersedes_a_manual_one() -> None:
    eng = engine()
    rid = await manual_belief(eng, confidence=0.55)
    await extracted(eng, said("belief", "Has dropped the business case", "e1",
                              relation="contradicts", related=rid),
                    day=2, text="We shelved the business case, no budget this year",
                    event_id="e1")
    model = await eng.model("u1")
    old = model.get(rid)
    assert (old.status, old.history[-1].action) == ("superseded", "superseded")
    assert model.get(old.superseded_by or "").statement == "Has dropped the business case"


async def extracted_goal(eng: Engine) -> str:
    await extracted(eng, said("goal", "Wants to launch the pilot in Q3", "e1"), day=1,
                    text="We want the pilot live in Q3", event_id="e1")
    [goal] = (await eng.model("u1")).goals()
    return goal.id


async def test_a_manual_record_reinforces_an_extracted_one() -> None:
    eng = engine()
    gid = await extracted_goal(eng)
    before = (await eng.model("u1")).get(gid).confidence
    [change] = await eng.observe("u1", "goal", "Wants the pilot in Q3", relation="reinforces",
                                 related_record_id=gid, evidence=["crm-note-17"], id="o1",
                                 at=T0 + timedelta(days=4))
    assert (change.record_id, change.action) == (gid, "reinforced")
    assert (await eng.model("u1")).get(gid).confidence > before


async def test_a_duplicate_statement_observed_reinforces_without_naming_the_record() -> None:
    eng = engine()
    gid = await extracted_goal(eng)
    [change] = await eng.observe("u1", "goal", "Wants to launch the pilot in Q3", id="o1",
                                 at=T0 + timedelta(days=4))
    assert (change.record_id, change.action) == (gid, "reinforced")


async def test_a_manual_record_contradicts_an_extracted_one_and_can_supersede_it() -> None:
    eng = engine()
    gid = await extracted_goal(eng)
    weak = await eng.observe("u1", "goal", "Wants the pilot in Q4", relation="contradicts",
                             related_record_id=gid, confidence=0.35, id="o1",
                             at=T0 + timedelta(days=4))
    assert [c.action for c in weak if c.record_id == gid] == ["contradicted"]
    strong = await eng.observe("u1", "goal", "Wants the pilot in Q1 next year",
                               relation="contradicts", related_record_id=gid, confidence=0.9,
                               evidence=["sales-call-3"], id="o2", at=T0 + timedelta(days=5))
    assert [c.action for c in strong if c.record_id == gid] == ["superseded"]
    model = await eng.model("u1")
    assert model.get(model.get(gid).superseded_by or "").statement == (
        "Wants the pilot in Q1 next year")


@pytest.mark.parametrize(("changes", "field"), [
    ({"source": "crm"}, "source"),
    ({"confidence": 1.5}, "confidence"),
    ({"kind": "Belief"}, "kind"),
    ({"statement": "x"}, "statement"),
    ({"evidence": ["bad id!"]}, "evidence"),
    ({"relation": "contradicts"}, "related_record_id"),
    ({"related_record_id": "r_missing", "relation": "reinforces"}, "related_record_id"),
])
async def test_a_bad_observation_is_refused_naming_the_field(changes: dict[str, object],
                                                             field: str) -> None:
    eng = engine()
    args: dict[str, object] = {"kind": "belief", "statement": "Believes setup is hard"} | changes
    with pytest.raises(InvalidObservationError) as caught:
        await eng.observe("u1", **args)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert (await eng.model("u1")).version == 0


async def test_a_link_is_recorded_on_the_goal_with_evidence_history_and_idempotency() -> None:
    eng = engine()
    gid = await extracted_goal(eng)
    [m] = await eng.observe("u1", "motivation", "Needs to prove AI ROI to the board",
                            id="o-m", at=T0 + timedelta(days=2))
    changes = await eng.link("u1", gid, "because", m.record_id, evidence=["e1"],
                             confidence=0.7, id="l1", at=T0 + timedelta(days=2))
    assert [(c.record_id, c.action) for c in changes] == [(gid, "linked")]
    goal = (await eng.model("u1")).get(gid)
    [link] = goal.active_links()
    assert (link.relation, link.target_id) == ("because", m.record_id)
    assert link.confidence == pytest.approx(0.7, abs=1e-4)
    assert link.evidence[0].source == "manual"
    assert goal.history[-1].note == f"because → {m.record_id}"
    assert await eng.link("u1", gid, "because", m.record_id, id="l1") == []


@pytest.mark.parametrize(("relation", "field", "words"), [
    ("constrained_by", "target_id", "points at a constraint"),
    ("blocked_by", "target_id", "points at a belief"),
])
async def test_a_link_between_the_wrong_kinds_is_refused(relation: str, field: str,
                                                         words: str) -> None:
    eng = engine()
    gid = await extracted_goal(eng)
    [m] = await eng.observe("u1", "motivation", "Needs to prove AI ROI", id="o-m", at=T0)
    with pytest.raises(InvalidObservationError, match=words) as caught:
        await eng.link("u1", gid, relation, m.record_id)  # type: ignore[arg-type]
    assert caught.value.field == field


async def test_a_link_from_a_record_that_is_not_a_goal_is_refused() -> None:
    eng = engine()
    [m] = await eng.observe("u1", "motivation", "Needs to prove AI ROI", id="o-m", at=T0)
    [b] = await eng.observe("u1", "belief", "Believes setup is hard", id="o-b", at=T0)
    with pytest.raises(InvalidObservationError, match="starts from a goal") as caught:
        await eng.link("u1", b.record_id, "because", m.record_id)
    assert caught.value.field == "goal_id"
    with pytest.raises(InvalidObservationError, match="not in the model"):
        await eng.link("u1", "r_nothing", "because", m.record_id)


def test_observe_and_link_have_sync_wrappers() -> None:
    with Engine(store="memory://", clock=lambda: NOW) as eng:
        [g] = eng.observe_sync("u1", "goal", "Wants to hire two engineers", id="g", at=T0)
        [c] = eng.observe_sync("u1", "constraint", "Hiring freeze until May", id="c", at=T0)
        [link] = eng.link_sync("u1", g.record_id, "constrained_by", c.record_id, id="l")
        assert link.action == "linked"
