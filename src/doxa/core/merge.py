"""Merge: how new proposals change a user's model. Pure: no I/O, no clock, no randomness.

(UserModel, proposals, Batch, now) → (UserModel', [Change]). An event counts once per
record, so re-applying the same extraction changes nothing; record ids derive from content
and batch, so re-runs and recorded cassettes see the same ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from doxa.core.confidence import ConfidenceConfig, confidence_from_evidence
from doxa.core.injection import speaking_event_ids
from doxa.core.links import (
    Evidenced,
    LinkProposal,
    ProposedLink,
    link_problem,
    resolve,
    with_link,
    without_link,
)
from doxa.core.similarity import Similarity, content_words, lexical_similarity
from doxa.events.parse import Event
from doxa.llm.evidence import as_written
from doxa.llm.schema import Proposal
from doxa.model.records import (
    Action,
    Basis,
    CausalLink,
    Change,
    EvidenceLink,
    Polarity,
    Record,
    Relation,
    Revision,
    Status,
    UserModel,
)
from doxa.relevance import Batch

Outcome = Literal["engaged", "ignored", "converted", "dismissed"]
POSITIVE_OUTCOMES = frozenset({"engaged", "converted"})


class MergeConfig(BaseModel):
    """How proposals merge: the confidence formula, the duplicate threshold, the cap."""

    model_config = ConfigDict(frozen=True)

    confidence: ConfidenceConfig = Field(default_factory=ConfidenceConfig)
    duplicate_threshold: float = 0.6
    max_records_per_kind: int = 200
    closed_dimensions: frozenset[str] | None = None
    """Dimensions that hold one value at a time (a new value contradicts the old). None: any
    proposal with a dimension and a value, which is what schema-shaped extraction sends
    (free-text dimensions answer with a null value); an empty set turns the rule off."""


@dataclass(frozen=True)
class MergeResult:
    model: UserModel
    changes: list[Change]
    landed: tuple[str | None, ...] = ()
    """Where each proposal landed (its record's id), None for one left out: what a later
    merge's links name the proposals by (`doxa.core.links.rebased`)."""


def make_record_id(user_id: str, kind: str, statement: str, batch_id: str) -> str:
    digest = hashlib.sha256(f"{user_id}|{kind}|{statement.strip().casefold()}|{batch_id}"
                            .encode()).hexdigest()
    return "r_" + digest[:12]


class _Working:
    """The records being merged, by id, with the changes made so far."""

    def __init__(self, model: UserModel, now: datetime, config: MergeConfig) -> None:
        self.model = model
        self.records: dict[str, Record] = {r.id: r for r in model.records}
        self.touched: set[str] = set()
        """Ids put during this merge: their words may differ from the model's index."""
        self.changes: list[Change] = []
        self.now = now
        self.config = config

    def put(self, before: Record | None, after: Record, action: Action,
            event_ids: Sequence[str], batch_id: str, prompt_version: str,
            observed_at: datetime, note: str = "") -> None:
        after = after.model_copy(update={"confidence": confidence_from_evidence(
            after.evidence, after.kind, config=self.config.confidence)})
        if before is not None and _same_state(before, after):
            return
        note = note or _repair_note(after, event_ids, batch_id)
        revision = Revision(
            action=action, recorded_at=self.now, observed_at=observed_at,
            statement=after.statement, confidence=after.confidence, status=after.status,
            event_ids=tuple(event_ids), batch_id=batch_id, prompt_version=prompt_version,
            note=note)
        after = after.model_copy(update={"history": (*after.history, revision),
                                         "updated_at": self.now})
        self.records[after.id] = after
        self.touched.add(after.id)
        self.changes.append(Change(
            record_id=after.id, kind=after.kind, action=action, statement=after.statement,
            confidence_before=before.confidence if before else None,
            confidence_after=after.confidence, status=after.status, event_ids=tuple(event_ids)))


def _repair_note(record: Record, event_ids: Sequence[str], batch_id: str) -> str:
    """A revision's note naming the evidence whose quote doxa repaired in this batch."""
    repaired = [link.event_id for link in record.evidence
                if link.quote_as_written is not None and link.batch_id == batch_id
                and link.event_id in event_ids]
    return f"quote repaired: {', '.join(repaired)}" if repaired else ""


def _same_state(a: Record, b: Record) -> bool:
    return (a.statement, a.status, a.evidence, a.valid_to, a.superseded_by, a.links) == (
        b.statement, b.status, b.evidence, b.valid_to, b.superseded_by, b.links)


def _links(proposal: Evidenced, batch: Batch,
           polarity: Polarity = "supports", *,
           reasked: bool = False) -> list[EvidenceLink]:
    links: list[EvidenceLink] = []
    speaking = speaking_event_ids(batch.items)
    for ev in proposal.evidence:
        event = batch.event(ev.event_id)
        if (event is None or event.id in speaking
                or any(link.event_id == ev.event_id for link in links)):
            continue  # instructions aimed at the system are never evidence
        # Only words the user wrote can state something explicitly; behaviour is inferred.
        basis: Basis = proposal.basis if (event.text or "").strip() else "inferred"
        links.append(EvidenceLink(event_id=ev.event_id, quote=ev.quote if event.text else "",
                                  quote_as_written=as_written(ev) if event.text else None,
                                  polarity=polarity, basis=basis,
                                  observed_at=event.timestamp, batch_id=batch.id,
                                  reasked=reasked))
    return links


def _add_links(record: Record, links: Sequence[EvidenceLink]) -> Record:
    known = record.evidence_ids()
    fresh = tuple(link for link in links if link.event_id not in known)
    if not fresh:
        return record
    evidence = tuple(sorted((*record.evidence, *fresh), key=lambda e: (e.observed_at, e.event_id)))
    return record.model_copy(update={"evidence": evidence})


def _closed_slot(work: _Working, proposal: Proposal) -> Record | None:
    """The active record already holding this closed dimension (one value at a time)."""
    dimension, value = proposal.slot()
    if dimension is None or value is None:
        return None
    closed = work.config.closed_dimensions
    if closed is not None and dimension not in closed:
        return None
    holders = (r for r in work.records.values()
               if r.dimension == dimension and r.value is not None and r.status == "active")
    return min(holders, key=attrgetter("id"), default=None)  # one pass, not a sort per proposal


def _statement_words(record: Record) -> frozenset[str]:
    return content_words(record.statement)


def _can_merge_into(record: Record) -> bool:
    return record.status in ("active", "achieved")


def _duplicate_candidates(work: _Working, proposal: Proposal,
                          similarity: Similarity) -> Iterable[Record]:
    """The records a duplicate of `proposal` may be among.

    A lexical duplicate shares at least one content word with the proposal, so the search
    reads the records that do (the model's word index, a view kept with the model: the
    same result as reading every record) and those put during this merge.
    """
    words = content_words(proposal.statement)
    if similarity is not lexical_similarity or not words or work.config.duplicate_threshold <= 0:
        return work.records.values()  # any record could score: read them all
    ids = work.model.views.sharing(work.model.records, words, words_of=_statement_words,
                                   keep=_can_merge_into) | work.touched
    return [work.records[rid] for rid in ids if rid in work.records]


def _find_duplicate(work: _Working, proposal: Proposal,
                    similarity: Similarity) -> Record | None:
    best: tuple[float, str] | None = None
    for record in _duplicate_candidates(work, proposal, similarity):
        if record.kind != proposal.kind or record.status not in ("active", "achieved"):
            continue
        score = similarity(record.statement, proposal.statement)
        if score >= work.config.duplicate_threshold and (best is None or (score, record.id) > best):
            best = (score, record.id)
    return work.records[best[1]] if best else None


def merge(model: UserModel, proposals: Sequence[Proposal], batch: Batch, *,
          now: datetime, prompt_version: str, config: MergeConfig | None = None,
          similarity: Similarity | None = None,
          links: Sequence[LinkProposal] = (), reasked: bool = False) -> MergeResult:
    """Apply one batch's validated proposals (and the causal links proposed between them
    and the known records) to the model; `reasked` marks the evidence of an answer that
    needed a re-ask (calibration reads it)."""
    evidenced = [(proposal, _links(proposal, batch, reasked=reasked)) for proposal in proposals]
    proposed = [ProposedLink(lp.source, lp.relation, lp.target, tuple(_links(lp, batch)))
                for lp in links]
    return merge_evidenced(model, evidenced, batch, now=now, prompt_version=prompt_version,
                           config=config, similarity=similarity, links=proposed)


def merge_evidenced(model: UserModel,
                    proposals: Sequence[tuple[Proposal, Sequence[EvidenceLink]]],
                    batch: Batch, *, now: datetime, prompt_version: str,
                    config: MergeConfig | None = None, similarity: Similarity | None = None,
                    links: Sequence[ProposedLink] = ()) -> MergeResult:
    """`merge` for proposals whose evidence links are already made: what an observation
    (`doxa.core.observe`) sends, its evidence being ids the caller names rather than quotes
    an LLM cited from the batch. Extracted and observed records take the same steps."""
    work = _Working(model, now, config or MergeConfig())
    sim = similarity or lexical_similarity
    landed: list[str | None] = []
    for proposal, evidence in proposals:
        landed.append(_merge_one(work, model.user_id, proposal, evidence, batch,
                                 prompt_version, sim) if evidence else None)
    for proposed in links:
        add_proposed_link(work, proposed, landed, batch.id, prompt_version)
    follow_superseded(work, batch.id, prompt_version)
    records = _evict(work, batch, prompt_version)
    if len(records) < len(work.records):
        records = end_links_to_missing(work, records, batch.id, prompt_version)
    if len(records) == len(model.records) and all(c.action != "created" for c in work.changes):
        # The same ids, replaced in place in the id-ordered dict: already in id order.
        return MergeResult(model.model_copy(update={"records": tuple(records)}), work.changes,
                           tuple(landed))
    return MergeResult(model.with_records(records), work.changes, tuple(landed))


def _merge_one(work: _Working, user_id: str, proposal: Proposal,
               links: Sequence[EvidenceLink], batch: Batch, prompt_version: str,
               sim: Similarity) -> str:
    """One proposal into the model; returns the id of the record it landed on."""
    related = work.records.get(proposal.related_record_id or "")
    if proposal.relation == "contradicts" and related is not None:
        return _contradict(work, related, proposal, links, batch, prompt_version)
    if proposal.relation in ("reinforces", "refines") and related is not None:
        return _reinforce(work, related, proposal, links, batch, prompt_version,
                          refine=proposal.relation == "refines")
    if (same_slot := _closed_slot(work, proposal)) is not None:
        if same_slot.value == proposal.slot()[1]:
            return _reinforce(work, same_slot, proposal, links, batch, prompt_version,
                              refine=False)
        # a closed dimension holds one value: a new one contradicts the old
        return _contradict(work, same_slot, proposal, links, batch, prompt_version)
    target = _find_duplicate(work, proposal, sim)
    if target is not None:
        return _reinforce(work, target, proposal, links, batch, prompt_version, refine=False)
    return _create(work, user_id, proposal, links, batch, prompt_version).id


def _status_for(record: Record, proposal: Proposal) -> Status:
    if record.kind == "goal" and proposal.status in ("achieved", "abandoned"):
        return proposal.status
    return record.status


def _reinforce(work: _Working, record: Record, proposal: Proposal,
               links: Sequence[EvidenceLink], batch: Batch, prompt_version: str,
               *, refine: bool) -> str:
    updated = _add_links(record, links)
    status = _status_for(record, proposal)
    update: dict[str, object] = {"status": status}
    if refine and proposal.statement.strip() != record.statement:
        update["statement"] = proposal.statement.strip()
    if status in ("achieved", "abandoned") and record.valid_to is None:
        update["valid_to"] = max(link.observed_at for link in links)
    updated = updated.model_copy(update=update)
    action: Action = ("status_changed" if status != record.status
                      else "refined" if "statement" in update else "reinforced")
    work.put(record, updated, action, [link.event_id for link in links], batch.id,
             prompt_version, max(link.observed_at for link in links))
    return record.id


def _create(work: _Working, user_id: str, proposal: Proposal,
            links: Sequence[EvidenceLink], batch: Batch, prompt_version: str) -> Record:
    record_id = make_record_id(user_id, proposal.kind, proposal.statement, batch.id)
    existing = work.records.get(record_id)
    if existing is not None:  # the same proposal again: only new evidence may count
        _reinforce(work, existing, proposal, links, batch, prompt_version, refine=False)
        return work.records[record_id]
    first = min(link.observed_at for link in links)
    status: Status = proposal.status if proposal.kind == "goal" else "active"
    dimension, value = proposal.slot()
    record = Record(
        id=record_id, user_id=user_id, kind=proposal.kind, statement=proposal.statement.strip(),
        context=proposal.context.strip() or "general", confidence=0.0,
        dimension=dimension, value=value,
        evidence=tuple(sorted(links, key=lambda e: (e.observed_at, e.event_id))),
        status=status, valid_from=first, created_at=work.now, updated_at=work.now,
        prompt_version=prompt_version)
    work.put(None, record, "created", [link.event_id for link in links], batch.id,
             prompt_version, first)
    return work.records[record_id]


def _contradict(work: _Working, old: Record, proposal: Proposal,
                links: Sequence[EvidenceLink], batch: Batch, prompt_version: str) -> str:
    against = [link.model_copy(update={"polarity": "contradicts"}) for link in links]
    lowered = _add_links(old, against)
    when = max(link.observed_at for link in links)
    new = _create(work, old.user_id, proposal.model_copy(update={"relation": "new"}),
                  links, batch, prompt_version)
    lowered = lowered.model_copy(update={"confidence": confidence_from_evidence(
        lowered.evidence, lowered.kind, config=work.config.confidence)})
    if new.id != old.id and old.status == "active" and new.confidence > lowered.confidence:
        lowered = lowered.model_copy(update={"status": "superseded", "valid_to": when,
                                             "superseded_by": new.id})
        action: Action = "superseded"
    else:
        action = "contradicted"
    work.put(old, lowered, action, [link.event_id for link in links], batch.id,
             prompt_version, when)
    return new.id


def _value(record: Record) -> tuple[float, datetime, str]:
    return (record.confidence, record.last_evidence_at, record.id)


def _evict(work: _Working, batch: Batch, prompt_version: str) -> list[Record]:
    """Keep at most `max_records_per_kind` per kind; the least valuable go first."""
    cap = work.config.max_records_per_kind
    if len(work.records) <= cap:  # the common case: no kind can be over its cap
        return list(work.records.values())
    kept: list[Record] = []
    for kind in sorted({r.kind for r in work.records.values()}):
        of_kind = sorted((r for r in work.records.values() if r.kind == kind),
                         key=_value, reverse=True)
        for record in of_kind[cap:]:
            work.changes.append(Change(
                record_id=record.id, kind=record.kind, action="evicted",
                statement=record.statement, confidence_before=record.confidence,
                confidence_after=record.confidence, status=record.status))
        kept += of_kind[:cap]
    return kept


def add_proposed_link(work: _Working, proposed: ProposedLink, landed: Sequence[str | None],
                      batch_id: str, prompt_version: str) -> None:
    """Add a proposed link when both ends resolve to records it may join; a link the
    model cannot hold (wrong kinds, an end that was dropped) is left out, as an invalid
    proposed record is."""
    if not proposed.evidence:
        return
    goal_id, target_id = resolve(proposed.source, landed), resolve(proposed.target, landed)
    goal = work.records.get(goal_id or "")
    target = work.records.get(target_id or "")
    if goal is None or target is None or link_problem(goal, proposed.relation, target):
        return
    _put_link(work, goal, proposed.relation, target.id, proposed.evidence, batch_id,
              prompt_version)


def _put_link(work: _Working, goal: Record, relation: Relation, target_id: str,
              evidence: Sequence[EvidenceLink], batch_id: str, prompt_version: str,
              note: str = "") -> None:
    linked = with_link(goal, relation, target_id, evidence, work.now, work.config.confidence,
                       note)
    if linked is goal:
        return
    when = max((e.observed_at for e in evidence), default=work.now)
    work.put(goal, linked, "linked", [e.event_id for e in evidence], batch_id, prompt_version,
             when, note=f"{relation} → {target_id}" + (f" ({note})" if note else ""))


def _end_link(work: _Working, goal: Record, link: CausalLink, batch_id: str,
              prompt_version: str, why: str) -> None:
    work.put(goal, without_link(goal, link, work.now, why), "unlinked", [], batch_id,
             prompt_version, work.now, note=f"{link.relation} → {link.target_id} ({why})")


def follow_superseded(work: _Working, batch_id: str, prompt_version: str) -> None:
    """Keep links consistent with the supersedes this merge made. A superseded goal's
    links follow it to the goal that replaced it (the same pursuit, restated); a link
    pointing at a superseded record ends, naming the successor: a reason that was
    contradicted cannot be assumed to still explain the goal, and new evidence links the
    new one."""
    for rid in sorted(work.touched):
        old = work.records[rid]
        if old.status != "superseded" or old.superseded_by is None:
            continue
        successor = work.records.get(old.superseded_by)
        if old.kind == "goal" and successor is not None and successor.kind == "goal":
            for link in old.active_links():
                if link.target_id == successor.id:
                    continue
                _put_link(work, work.records[successor.id], link.relation, link.target_id,
                          link.evidence, batch_id, prompt_version, note=f"followed from {rid}")
                _end_link(work, work.records[rid], link, batch_id, prompt_version,
                          f"followed to {successor.id}")
        for goal in [r for r in work.records.values() if r.kind == "goal" and r.links]:
            for link in goal.active_links():
                if link.target_id == rid:
                    _end_link(work, work.records[goal.id], link, batch_id, prompt_version,
                              f"{rid} was superseded by {old.superseded_by}")


def end_links_to_missing(work: _Working, kept: list[Record], batch_id: str,
                         prompt_version: str) -> list[Record]:
    """After eviction: links that point at a record no longer held end."""
    ids = {r.id for r in kept}
    for record in kept:
        for link in record.active_links():
            if link.target_id not in ids:
                _end_link(work, work.records[record.id], link, batch_id, prompt_version,
                          f"{link.target_id} was evicted")
    return [work.records[rid] for rid in sorted(ids)]


def apply_outcome(model: UserModel, record_id: str, outcome_event: Event, outcome: Outcome,
                  *, now: datetime, config: MergeConfig | None = None) -> MergeResult:
    """A delivery outcome as evidence: engaged/converted support, ignored/dismissed contradict."""
    work = _Working(model, now, config or MergeConfig())
    record = model.get(record_id)
    polarity: Polarity = "supports" if outcome in POSITIVE_OUTCOMES else "contradicts"
    link = EvidenceLink(event_id=outcome_event.id, polarity=polarity,
                        basis="outcome", observed_at=outcome_event.timestamp,
                        quote=f"delivery outcome: {outcome}")
    work.put(record, _add_links(record, [link]), "outcome", [outcome_event.id], "",
             "", outcome_event.timestamp, note=outcome)
    return MergeResult(model.with_records(work.records.values()), work.changes)
