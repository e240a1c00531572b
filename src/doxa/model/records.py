"""Stored records: what doxa believes about one user, with the evidence and the history."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Generator, Iterable, Mapping
from datetime import datetime
from operator import attrgetter
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
)

from doxa.errors import UnknownRecordError
from doxa.events.parse import Event
from doxa.model.views import ModelViews

# belief, goal and preference are built in; a model schema may add kinds of its own
# (e.g. constraint, motivation) where a team needs the causal view.
Kind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,39}$")]
KINDS: tuple[str, ...] = ("belief", "goal", "preference")
Status = Literal["active", "superseded", "achieved", "abandoned", "retracted"]
Polarity = Literal["supports", "contradicts"]
Basis = Literal["explicit", "inferred", "outcome"]
Action = Literal[
    "created", "reinforced", "refined", "contradicted", "superseded", "status_changed",
    "outcome", "evicted",
]


class Frozen(BaseModel):
    """A value: its fields cannot be set once made (copies with changes are new objects,
    which is what lets merge keep every record it does not change as the same object)."""

    model_config = ConfigDict(frozen=True)


class EvidenceLink(Frozen):
    """One event's bearing on a record; a record holds at most one link per event id."""

    event_id: str
    quote: str = ""
    polarity: Polarity = "supports"
    basis: Basis = "inferred"
    observed_at: AwareDatetime
    batch_id: str = ""
    reasked: bool = False
    """The answer that cited this event needed a re-ask to validate (a calibration feature)."""


class Revision(Frozen):
    """One change to a record: when (event and system time), what, and why."""

    action: Action
    recorded_at: AwareDatetime
    observed_at: AwareDatetime
    statement: str
    confidence: float = Field(ge=0.0, le=1.0)
    status: Status
    event_ids: tuple[str, ...] = ()
    batch_id: str = ""
    prompt_version: str = ""
    note: str = ""


class Record(Frozen):
    """A belief, goal or preference with doxa's confidence and its evidence chain."""

    id: str
    user_id: str
    kind: Kind
    statement: str
    context: str = "general"
    dimension: str | None = None
    """The model-schema dimension this record fills (None without a schema)."""
    value: str | None = None
    """For a closed dimension, the chosen value from its set."""
    confidence: float = Field(ge=0.0, le=1.0)
    """What delivery reads: the probability that the record is right when a calibration
    profile read it (`evidence_score` set), else the evidence score itself."""
    evidence_score: float | None = Field(default=None, ge=0.0, le=1.0)
    """The evidence arithmetic (`doxa.core.confidence`) behind a calibrated `confidence`;
    None while `confidence` is uncalibrated. Never stored: the engine sets it on read."""
    evidence: tuple[EvidenceLink, ...] = ()
    status: Status = "active"
    valid_from: AwareDatetime
    valid_to: AwareDatetime | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    prompt_version: str = ""
    superseded_by: str | None = None
    history: tuple[Revision, ...] = ()

    @property
    def supporting(self) -> tuple[EvidenceLink, ...]:
        return tuple(e for e in self.evidence if e.polarity == "supports")

    @property
    def contradicting(self) -> tuple[EvidenceLink, ...]:
        return tuple(e for e in self.evidence if e.polarity == "contradicts")

    @property
    def last_evidence_at(self) -> datetime:
        return max((e.observed_at for e in self.evidence), default=self.valid_from)

    def evidence_ids(self) -> set[str]:
        return {e.event_id for e in self.evidence}


def cited_event_ids(records: Iterable[Record]) -> set[str]:
    """The ids of the events these records cite: the events a store keeps with them."""
    return {e.event_id for r in records for e in r.evidence}


class DimensionValue(BaseModel):
    """A typed answer for delivery: `communication_style → bullets, 0.82`."""

    dimension: str
    value: str | None
    confidence: float
    fallback: bool = False
    """True when `value` is the caller's default because doxa was not sure enough."""
    record_id: str | None = None
    statement: str | None = None
    evidence: list[str] = Field(default_factory=list)


class ExplainedEvidence(BaseModel):
    """An evidence link next to the event it points at (None if the event was erased)."""

    link: EvidenceLink
    event: Event | None


class Explanation(BaseModel):
    """Why doxa holds a record: the record, each piece of evidence with its event, the history."""

    record: Record
    evidence: list[ExplainedEvidence]

    def __str__(self) -> str:
        """`print(model.explain(id))` reads as the chain; the attributes stay for code."""
        r = self.record
        where = r.context + (f", {r.dimension}={r.value}" if r.dimension and r.value else "")
        score = ("uncalibrated" if r.evidence_score is None
                 else f"evidence score {r.evidence_score:.2f}")
        lines = [f"{r.id} {r.kind} · {r.status} · confidence {r.confidence:.2f}, {score} "
                 f"({where})",
                 f"  {r.statement}", "  evidence:"]
        for item in self.evidence:
            link, event = item.link, item.event
            sign = "+" if link.polarity == "supports" else "-"
            what = "(event erased)" if event is None else (
                event.text or f"{event.type} {event.properties}")
            lines.append(f"    {sign} {link.event_id} · {_minute(link.observed_at)} · "
                         f"{link.basis}: {what}")
            if link.quote:
                lines.append(f'        quote: "{link.quote}"')
        if r.history:
            lines.append("  history:")
        lines += [f"    {_minute(rev.recorded_at)} {rev.action} → {rev.confidence:.2f} "
                  f"{rev.status}" + (f" ({', '.join(rev.event_ids)})" if rev.event_ids else "")
                  for rev in r.history]
        return "\n".join(lines)


def _minute(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


_RECORD_ID = attrgetter("id")
COLD_MIN_RECORDS = 3
COLD_MIN_CONFIDENCE = 0.6


class UserModel(Frozen):
    """Everything doxa holds about one user; the query side that delivery code calls."""

    user_id: str
    records: tuple[Record, ...] = ()
    """In id order, always (a model built by hand is sorted here; `with_records` sorts)."""
    version: int = 0
    calibrated: bool = False
    """True when every record's confidence was read through a calibration profile for the
    model and prompt version that produced it; False means confidences are evidence scores,
    not probabilities, and `as_prompt` and `doxa show` say so."""
    events: Mapping[str, Event] = Field(default_factory=dict, exclude=True)
    _views: ModelViews[Record] = PrivateAttr(default_factory=ModelViews)

    @property
    def views(self) -> ModelViews[Record]:
        """Word indexes and version differences derived from `records`, kept with this
        model and handed on to the versions copied from it (see `doxa.model.views`)."""
        return self._views

    @field_validator("records")
    @classmethod
    def _in_id_order(cls, records: tuple[Record, ...]) -> tuple[Record, ...]:
        return tuple(sorted(records, key=_RECORD_ID))

    def __iter__(self) -> Generator[Any, None, None]:
        """The records, in id order. (A pydantic model iterates over (field, value) pairs;
        typed `Any` because a narrower item type would not be a valid override of that.)"""
        yield from self.records

    def __len__(self) -> int:
        return len(self.records)

    def _select(
        self, kind: Kind | None, context: str | None, min_confidence: float, include_inactive: bool
    ) -> list[Record]:
        chosen = [
            r for r in self.records
            if (kind is None or r.kind == kind)
            and (context is None or r.context == context)
            and r.confidence >= min_confidence
            and (include_inactive or r.status == "active")
        ]
        return sorted(chosen, key=lambda r: (-r.confidence, r.id))

    def beliefs(
        self, context: str | None = None, min_confidence: float = 0.0,
        include_inactive: bool = False,
    ) -> list[Record]:
        """Active beliefs, surest first; filter by context tag and a confidence floor."""
        return self._select("belief", context, min_confidence, include_inactive)

    def goals(
        self, context: str | None = None, min_confidence: float = 0.0,
        include_inactive: bool = False,
    ) -> list[Record]:
        """Active goals, surest first; `include_inactive` adds achieved/abandoned ones."""
        return self._select("goal", context, min_confidence, include_inactive)

    def preferences(
        self, context: str | None = None, min_confidence: float = 0.0,
        include_inactive: bool = False,
    ) -> list[Record]:
        """Active preferences, surest first."""
        return self._select("preference", context, min_confidence, include_inactive)

    def active(self) -> list[Record]:
        return self._select(None, None, 0.0, False)

    def get(self, record_id: str) -> Record:
        """The record with this id, whatever its status; `UnknownRecordError` if absent."""
        record = self.find(record_id)
        if record is None:
            raise UnknownRecordError(self.user_id, record_id)
        return record

    def find(self, record_id: str) -> Record | None:
        """The record with this id, or None: a binary search, records being in id order."""
        at = bisect_left(self.records, record_id, key=_RECORD_ID)
        if at < len(self.records) and self.records[at].id == record_id:
            return self.records[at]
        return None

    def explain(self, record_id: str) -> Explanation:
        """The record's evidence chain with the events themselves, oldest first."""
        record = self.get(record_id)
        links = sorted(record.evidence, key=lambda e: (e.observed_at, e.event_id))
        return Explanation(
            record=record,
            evidence=[ExplainedEvidence(link=e, event=self.events.get(e.event_id)) for e in links],
        )

    def readiness(self) -> float:
        """0..1: how much the model can be trusted; thin evidence gives a low score."""
        active = self.active()
        if not active:
            return 0.0
        sure = sum(1 for r in active if r.confidence >= COLD_MIN_CONFIDENCE)
        independent = len({e.event_id for r in active for e in r.supporting})
        return min(1.0, 0.5 * min(1.0, sure / COLD_MIN_RECORDS)
                   + 0.5 * min(1.0, independent / (2 * COLD_MIN_RECORDS)))

    def is_cold(self) -> bool:
        """True while the model is too thin to personalise on: fall back to defaults."""
        return self.readiness() < 0.5

    def as_prompt(self, min_confidence: float = 0.5, limit: int = 20) -> str:
        """A compact rendering for the delivery layer's LLM prompts, surest records first."""
        lines = [f"What we understand about user {self.user_id}"
                 + (" (little evidence yet; treat as tentative):" if self.is_cold() else ":")]
        if not self.calibrated:
            lines.append("(confidence is an uncalibrated evidence score, not a probability)")
        chosen = [r for r in self.active() if r.confidence >= min_confidence][:limit]
        mark = "" if self.calibrated else " uncalibrated"
        for r in chosen:
            lines.append(f"- [{r.kind}, {r.context}, confidence {r.confidence:.2f}{mark}] "
                         f"{r.statement}")
        if not chosen:
            lines.append("- nothing with enough confidence yet")
        return "\n".join(lines)

    def top(self, kind: Kind, *, context: str | None = None, min_confidence: float = 0.6,
            default: Record | None = None) -> Record | None:
        """The surest active record of a kind, or `default` when none is sure enough.

        Delivery code calls this at a decision point, so thin evidence falls back to the
        product's default instead of personalising on a guess.
        """
        chosen = self._select(kind, context, min_confidence, False)
        return chosen[0] if chosen else default

    def value(self, dimension: str, *, min_confidence: float = 0.6,
              default: str | None = None) -> DimensionValue:
        """The current value of a schema dimension, with its confidence and evidence, or
        the caller's `default` (marked `fallback=True`) when doxa is not sure enough."""
        holders = [r for r in self.active() if r.dimension == dimension]
        best = holders[0] if holders else None
        if best is None or best.confidence < min_confidence:
            return DimensionValue(dimension=dimension, value=default, fallback=True,
                                  confidence=best.confidence if best else 0.0,
                                  record_id=best.id if best else None)
        return DimensionValue(
            dimension=dimension, value=best.value if best.value is not None else best.statement,
            confidence=best.confidence, record_id=best.id, statement=best.statement,
            evidence=[e.event_id for e in best.supporting])

    def dimensions(self) -> dict[str, list[Record]]:
        """Active records by schema dimension, surest first (records without one omitted)."""
        found: dict[str, list[Record]] = {}
        for record in self.active():
            if record.dimension is not None:
                found.setdefault(record.dimension, []).append(record)
        return found

    def trajectory(self, record_id: str) -> list[Revision]:
        """Every change to the record, oldest first: when, what and why."""
        return list(self.get(record_id).history)

    def as_of(self, when: datetime) -> UserModel:
        """What doxa believed about the user at system time `when`.

        Records created later are absent; each other record shows the statement, status
        and confidence of its last revision at or before `when`, and the evidence it had.
        """
        past: list[Record] = []
        for record in self.records:
            revisions = [r for r in record.history if r.recorded_at <= when]
            if not revisions:
                continue
            last = revisions[-1]
            seen = {eid for r in revisions for eid in r.event_ids}
            past.append(record.model_copy(update={
                "statement": last.statement, "status": last.status,
                "confidence": last.confidence, "history": tuple(revisions),
                "evidence": tuple(e for e in record.evidence if e.event_id in seen),
                "updated_at": last.recorded_at,
                "valid_to": record.valid_to if last.status != "active" else None,
                "superseded_by": record.superseded_by if last.status == "superseded" else None,
            }))
        return self.with_records(past)

    def with_records(self, records: Iterable[Record]) -> UserModel:
        return self.model_copy(update={"records": tuple(sorted(records, key=_RECORD_ID))})


class Change(Frozen):
    """What one merge step did to one record, for ingest results and logs."""

    record_id: str
    kind: Kind
    action: Action
    statement: str
    confidence_before: float | None
    confidence_after: float
    status: Status
    event_ids: tuple[str, ...] = ()
