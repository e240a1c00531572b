"""Oracle extraction: the case's expected records fed through merge as if an LLM proposed them.

Each expected record is proposed (basis "explicit") in every batch that holds some of its
evidence, citing those events; a record whose label lists no evidence is proposed in the
last batch, citing that batch's first event. An achieved or abandoned goal carries its
status in the batch of its last evidence. A superseded record is contradicted by the next
active expected record of the same kind and context whose evidence starts in a later batch.
Each labelled causal link is proposed in the first batch where both its records exist (and
its labelled evidence, if any), citing that evidence. Scoring the result measures merge
and confidence apart from the LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from doxa.core.links import LinkProposal
from doxa.core.merge import MergeConfig, merge
from doxa.eval.fixtures import Case, ExpectedLink, ExpectedRecord
from doxa.events.parse import Event
from doxa.llm.schema import EvidenceQuote, Proposal
from doxa.model.records import UserModel
from doxa.relevance import Batch, batch_id

PROMPT_VERSION = "oracle"
# Labels say which record supersedes which (see `successors`), and free-text dimensions
# carry values in labels, so merge's one-value-per-dimension rule is left to the labels.
ORACLE_MERGE = MergeConfig(closed_dimensions=frozenset())


def _batch(user_id: str, events: Sequence[Event]) -> Batch:
    ids = [e.id for e in events]
    return Batch(id=batch_id(user_id, ids), user_id=user_id, items=(),
                 events={e.id: e for e in events})


def evidence_batches(case: Case) -> list[list[int]]:
    """For each expected record, the indexes of the batches that hold its evidence."""
    last = len(case.batches) - 1
    out: list[list[int]] = []
    for record in case.expected:
        found = [b for b, batch in enumerate(case.batches)
                 if any(e.id in record.evidence for e in batch)]
        out.append(found or [last])
    return out


def successors(case: Case) -> dict[int, int]:
    """Superseded expected index → the expected index that contradicts it."""
    where = evidence_batches(case)
    out: dict[int, int] = {}
    for s, old in enumerate(case.expected):
        later = _successor(case.expected, s, where) if old.status == "superseded" else []
        if later:
            out[later[0]] = s
    return out


def _successor(expected: Sequence[ExpectedRecord], s: int, where: list[list[int]]) -> list[int]:
    old = expected[s]
    return [t for t, new in enumerate(expected)
            if t != s and new.status != "superseded" and new.kind == old.kind
            and (new.context or "") == (old.context or "") and where[t][0] > where[s][0]]


class LabelledProposal(Proposal):
    """A proposal carrying the label's kind (any, schema kinds included), dimension and value,
    as a schema-shaped extraction would: merge files it under its dimension, and the eval
    scores per-dimension value accuracy on the oracle too."""

    dimension: str | None = None
    value: Any = None

    def slot(self) -> tuple[str | None, str | None]:
        return self.dimension, self.value


def _proposal(record: ExpectedRecord, batch: Sequence[Event], *, final: bool,
              contradicts: str | None) -> Proposal:
    cited = [e.id for e in batch if e.id in record.evidence] or [batch[0].id]
    status = record.status if final and record.status in ("achieved", "abandoned") else "active"
    return LabelledProposal(
        dimension=record.dimension, value=record.value,
        kind=record.kind, statement=record.statement, context=record.context or "general",
        evidence=[EvidenceQuote(event_id=eid) for eid in cited], basis="explicit",
        relation="contradicts" if contradicts else "new", related_record_id=contradicts,
        status=status,
    )


def _record_id(model: UserModel, record: ExpectedRecord) -> str | None:
    return next((r.id for r in model.records
                 if r.kind == record.kind and r.statement == record.statement.strip()), None)


def link_batch(case: Case, link: ExpectedLink, where: list[list[int]]) -> int:
    """The batch a labelled link is proposed in: the first where both its records exist
    and, when the label cites evidence, that evidence is."""
    cited = [b for b, batch in enumerate(case.batches)
             if any(e.id in link.evidence for e in batch)]
    return max(where[link.source][0], where[link.target][0], *(cited[:1] or [0]))


def _end(model: UserModel, case: Case, n: int, proposed: dict[int, int]) -> str:
    """A link end: `#k` when the record is this batch's k-th proposal, else its id."""
    if n in proposed:
        return f"#{proposed[n]}"
    return _record_id(model, case.expected[n]) or f"#{len(case.expected)}"


def _link(model: UserModel, case: Case, link: ExpectedLink, events: Sequence[Event],
          proposed: dict[int, int]) -> LinkProposal:
    cited = [e.id for e in events if e.id in link.evidence] or [
        e.id for e in events if e.id in case.expected[link.source].evidence] or [events[0].id]
    return LinkProposal(source=_end(model, case, link.source, proposed),
                        relation=link.relation, target=_end(model, case, link.target, proposed),
                        evidence=[EvidenceQuote(event_id=eid) for eid in cited],
                        basis="explicit")


def oracle_model(case: Case) -> UserModel:
    """The model merge builds from the labels alone, batch by batch (pure)."""
    model = UserModel(user_id=case.user_id)
    where = evidence_batches(case)
    contradicted = successors(case)
    for b, events in enumerate(case.batches):
        proposals: list[Proposal] = []
        proposed: dict[int, int] = {}
        for n, record in enumerate(case.expected):
            if b not in where[n]:
                continue
            old = contradicted.get(n) if b == where[n][0] else None
            target = _record_id(model, case.expected[old]) if old is not None else None
            proposed[n] = len(proposals)
            proposals.append(_proposal(record, events, final=b == where[n][-1],
                                       contradicts=target))
        links = [_link(model, case, link, events, proposed) for link in case.links or ()
                 if link_batch(case, link, where) == b]
        batch = _batch(case.user_id, events)
        model = merge(model, proposals, batch, now=batch.last_at,
                      prompt_version=PROMPT_VERSION, config=ORACLE_MERGE, links=links).model
    return model
