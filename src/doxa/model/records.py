"""Stored records: what doxa believes about one user, with the evidence and the history."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Generator, Iterable, Mapping
from datetime import datetime
from operator import attrgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal, overload

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
)

from doxa.errors import SegmentNotLoadedError, UnknownRecordError
from doxa.events.parse import Event
from doxa.model.views import ModelViews

if TYPE_CHECKING:
    from doxa.core.leverage import HeldLeverage, LeverageReport
    from doxa.model.twin import Twin

# Five kinds are built in: belief, goal and preference, which every extraction asks for, and
# motivation and constraint, the "why" behind a goal (stored, linked, observed and shown
# like the others; a model schema asks for them where a team wants them extracted). A
# model schema may add kinds of its own.
Kind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,39}$")]
KINDS: tuple[str, ...] = ("belief", "goal", "preference", "motivation", "constraint")
EXTRACTED_KINDS: tuple[str, ...] = KINDS[:3]
"""The kinds an extraction without a schema asks for, and a schema dimension's default."""
Status = Literal["active", "superseded", "achieved", "abandoned", "retracted"]
Polarity = Literal["supports", "contradicts"]
Basis = Literal["explicit", "inferred", "outcome"]
Action = Literal[
    "created", "reinforced", "refined", "contradicted", "superseded", "status_changed",
    "outcome", "evicted", "linked", "unlinked",
]
Relation = Literal["because", "constrained_by", "blocked_by", "in_order_to"]
LINK_TARGET_KIND: Mapping[str, str] = MappingProxyType({
    "because": "motivation", "constrained_by": "constraint", "blocked_by": "belief",
    "in_order_to": "goal"})
"""What each causal relation points at; the record holding the link is always a goal."""
LinkStatus = Literal["active", "ended"]


class Frozen(BaseModel):
    """A value: its fields cannot be set once made (copies with changes are new objects,
    which is what lets merge keep every record it does not change as the same object)."""

    model_config = ConfigDict(frozen=True)


class EvidenceLink(Frozen):
    """One event's bearing on a record; a record holds at most one link per event id."""

    event_id: str
    quote: str = ""
    quote_as_written: str | None = None
    """What the model wrote when doxa repaired the quote to the event's exact span, or cited
    it to another event (`doxa.llm.evidence`); None when it quoted word for word."""
    polarity: Polarity = "supports"
    basis: Basis = "inferred"
    observed_at: AwareDatetime
    batch_id: str = ""
    source: str = ""
    """Who put it here: "" for extraction; "manual" or "rule:<name>" for an observation."""
    weight: float | None = None
    """The log-odds this link adds when its source stated a confidence (an observation's
    prior for its evidence); None: the weight of its basis."""
    reasked: bool = False
    """The answer that cited this event needed a re-ask to validate (a calibration feature)."""


class CausalLink(Frozen):
    """One "why" edge held by a goal: the goal is `because` of a motivation, `constrained_by`
    a constraint, `blocked_by` a belief, or pursued `in_order_to` reach another goal. It
    has its own evidence and confidence; an ended link stays, so history keeps it."""

    relation: Relation
    target_id: str
    evidence: tuple[EvidenceLink, ...] = ()
    confidence: float = Field(ge=0.0, le=1.0)
    status: LinkStatus = "active"
    created_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    note: str = ""
    """Why it ended, or where it came from when it followed a superseded record."""

    @property
    def key(self) -> tuple[str, str]:
        return self.relation, self.target_id


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
    links: tuple[CausalLink, ...] = ()
    """The goal's causal links (see `CausalLink`), active and ended; other kinds hold none."""

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

    def cited_ids(self) -> set[str]:
        """Every event id the record cites: its own evidence and its links' evidence."""
        return self.evidence_ids() | {e.event_id for link in self.links for e in link.evidence}

    def active_links(self, relation: Relation | None = None) -> list[CausalLink]:
        return [link for link in self.links if link.status == "active"
                and (relation is None or link.relation == relation)]


def cited_event_ids(records: Iterable[Record]) -> set[str]:
    """The ids of the events these records cite: the events a store keeps with them."""
    return {eid for r in records for eid in r.cited_ids()}


class DimensionValue(BaseModel):
    """A typed answer for delivery: `communication_style → bullets, 0.82`."""

    dimension: str
    value: str | None
    confidence: float
    fallback: bool = False
    """True when `value` is not the user's own answer (doxa was not sure enough): the
    caller's default, or the segment's answer when `source` is "segment"."""
    record_id: str | None = None
    statement: str | None = None
    evidence: list[str] = Field(default_factory=list)
    source: Literal["user", "default", "segment"] = "user"
    """Whose answer `value` is: the user's own, the caller's default, or the segment's."""
    support: int | None = None
    """For a segment answer: how many users of the segment answer this dimension (the
    denominator of `distribution`)."""
    distribution: dict[str, float] = Field(default_factory=dict)
    """For a segment answer: each value's share among those users, largest first."""


class SegmentAnswer(Frozen):
    """What users of a segment commonly hold, for `top(..., fallback="segment")`: never
    another user's record, only the statement many hold, its share and the support."""

    kind: Kind
    statement: str
    share: float = Field(ge=0.0, le=1.0)
    """Of the segment's users holding any record of this kind, the share holding this."""
    support: int
    """How many of the segment's users hold a record of this kind."""
    source: Literal["segment"] = "segment"


class DimensionShares(Frozen):
    """A dimension's answers across a segment: each value's share, and how many answered."""

    support: int
    shares: dict[str, float] = Field(default_factory=dict)


class Segment(Frozen):
    """What is true of the users who share this user's declared traits (plan, role, ...):
    the prior delivery falls back to when the user's own model is not sure enough."""

    traits: dict[str, str] = Field(default_factory=dict)
    """The traits the segment's users share with this user."""
    members: int = 0
    """How many other users share them."""
    dimensions: dict[str, DimensionShares] = Field(default_factory=dict)
    kinds: dict[str, list[SegmentAnswer]] = Field(default_factory=dict)
    """Per kind, the statements most of the segment's users hold, commonest first."""


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
            what = ("(an external id, not an event doxa holds)" if link.source else
                    "(event erased)") if event is None else (
                event.text or f"{event.type} {event.properties}")
            by = f" · observed by {link.source}" if link.source else ""
            lines.append(f"    {sign} {link.event_id} · {_minute(link.observed_at)} · "
                         f"{link.basis}{by}: {what}")
            if link.quote:
                lines.append(f'        quote: "{link.quote}"')
            if link.quote_as_written is not None:
                lines.append(f'        repaired from: "{link.quote_as_written}"')
        if r.links:
            lines.append("  links:")
        lines += [f"    {link.relation} → {link.target_id} · {link.status} · confidence "
                  f"{link.confidence:.2f} · evidence {', '.join(e.event_id for e in link.evidence)}"
                  + (f" ({link.note})" if link.note else "") for link in r.links]
        if r.history:
            lines.append("  history:")
        lines += [f"    {_minute(rev.recorded_at)} {rev.action} → {rev.confidence:.2f} "
                  f"{rev.status}" + (f" ({', '.join(rev.event_ids)})" if rev.event_ids else "")
                  + (f" · {rev.note}" if rev.note else "")
                  for rev in r.history]
        return "\n".join(lines)


def _link_as_of(link: CausalLink, when: datetime) -> CausalLink:
    if link.ended_at is None or link.ended_at <= when:
        return link
    return link.model_copy(update={"status": "active", "ended_at": None, "note": ""})


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
    segment: Segment | None = Field(default=None, exclude=True)
    """What users sharing this user's traits hold, when the model was read with
    `segment_by` (see `value` and `top` with `fallback="segment"`)."""
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

    @overload
    def top(self, kind: Kind, *, context: str | None = None, min_confidence: float = 0.6,
            default: Record | None = None,
            fallback: Literal["default"] = "default") -> Record | None: ...

    @overload
    def top(self, kind: Kind, *, context: str | None = None, min_confidence: float = 0.6,
            default: Record | None = None,
            fallback: Literal["segment"]) -> Record | SegmentAnswer | None: ...

    def top(self, kind: Kind, *, context: str | None = None, min_confidence: float = 0.6,
            default: Record | None = None,
            fallback: Literal["default", "segment"] = "default",
            ) -> Record | SegmentAnswer | None:
        """The surest active record of a kind, or `default` when none is sure enough.

        Delivery code calls this at a decision point, so thin evidence falls back to the
        product's default instead of personalising on a guess; with `fallback="segment"`,
        to what most users of the user's segment hold (a `SegmentAnswer`, with its share
        and support), and to `default` only when the segment holds nothing of the kind.
        """
        chosen = self._select(kind, context, min_confidence, False)
        if chosen:
            return chosen[0]
        if fallback == "segment":
            answers = self._segment().kinds.get(kind, [])
            if answers:
                return answers[0]
        return default

    def value(self, dimension: str, *, min_confidence: float = 0.6,
              default: str | None = None,
              fallback: Literal["default", "segment"] = "default") -> DimensionValue:
        """The current value of a schema dimension, with its confidence and evidence, or
        the caller's `default` (marked `fallback=True`) when doxa is not sure enough.

        With `fallback="segment"`, a value below `min_confidence` gives way to the
        segment's commonest value instead (`source="segment"`, with its share as the
        confidence, the support count and the whole distribution), and to `default` only
        when no user of the segment answers the dimension."""
        # The surest holder, as `active()` would order them, without sorting every record:
        # this runs at each decision point.
        best = min((r for r in self.records if r.dimension == dimension
                    and r.status == "active"), key=lambda r: (-r.confidence, r.id), default=None)
        if best is None or best.confidence < min_confidence:
            if fallback == "segment":
                shares = self._segment().dimensions.get(dimension)
                if shares is not None and shares.shares:
                    top_value, share = next(iter(shares.shares.items()))
                    return DimensionValue(dimension=dimension, value=top_value,
                                          confidence=share, fallback=True, source="segment",
                                          support=shares.support,
                                          distribution=dict(shares.shares))
            return DimensionValue(dimension=dimension, value=default, fallback=True,
                                  confidence=best.confidence if best else 0.0,
                                  record_id=best.id if best else None, source="default",
                                  support=0 if fallback == "segment" else None)
        return DimensionValue(
            dimension=dimension, value=best.value if best.value is not None else best.statement,
            confidence=best.confidence, record_id=best.id, statement=best.statement,
            evidence=[e.event_id for e in best.supporting])

    def _segment(self) -> Segment:
        if self.segment is None:
            raise SegmentNotLoadedError()
        return self.segment

    def twin(self, *, recent_days: float = 30.0) -> Twin:
        """The digital twin: active goals with their motivations, constraints and blocking
        beliefs (from the goals' causal links), and what changed recently (see
        `doxa.model.twin`); `.as_prompt()` renders it for delivery."""
        from doxa.model.twin import build_twin  # twin builds on this module's types

        return build_twin(self, recent_days=recent_days)

    def leverage(self, report: LeverageReport) -> list[HeldLeverage]:
        """The user's records ranked by how strongly their groups separate the report's
        outcome across users (`Engine.leverage` makes the report): associations, not
        causes, each with its lift and interval."""
        return report.for_user(self)

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
                "links": tuple(_link_as_of(link, when) for link in record.links
                               if link.created_at <= when),
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
