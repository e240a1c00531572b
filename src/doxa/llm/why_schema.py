"""The why pass's answer: links by record number, and its review against the batch.

The model writes a link as two record numbers of the prompt and a relation, with its
evidence; it may add a motivation or constraint the events state plainly. Nothing here is
stored: `review_why` holds every link to the rules a record's evidence is held to (ids in
the batch, quotes verbatim in that event after repair, the user's own words) and to the
link's own (a goal at one end, the relation's kind at the other), and turns what passes
into `LinkProposal`s for the merge. What fails is dropped with its reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model, field_validator

from doxa.core.links import LinkProposal
from doxa.llm.evidence import ChatValidation, repair_evidence, repair_record
from doxa.llm.schema import DroppedRecord, EvidenceQuote, Proposal, WireModel
from doxa.model.records import LINK_TARGET_KIND, Relation
from doxa.prompts.why import MAX_LINKS, MAX_NEW_RECORDS, WhyMessages

MAX_LINK_EVIDENCE = 3


class WhyLink(BaseModel):
    """One link as the model writes it: numbers of the prompt's records."""

    goal: int = Field(description="the goal's number")
    relation: Relation
    target: int = Field(description="the number of the record it points at")
    evidence: list[EvidenceQuote] = Field(min_length=1, max_length=MAX_LINK_EVIDENCE)

    @field_validator("goal", "target", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        """A number as the prompt shows it ("[2]", "#2") is that number: small models copy
        the brackets, and a re-ask for them would cost a call."""
        if isinstance(value, str) and (digits := value.strip().strip("[]#").strip()).isdigit():
            return int(digits)
        return value


class WhyRecord(BaseModel):
    """A motivation or constraint the events state and the records lack."""

    kind: Literal["motivation", "constraint"]
    statement: str = Field(min_length=3, max_length=300,
                           description="a short sentence about the person")
    evidence: list[EvidenceQuote] = Field(min_length=1, max_length=MAX_LINK_EVIDENCE)


class WhyAnswer(WireModel):
    """Why the person pursues their goals, where the events show it; empty when they do not."""

    records: list[WhyRecord] = Field(
        default_factory=list, max_length=MAX_NEW_RECORDS,
        description="new motivation or constraint records, numbered after the listed ones")
    links: list[WhyLink] = Field(default_factory=list, max_length=MAX_LINKS)


def answer_model(new_records: bool) -> type[WireModel]:
    """The tool schema: with new records, or links only (under a model schema, where a new
    record would have to fill one of the schema's dimensions, which this pass does not ask).
    Both are named `WhyAnswer`: the tool's name."""
    if new_records:
        return WhyAnswer
    links_only: type[WireModel] = create_model(
        "WhyAnswer", __base__=WireModel, __doc__=WhyAnswer.__doc__,
        links=(list[WhyLink], Field(default_factory=list, max_length=MAX_LINKS)))
    return links_only


@dataclass
class DroppedLink:
    """A proposed link refused, and why; never stored."""

    goal: int
    relation: str
    target: int
    reasons: list[str]
    goal_statement: str = ""
    target_statement: str = ""

    def describe(self) -> str:
        return (f"[{self.goal}] {self.goal_statement or '?'} {self.relation} "
                f"[{self.target}] {self.target_statement or '?'}")


@dataclass
class WhyReview:
    """What an answer came to. A link's ends are `#<n>` over the batch's proposals followed
    by the kept new records, or known record ids."""

    records: list[Proposal] = field(default_factory=list)
    links: list[LinkProposal] = field(default_factory=list)
    dropped_records: list[DroppedRecord] = field(default_factory=list)
    dropped_links: list[DroppedLink] = field(default_factory=list)
    repairs: int = 0


@dataclass(frozen=True)
class _End:
    ref: str | None
    kind: str
    statement: str
    problem: str | None = None


def review_why(answer: BaseModel, why: WhyMessages, ctx: ChatValidation,
               proposals: int) -> WhyReview:
    """Repair and judge the answer's new records, then its links; `proposals` is how many
    records the batch's extraction proposed (the new records are numbered after them)."""
    ctx.deferred = False
    result = WhyReview()
    ends: dict[int, _End] = {r.number: _End(r.ref, r.kind, r.statement) for r in why.shown}
    written: Sequence[WhyRecord] = getattr(answer, "records", None) or ()
    for k, wire in enumerate(written):
        ends[len(why.shown) + 1 + k] = _review_record(wire, len(why.shown) + 1 + k, ctx,
                                                      result, proposals)
    seen: set[tuple[str, str, str]] = set()
    for link in getattr(answer, "links", None) or ():
        proposal = _review_link(link, ends, ctx, result)
        if proposal is not None and (key := (proposal.source, proposal.relation,
                                             proposal.target)) not in seen:
            seen.add(key)
            result.links.append(proposal)
    return result


def _review_record(wire: WhyRecord, number: int, ctx: ChatValidation, result: WhyReview,
                   proposals: int) -> _End:
    """A new record repaired and judged as an extracted one is: kept in `result.records`,
    or dropped with its reasons (and so are the links to it)."""
    record, repairs = repair_record(Proposal(
        kind=wire.kind, statement=wire.statement, evidence=wire.evidence), ctx)
    result.repairs += repairs
    reasons = ctx.problems(record)
    if reasons:
        result.dropped_records.append(DroppedRecord(record, reasons))
        return _End(None, wire.kind, wire.statement,
                    f"record [{number}] was dropped: {'; '.join(reasons)}")
    result.records.append(record)
    return _End(f"#{proposals + len(result.records) - 1}", wire.kind, wire.statement)


def _review_link(link: WhyLink, ends: dict[int, _End], ctx: ChatValidation,
                 result: WhyReview) -> LinkProposal | None:
    """The link as a proposal for the merge, or None when it fails (then dropped, with
    every reason, into `result`)."""
    evidence, repairs = repair_evidence(link.evidence, ctx)
    goal, target = ends.get(link.goal), ends.get(link.target)
    reasons = [*_end_problems(link, goal, target), *ctx.evidence_problems(evidence),
               *ctx.speaker_problems(_Cited(evidence)), *_unquoted(evidence, ctx)]
    if reasons or goal is None or target is None or goal.ref is None or target.ref is None:
        result.dropped_links.append(DroppedLink(
            link.goal, link.relation, link.target, reasons or ["an end was dropped"],
            goal.statement if goal else "", target.statement if target else ""))
        return None
    result.repairs += repairs
    return LinkProposal(source=goal.ref, relation=link.relation, target=target.ref,
                        evidence=evidence, basis="explicit")


@dataclass(frozen=True)
class _Cited:
    evidence: Sequence[EvidenceQuote]


def _unquoted(evidence: Sequence[EvidenceQuote], ctx: ChatValidation) -> list[str]:
    """A link rests on the user's words: each piece of its evidence quotes an event's text
    (a record may rest on what the user did; a "why" nobody put into words is a guess)."""
    reasons = []
    for ev in evidence:
        event = ctx.batch.event(ev.event_id)
        if event is None:
            continue  # evidence_problems says so
        if not (event.text or "").strip():
            reasons.append(f"event '{ev.event_id}' has no words; a link needs the person's "
                           "words that show it")
        elif not ev.quote.strip():
            reasons.append(f"the evidence from event '{ev.event_id}' quotes nothing; a link "
                           "needs the person's words that show it")
    return reasons


def _end_problems(link: WhyLink, goal: _End | None, target: _End | None) -> list[str]:
    """Why the link's two numbers cannot carry its relation, if they cannot."""
    reasons: list[str] = []
    for name, number, end in (("goal", link.goal, goal), ("target", link.target, target)):
        if end is None:
            reasons.append(f"{name} [{number}] is not a listed or new record")
        elif end.problem is not None:
            reasons.append(end.problem)
    if reasons or goal is None or target is None:
        return reasons
    if goal.kind != "goal":
        reasons.append(f"a link starts from a goal, and [{link.goal}] is a {goal.kind}")
    wanted = LINK_TARGET_KIND[link.relation]
    if target.kind != wanted:
        reasons.append(f"{link.relation} points at a {wanted}, and [{link.target}] is a "
                       f"{target.kind}")
    if link.goal == link.target:
        reasons.append("a goal cannot be linked to itself")
    return reasons
