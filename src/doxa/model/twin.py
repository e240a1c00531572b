"""The digital twin: one user's active goals with the why around each, and what changed.

`model.twin()` answers "why does this user act this way?" from the causal links the
goals hold: each active goal with its motivations (`because`), constraints
(`constrained_by`), blocking beliefs (`blocked_by`) and the goals it serves (`in_order_to`),
every one with the record's confidence, the link's confidence and the evidence; then the
motivations and constraints no goal is linked to yet, and the model's recent changes.
`as_prompt()` renders it compactly for a delivery prompt. Pure: a model in, a view out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType

from pydantic import BaseModel, Field, computed_field

from doxa.model.records import CausalLink, Record, Relation, UserModel

RELATION_WORDS: Mapping[Relation, str] = MappingProxyType({
    "because": "because", "constrained_by": "constrained by", "blocked_by": "blocked by",
    "in_order_to": "in order to"})


class TwinRecord(BaseModel):
    """A record as the twin shows it: what, how sure, on what evidence."""

    record_id: str
    kind: str
    statement: str
    confidence: float
    evidence: list[str] = Field(default_factory=list)


class TwinLink(TwinRecord):
    """A record a goal links to, with the link's own confidence and evidence."""

    relation: Relation
    link_confidence: float
    link_evidence: list[str] = Field(default_factory=list)


class TwinGoal(TwinRecord):
    """An active goal and the why around it."""

    context: str
    motivations: list[TwinLink] = Field(default_factory=list)
    constraints: list[TwinLink] = Field(default_factory=list)
    blockers: list[TwinLink] = Field(default_factory=list)
    serves: list[TwinLink] = Field(default_factory=list)
    """The goals this one is pursued in order to reach."""


class TwinChange(BaseModel):
    """One recent change to the model."""

    at: datetime
    record_id: str
    kind: str
    action: str
    statement: str
    confidence: float
    note: str = ""


class Twin(BaseModel):
    """One user's goals with their motivations, constraints and blockers; what changed."""

    user_id: str
    goals: list[TwinGoal] = Field(default_factory=list)
    unlinked: list[TwinRecord] = Field(default_factory=list)
    """Active motivations and constraints no active goal links to (yet)."""
    recent: list[TwinChange] = Field(default_factory=list)
    since: datetime | None = None
    """Changes whose event time is after this are `recent` (None: the model has no history)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def prompt(self) -> str:
        """`as_prompt()` at its defaults: what an HTTP caller puts in a delivery prompt."""
        return self.as_prompt()

    def as_prompt(self, min_confidence: float = 0.5, recent: int = 5) -> str:
        """A compact rendering for a delivery prompt: surest goals first, each with its
        why; links and records below `min_confidence` left out; the last changes."""
        lines = [f"Why user {self.user_id} acts as they do (confidence in brackets):"]
        shown = [g for g in self.goals if g.confidence >= min_confidence]
        for goal in shown:
            lines.append(f"- Goal: {goal.statement} [{goal.confidence:.2f}]")
            for linked in (*goal.motivations, *goal.constraints, *goal.blockers, *goal.serves):
                if min(linked.confidence, linked.link_confidence) >= min_confidence:
                    lines.append(f"  - {RELATION_WORDS[linked.relation]}: {linked.statement} "
                                 f"[{linked.confidence:.2f}; link {linked.link_confidence:.2f}]")
        if not shown:
            lines.append("- no goal with enough confidence yet")
        other = [r for r in self.unlinked if r.confidence >= min_confidence]
        lines += [f"- {r.kind.capitalize()} (no goal linked): {r.statement} "
                  f"[{r.confidence:.2f}]" for r in other]
        if self.recent and recent > 0:
            lines.append("Recent changes:")
            lines += [f"- {c.at:%Y-%m-%d} {c.action}: {c.statement} [{c.confidence:.2f}]"
                      + (f" ({c.note})" if c.action in ("linked", "unlinked") else "")
                      for c in self.recent[-recent:]]
        return "\n".join(lines)


def _shown(record: Record) -> TwinRecord:
    return TwinRecord(record_id=record.id, kind=record.kind, statement=record.statement,
                      confidence=record.confidence,
                      evidence=[e.event_id for e in record.supporting])


def _linked(link: CausalLink, target: Record) -> TwinLink:
    return TwinLink(**_shown(target).model_dump(), relation=link.relation,
                    link_confidence=link.confidence,
                    link_evidence=[e.event_id for e in link.evidence])


def build_twin(model: UserModel, *, recent_days: float = 30.0) -> Twin:
    """The twin of `model`; changes within `recent_days` (event time) of the model's latest
    change are recent (measured from the model, not a clock, so a twin is reproducible)."""
    goals: list[TwinGoal] = []
    linked_to: set[str] = set()
    for goal in model.goals():
        parts: dict[Relation, list[TwinLink]] = {r: [] for r in RELATION_WORDS}
        for link in sorted(goal.active_links(), key=lambda k: (-k.confidence, k.target_id)):
            target = model.find(link.target_id)
            if target is None or target.status not in ("active", "achieved"):
                continue
            parts[link.relation].append(_linked(link, target))
            linked_to.add(target.id)
        goals.append(TwinGoal(**_shown(goal).model_dump(), context=goal.context,
                              motivations=parts["because"], constraints=parts["constrained_by"],
                              blockers=parts["blocked_by"], serves=parts["in_order_to"]))
    unlinked = [_shown(r) for r in model.active()
                if r.kind in ("motivation", "constraint") and r.id not in linked_to]
    revisions = [(rev, r) for r in model.records for rev in r.history]
    if not revisions:
        return Twin(user_id=model.user_id, goals=goals, unlinked=unlinked)
    since = max(rev.observed_at for rev, _ in revisions) - timedelta(days=recent_days)
    recent = sorted(((rev, r) for rev, r in revisions if rev.observed_at > since),
                    key=lambda pair: (pair[0].observed_at, pair[0].recorded_at, pair[1].id))
    return Twin(user_id=model.user_id, goals=goals, unlinked=unlinked, since=since, recent=[
        TwinChange(at=rev.observed_at, record_id=r.id, kind=r.kind, action=rev.action,
                   statement=rev.statement, confidence=rev.confidence, note=rev.note)
        for rev, r in recent])
