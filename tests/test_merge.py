"""Merge scenarios, each a few lines of the product's story, and merge's properties."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from builders import NOW, T0, batch, chat, said
from doxa.core.confidence import current_confidence
from doxa.core.merge import MergeConfig, apply_outcome, merge
from doxa.events.parse import Event
from doxa.model.records import UserModel

EMPTY = UserModel(user_id="u1")


def apply(model: UserModel, b, *proposals):  # type: ignore[no-untyped-def]
    return merge(model, proposals, b, now=NOW, prompt_version="p@1").model


def test_three_independent_confirmations_beat_one() -> None:
    b1 = batch(chat("e1", "I need SSO for our Okta setup"))
    once = apply(EMPTY, b1, said("goal", "Wants SSO with Okta", "e1", basis="inferred"))
    [goal] = once.goals()
    b2 = batch(chat("e2", "Okta SSO is a must", day=1), chat("e3", "any news on SSO?", day=2))
    thrice = apply(once, b2, said("goal", "Wants SSO", "e2", "e3", relation="reinforces",
                                  related=goal.id, basis="inferred"))
    assert thrice.get(goal.id).confidence > goal.confidence
    assert [e.event_id for e in thrice.get(goal.id).evidence] == ["e1", "e2", "e3"]


def test_switching_to_the_monthly_plan_supersedes_prefers_annual_billing() -> None:
    b1 = batch(chat("e1", "Annual billing works best for our budget cycle"))
    model = apply(EMPTY, b1, said("preference", "Prefers annual billing", "e1"))
    [annual] = model.preferences()
    b2 = batch(chat("e2", "I switched to the monthly plan", day=40))
    after = apply(model, b2, said("preference", "Prefers monthly billing", "e2",
                                  relation="contradicts", related=annual.id))
    old = after.get(annual.id)
    assert old.status == "superseded" and old.valid_to == b2.events["e2"].timestamp
    [monthly] = after.preferences()
    assert old.superseded_by == monthly.id and monthly.statement == "Prefers monthly billing"
    assert {e.event_id: e.polarity for e in old.evidence} == {"e1": "supports",
                                                              "e2": "contradicts"}


def test_a_goal_is_marked_achieved() -> None:
    model = apply(EMPTY, batch(chat("e1", "We need to launch the pilot by May")),
                  said("goal", "Wants to launch the pilot by May", "e1"))
    [goal] = model.goals()
    done = apply(model, batch(chat("e2", "Pilot is live!", day=60)),
                 said("goal", "Launched the pilot", "e2", relation="reinforces",
                      related=goal.id, status="achieved"))
    assert done.get(goal.id).status == "achieved" and not done.goals()
    assert done.get(goal.id).history[-1].action == "status_changed"


def test_a_preference_not_seen_for_two_half_lives_fades_below_threshold() -> None:
    model = apply(EMPTY, batch(chat("e1", "Dark mode please")),
                  said("preference", "Prefers dark mode", "e1"))
    [pref] = model.preferences()
    assert pref.confidence > 0.7
    later = T0 + timedelta(days=2 * MergeConfig().confidence.half_life_days["preference"])
    assert current_confidence(pref, later) < 0.45


def test_ignored_lowers_and_engaged_raises_the_record_that_drove_the_delivery() -> None:
    model = apply(EMPTY, batch(chat("e1", "Is there an ROI calculator?")),
                  said("belief", "Believes an ROI calculator will help their case", "e1"))
    [belief] = model.beliefs()

    def outcome(event_id: str, result: str) -> float:
        event = Event(id=event_id, user_id="u1", type="outcome", timestamp=T0 + timedelta(1))
        return apply_outcome(model, belief.id, event, result,  # type: ignore[arg-type]
                             now=NOW).model.get(belief.id).confidence

    assert outcome("o1", "ignored") < belief.confidence < outcome("o2", "engaged")


def test_paraphrases_merge_and_records_that_share_words_do_not() -> None:
    model = apply(EMPTY, batch(chat("e1", "keep it short"), chat("e2", "email me the report")),
                  said("preference", "Prefers short answers", "e1"),
                  said("preference", "Prefers email contact", "e2"))
    b2 = batch(chat("e3", "brief replies please", day=1), chat("e4", "send reports weekly", day=1))
    after = apply(model, b2, said("preference", "Prefers brief, concise replies", "e3"),
                  said("preference", "Prefers email reports", "e4"))
    statements = sorted(r.statement for r in after.preferences())
    assert statements == ["Prefers email contact", "Prefers email reports",
                          "Prefers short answers"]
    short = next(r for r in after.records if r.statement == "Prefers short answers")
    assert short.evidence_ids() == {"e1", "e3"}


def test_an_event_counts_once_per_record_and_reapplying_changes_nothing() -> None:
    b = batch(chat("e1", "We need SOC 2 before we sign"))
    proposal = said("goal", "Needs a SOC 2 report before signing", "e1")
    first = merge(EMPTY, [proposal], b, now=NOW, prompt_version="p@1")
    second = merge(first.model, [proposal, proposal], b, now=NOW, prompt_version="p@1")
    assert second.model == first.model and second.changes == []


def test_the_cap_per_kind_evicts_the_least_valuable() -> None:
    events = [chat(f"e{i}", f"fact {i}") for i in range(4)]
    cfg = MergeConfig(max_records_per_kind=3)
    proposals = [said("belief", f"Believes distinct fact number {i} about {w}", f"e{i}",
                      basis="explicit" if i else "inferred")
                 for i, w in enumerate(["tea", "rockets", "jazz", "tax"])]
    result = merge(EMPTY, proposals, batch(*events), now=NOW, prompt_version="p", config=cfg)
    assert len(result.model.beliefs()) == 3
    [evicted] = [c for c in result.changes if c.action == "evicted"]
    assert "tea" in evicted.statement


# -- properties ---------------------------------------------------------------------------

POOL = ["Wants SSO with Okta", "Prefers dark mode", "Believes pricing is too high",
        "Wants a Salesforce integration", "Prefers phone support"]
KIND = {"W": "goal", "P": "preference", "B": "belief"}


def proposals_from(picks: list[tuple[int, list[int]]], ids: list[str]):  # type: ignore[no-untyped-def]
    return [said(KIND[POOL[s][0]], POOL[s], *[ids[i] for i in sorted(set(ev))])
            for s, ev in picks]


picks = st.lists(st.tuples(st.integers(0, len(POOL) - 1),
                           st.lists(st.integers(0, 2), min_size=1, max_size=3)), max_size=5)


def content(model: UserModel) -> list[tuple[object, ...]]:
    return sorted((r.kind, r.statement, tuple(sorted(r.evidence_ids())), r.confidence, r.status)
                  for r in model.records)


@settings(max_examples=60, deadline=None)
@given(picks, picks)
def test_batch_order_does_not_change_the_final_records(a, b) -> None:  # type: ignore[no-untyped-def]
    ba = batch(*[chat(f"a{i}", f"text a{i}") for i in range(3)])
    bb = batch(*[chat(f"b{i}", f"text b{i}", day=1) for i in range(3)])
    pa, pb = proposals_from(a, ["a0", "a1", "a2"]), proposals_from(b, ["b0", "b1", "b2"])
    one = apply(apply(EMPTY, ba, *pa), bb, *pb)
    other = apply(apply(EMPTY, bb, *pb), ba, *pa)
    assert content(one) == content(other)
    assert all(0.0 <= r.confidence <= 1.0 for r in one.records)


@settings(max_examples=60, deadline=None)
@given(picks)
def test_reapplying_the_same_extraction_changes_nothing(a) -> None:  # type: ignore[no-untyped-def]
    b = batch(*[chat(f"a{i}", f"text a{i}") for i in range(3)])
    ps = proposals_from(a, ["a0", "a1", "a2"])
    once = merge(EMPTY, ps, b, now=NOW, prompt_version="p")
    twice = merge(once.model, ps, b, now=NOW, prompt_version="p")
    assert twice.model == once.model and twice.changes == []


@settings(max_examples=40, deadline=None)
@given(st.integers(0, len(POOL) - 1), st.integers(0, len(POOL) - 1))
def test_a_supersede_never_loses_the_superseded_record_or_its_evidence(s1: int, s2: int) -> None:
    model = apply(EMPTY, batch(chat("e1", "first")), said("belief", POOL[s1], "e1"))
    [old] = model.records
    after = apply(model, batch(chat("e2", "now", day=3), chat("e3", "again", day=3)),
                  said("belief", POOL[s2] + " now", "e2", "e3", relation="contradicts",
                       related=old.id))
    kept = after.get(old.id)
    assert kept.evidence_ids() >= old.evidence_ids()
    assert kept.status in ("superseded", "active")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["belief", "goal", "preference"]),
                          st.lists(st.sampled_from(["email", "emails", "weekly", "report",
                                                    "sso", "okta", "pricing", "cost", "the",
                                                    "prefers"]), min_size=1, max_size=4)),
                min_size=1, max_size=24))
def test_the_duplicate_search_by_word_index_merges_as_a_full_scan(
    proposals: list[tuple[str, list[str]]],
) -> None:
    """Batch after batch, merging with the indexed duplicate search gives the same model as
    merging with the same lexical similarity read over every record."""
    from doxa.core.similarity import lexical_similarity

    def full_scan(a: str, b: str) -> float:  # not the lexical function itself: no index
        return lexical_similarity(a, b)

    indexed = scanned = UserModel(user_id="u-dup")
    for step in range(0, len(proposals), 3):
        chunk = proposals[step:step + 3]
        events = [chat(f"e{step + i}", " ".join(words), day=step, user="u-dup")
                  for i, (_, words) in enumerate(chunk)]
        b = batch(*events)
        said_now = [said(kind, " ".join(words), f"e{step + i}")
                    for i, (kind, words) in enumerate(chunk)]
        indexed = merge(indexed, said_now, b, now=NOW, prompt_version="p").model
        scanned = merge(scanned, said_now, b, now=NOW, prompt_version="p",
                        similarity=full_scan).model
        assert indexed.records == scanned.records
