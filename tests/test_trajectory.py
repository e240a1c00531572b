"""Trajectory: every change is a revision; as_of answers what doxa believed then."""

from __future__ import annotations

from datetime import timedelta

from builders import NOW, batch, chat, said
from doxa.core.merge import merge
from doxa.core.trajectories import aggregate
from doxa.model.records import UserModel


def test_as_of_returns_what_was_believed_before_and_after_a_supersede() -> None:
    b1 = batch(chat("e1", "annual billing suits our budget"))
    first = merge(UserModel(user_id="u1"), [said("preference", "Prefers annual billing", "e1")],
                  b1, now=NOW, prompt_version="p@1").model
    [annual] = first.records
    later = NOW + timedelta(days=30)
    b2 = batch(chat("e2", "I switched to the monthly plan", day=30))
    second = merge(first, [said("preference", "Prefers monthly billing", "e2",
                                relation="contradicts", related=annual.id)],
                   b2, now=later, prompt_version="p@1").model
    then = second.as_of(NOW + timedelta(days=1))
    assert [(r.statement, r.status) for r in then.records] == [("Prefers annual billing",
                                                                "active")]
    assert then.get(annual.id).evidence_ids() == {"e1"}
    now = second.as_of(later)
    assert {(r.statement, r.status) for r in now.records} == {
        ("Prefers annual billing", "superseded"), ("Prefers monthly billing", "active")}
    assert [rev.action for rev in second.trajectory(annual.id)] == ["created", "superseded"]
    assert second.trajectory(annual.id)[-1].event_ids == ("e2",)
    assert second.as_of(NOW - timedelta(days=1)).records == ()


def test_trajectories_count_transitions_across_users() -> None:
    models = []
    for u, stages in {"a": ["evaluating", "business_case", "procurement"],
                      "b": ["evaluating", "business_case"], "c": ["evaluating"]}.items():
        events = [chat(f"{u}{i}", f"stage {s}", day=i, user=u) for i, s in enumerate(stages)]
        model = UserModel(user_id=u)
        for i, (event, stage) in enumerate(zip(events, stages, strict=True)):
            model = merge(model, [said("goal", f"Goal at stage {stage} number {i}", event.id,
                                       context=stage)],
                          batch(event), now=NOW, prompt_version="p").model
        models.append(model)
    report = aggregate(models)
    assert report.users == 3
    assert [(t.source, t.target, t.users) for t in report.transitions] == [
        ("evaluating", "business_case", 2), ("business_case", "procurement", 1)]
    assert next(p.path for p in report.paths) == ["evaluating"]
    assert all(p.users == 1 for p in report.paths) and len(report.paths) == 3
