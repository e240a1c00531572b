"""What a calibration profile reads of a record: its features, from the record and its events.

The same function describes a record when `doxa eval run` writes it to a run file (where
the label is known) and when the engine calibrates it for delivery (where it is not), so a
profile is fitted and applied on the very same numbers. A feature that cannot be known
(a run file written before it existed, an erased event) is None, never a guess: the fit
uses only the features every record it sees has, and the profile names them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from doxa.events.parse import Event
from doxa.model.records import Record
from doxa.relevance import RelevanceConfig, score

EPSILON: Final = 1e-6
"""Evidence scores are kept this far from 0 and 1, so their log-odds are finite."""


class RecordFeatures(BaseModel):
    """One record as a calibration profile sees it."""

    model_config = ConfigDict(frozen=True)

    evidence_score: float = Field(ge=0.0, le=1.0)
    """The evidence arithmetic (`doxa.core.confidence`): what `explain` walks through."""
    kind: str
    supporting: int = Field(default=1, ge=0)
    """Distinct events that support the record."""
    contradicting: int | None = Field(default=None, ge=0)
    """Distinct events that contradict it."""
    explicit_share: float | None = Field(default=None, ge=0.0, le=1.0)
    """Of the supporting links, the share whose basis is an explicit statement."""
    verbatim_share: float | None = Field(default=None, ge=0.0, le=1.0)
    """Of the supporting links with a quote, the share whose quote is in the event's text
    (None without quotes, or without the events)."""
    relevance: float | None = Field(default=None, ge=0.0, le=1.0)
    """Mean relevance score of the supporting events (None without the events)."""
    reasked: bool | None = None
    """Whether an answer that proposed or supported the record needed a re-ask."""


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def record_features(record: Record, events: Mapping[str, Event], *,
                    relevance: RelevanceConfig | None = None) -> RecordFeatures:
    """The record's features; `events` are the stored events its evidence cites (a missing
    one counts for neither share nor relevance)."""
    links = list({e.event_id: e for e in record.supporting}.values())
    against = {e.event_id for e in record.contradicting}
    cited = [events[e.event_id] for e in links if e.event_id in events]
    quoted = [(e.quote, events[e.event_id]) for e in links if e.quote and e.event_id in events]
    config = relevance or RelevanceConfig()
    return RecordFeatures(
        evidence_score=(record.confidence if record.evidence_score is None
                        else record.evidence_score),
        kind=record.kind, supporting=len(links),
        contradicting=len(against),
        explicit_share=(sum(1 for e in links if e.basis == "explicit") / len(links)
                        if links else None),
        verbatim_share=(sum(1 for quote, ev in quoted if _normal(quote) in _normal(ev.text or ""))
                        / len(quoted) if quoted else None),
        relevance=sum(score(ev, config) for ev in cited) / len(cited) if cited else None,
        reasked=any(e.reasked for e in links),
    )


def log_odds(p: float) -> float:
    """log(p / (1 − p)), with p kept EPSILON inside (0, 1)."""
    q = min(1.0 - EPSILON, max(EPSILON, p))
    return math.log(q / (1.0 - q))


def sigmoid(z: float) -> float:
    """The inverse of `log_odds`, safe for any z."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


NUMERIC: Final = ("evidence_score", "supporting", "contradicting", "explicit_share",
                  "verbatim_share", "relevance", "reasked")
"""The numeric inputs a profile may weigh, in a fixed order; `kind:NAME` are the others."""

DIRECTION: Final[Mapping[str, int]] = {
    "evidence_score": 1, "supporting": 1, "contradicting": -1, "explicit_share": 1,
    "verbatim_share": 1, "relevance": 1,
}
"""The sign a weight must have: more of a directed feature never makes a record less likely
right (more contradiction never more likely). `reasked` and the kinds are free."""


def inputs(features: RecordFeatures) -> dict[str, float]:
    """The numbers a profile weighs, by name: the evidence score as log-odds (so the identity
    profile is one weight), counts as log(1 + n), shares as they are, one-hot kinds. What is
    unknown for the record (no quote to check, no event left) is 0, the same when a profile
    is fitted as when it is applied."""
    return {
        "evidence_score": log_odds(features.evidence_score),
        "supporting": math.log1p(features.supporting),
        "contradicting": math.log1p(features.contradicting or 0),
        "explicit_share": features.explicit_share or 0.0,
        "verbatim_share": features.verbatim_share or 0.0,
        "relevance": features.relevance or 0.0,
        "reasked": float(bool(features.reasked)),
        f"kind:{features.kind}": 1.0,
    }
