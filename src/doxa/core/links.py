"""Causal links between records, as values: what may be linked, and a goal with a link
added or ended. Pure; merge (doxa.core.merge) decides when, and records the history.

A link is held by the goal it explains: the goal is `because` of a motivation,
`constrained_by` a constraint, `blocked_by` a belief, or pursued `in_order_to` reach another
goal. Like a record, a link has its own evidence and a confidence computed from it, so a
"why" the events barely show stays tentative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from doxa.core.confidence import ConfidenceConfig, confidence_from_evidence
from doxa.llm.schema import EvidenceQuote
from doxa.model.records import LINK_TARGET_KIND, CausalLink, EvidenceLink, Record, Relation

LINKABLE_STATUSES = ("active", "achieved")
"""A link may start from or point at a record in these states; superseded and ended
records keep the links they had, as history."""


class Evidenced(Protocol):
    """Anything that cites events of a batch: a proposed record or a proposed link."""

    @property
    def evidence(self) -> Sequence[EvidenceQuote]: ...

    @property
    def basis(self) -> Literal["explicit", "inferred"]: ...


class LinkProposal(BaseModel):
    """A causal link proposed with a batch (by an extraction, or an eval's oracle from
    its labels). An end is `#<n>`, the batch's n-th proposed record (counting from 0), or
    the id of a record the model already holds."""

    source: str = Field(description="the goal: #<n> for this answer's n-th record, or a "
                        "known record id")
    relation: Relation
    target: str = Field(description="what the goal is because of, constrained by, blocked "
                        "by or in order to: #<n> or a known record id")
    evidence: list[EvidenceQuote] = Field(min_length=1)
    basis: Literal["explicit", "inferred"] = "inferred"


@dataclass(frozen=True)
class ProposedLink:
    """A link with its evidence links made: ends still as `#<n>` or record ids."""

    source: str
    relation: Relation
    target: str
    evidence: tuple[EvidenceLink, ...]


def resolve(ref: str, landed: Sequence[str | None]) -> str | None:
    """A link end's record id: `#<n>` is where the n-th proposal landed (None if it was
    dropped or out of range); anything else is a record id already."""
    if not ref.startswith("#"):
        return ref
    try:
        n = int(ref[1:])
    except ValueError:
        return None
    return landed[n] if 0 <= n < len(landed) else None


def rebased(links: Sequence[LinkProposal], landed: Sequence[str | None],
            first_new: int) -> list[LinkProposal]:
    """Links whose `#<n>` ends count over proposals already merged (the first `first_new`,
    which landed on `landed`) and then those of the merge they are given to: an end among
    the first becomes the id its proposal landed on (one left out resolves to nothing, and
    the link is left out with it); a later one becomes `#<n - first_new>`."""
    def end(ref: str) -> str:
        if not ref.startswith("#") or not ref[1:].isdigit():
            return ref
        n = int(ref[1:])
        if n >= first_new:
            return f"#{n - first_new}"
        return (landed[n] if n < len(landed) else None) or "#-1"

    return [lp.model_copy(update={"source": end(lp.source), "target": end(lp.target)})
            for lp in links]


def link_problem(goal: Record | None, relation: Relation, target: Record | None) -> str | None:
    """Why these two records cannot be linked by `relation`, or None when they can."""
    if goal is None:
        return "the goal is not in the model"
    if target is None:
        return "the record it points at is not in the model"
    if goal.kind != "goal":
        return f"a link starts from a goal, and {goal.id} is a {goal.kind}"
    wanted = LINK_TARGET_KIND[relation]
    if target.kind != wanted:
        return f"{relation} points at a {wanted}, and {target.id} is a {target.kind}"
    if target.id == goal.id:
        return "a goal cannot be linked to itself"
    if goal.status not in LINKABLE_STATUSES or target.status not in LINKABLE_STATUSES:
        return "superseded and ended records keep their links as history; link the current one"
    return None


def with_link(goal: Record, relation: Relation, target_id: str,
              evidence: Sequence[EvidenceLink], now: datetime, config: ConfidenceConfig,
              note: str = "") -> Record:
    """The goal with the link added, or the existing link given the new evidence (an ended
    link with new evidence is active again: the events show the reason once more)."""
    existing = next((link for link in goal.links if link.key == (relation, target_id)), None)
    known = {e.event_id for e in existing.evidence} if existing else set()
    fresh = tuple(e for e in evidence if e.event_id not in known)
    if existing is not None and not fresh and existing.status == "active":
        return goal
    merged = tuple(sorted((*(existing.evidence if existing else ()), *fresh),
                          key=lambda e: (e.observed_at, e.event_id)))
    link = CausalLink(
        relation=relation, target_id=target_id, evidence=merged,
        confidence=confidence_from_evidence(merged, goal.kind, config=config),
        created_at=existing.created_at if existing else now, note=note)
    others = tuple(other for other in goal.links if other is not existing)
    return goal.model_copy(update={"links": (*others, link)})


def without_link(goal: Record, link: CausalLink, now: datetime, note: str) -> Record:
    """The goal with `link` ended (kept, so history and `as_of` still show it)."""
    ended = link.model_copy(update={"status": "ended", "ended_at": now, "note": note})
    return goal.model_copy(update={"links": tuple(ended if other is link else other
                                                  for other in goal.links)})
