"""Records as shown side by side in `compare`, `report` and the baseline view."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from doxa.eval.runfile import CaseResult


class RecordView(BaseModel):
    """A record as shown side by side: predicted ones carry confidence and status."""

    model_config = ConfigDict(frozen=True)

    kind: str
    statement: str
    status: str
    evidence: tuple[str, ...] = ()
    confidence: float | None = None
    matched: bool = False


def record_views(result: CaseResult) -> tuple[tuple[RecordView, ...], tuple[RecordView, ...]]:
    """(expected, predicted) of one case, each flagged when matched; a baseline's records
    show no confidence (theirs is a fixed stand-in)."""
    matched_e = {m.expected_index for m in result.matching.pairs}
    matched_p = {m.predicted_id for m in result.matching.pairs}
    expected = tuple(RecordView(kind=e.kind, statement=e.statement, status=e.status,
                                evidence=e.evidence, matched=n in matched_e)
                     for n, e in enumerate(result.expected))
    predicted = tuple(RecordView(kind=p.kind, statement=p.statement, status=p.status,
                                 evidence=p.evidence,
                                 confidence=None if result.baseline else p.confidence,
                                 matched=p.id in matched_p)
                      for p in result.predicted)
    return expected, predicted
