"""Observations: a record or a causal link given by a caller, without an LLM.

A team starting small writes down what it knows by hand or from its own rules:
`observe(user, "belief", "Building internal business case", evidence=["pricing_3x"],
confidence=0.78, source="rule:pricing_visits")`. The observation becomes an event of type
`observation` (so its id is idempotent through the ledger and `explain` can show it) and a
proposal merged by the very merge extracted proposals take: it reinforces, contradicts or
supersedes what is there, and later extractions do the same to it.

Its evidence may name events doxa holds or ids from the caller's own systems. A stated
confidence is the caller's prior for that evidence: each link carries the weight that
gives exactly that confidence on its own (`prior_weight`), so later evidence moves it as it
moves any record. Pure: the engine loads, calls these and commits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from doxa.core.confidence import prior_weight
from doxa.core.links import ProposedLink, link_problem
from doxa.core.merge import MergeConfig, MergeResult, merge_evidenced
from doxa.errors import InvalidObservationError
from doxa.events.fields import check_event_id, check_label
from doxa.events.parse import Event, parse_event
from doxa.llm.schema import EvidenceQuote, Proposal
from doxa.model.records import EvidenceLink, Kind, Record, Relation, UserModel
from doxa.relevance import Batch

OBSERVATION_TYPE = "observation"
SOURCE_PATTERN = r"^(manual|rule:[A-Za-z0-9][A-Za-z0-9._-]{0,63})$"
_SOURCE = re.compile(SOURCE_PATTERN)
PROMPT_VERSION = "observed"
"""What a revision made by an observation shows where an extraction shows its prompt."""


class ObservedProposal(Proposal):
    """A proposal made from an observation: it may name a schema dimension and value."""

    dimension: str | None = None
    value: str | None = None

    def slot(self) -> tuple[str | None, str | None]:
        return self.dimension, self.value


class _Given(BaseModel):
    """What every observation holds: who says so, on what evidence, how sure, when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    evidence: tuple[str, ...] = ()
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    source: str = "manual"
    at: AwareDatetime

    @field_validator("id")
    @classmethod
    def _event_id(cls, value: str) -> str:
        return check_event_id(value)

    @field_validator("evidence")
    @classmethod
    def _evidence_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for eid in value:
            check_event_id(eid)
        return tuple(dict.fromkeys(value))

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not _SOURCE.fullmatch(value):
            raise ValueError('must be "manual" or "rule:<name>" (letters, digits, . _ -)')
        return value


class Observation(_Given):
    """A record a caller states: kind, statement and how it relates to the model."""

    kind: Kind
    statement: str = Field(min_length=3, max_length=300)
    context: str | None = Field(default=None, max_length=60)
    relation: Literal["new", "reinforces", "refines", "contradicts"] = "new"
    related_record_id: str | None = None
    dimension: str | None = None
    value: str | None = None
    status: Literal["active", "achieved", "abandoned"] = "active"

    @field_validator("context")
    @classmethod
    def _context(cls, value: str | None) -> str | None:
        return None if value is None else check_label(value)


class LinkObservation(_Given):
    """A causal link a caller states between two records the model holds."""

    goal_id: str = Field(min_length=1)
    relation: Relation
    target_id: str = Field(min_length=1)


def validated(kind: type[_Given], data: Mapping[str, Any]) -> Any:
    """The observation, or `InvalidObservationError` naming the first wrong field."""
    try:
        return kind.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        message = err["msg"].removeprefix("Value error, ")
        raise InvalidObservationError(message, field=field) from None


def default_id(user_id: str, *parts: object) -> str:
    """An id from what the observation says, so the same observation sent twice (a retry)
    is recorded once; give each its own id to count repeats."""
    text = "|".join([user_id, *(str(p) for p in parts)])
    return "obs_" + hashlib.sha256(text.encode()).hexdigest()[:16]


def observation_event(user_id: str, given: _Given) -> Event:
    """The event an observation is kept as: its text is what it states, its properties
    what it is and who said so."""
    if isinstance(given, Observation):
        text = given.statement
        what: dict[str, Any] = {"kind": given.kind, "relation": given.relation}
    else:
        assert isinstance(given, LinkObservation)
        text = f"{given.goal_id} {given.relation} {given.target_id}"
        what = {"link": given.relation, "goal_id": given.goal_id, "target_id": given.target_id}
    props = {**what, "source": given.source, "evidence": list(given.evidence)}
    if given.confidence is not None:
        props["confidence"] = given.confidence
    return parse_event({"id": given.id, "user_id": user_id, "type": OBSERVATION_TYPE,
                        "timestamp": given.at, "text": text, "properties": props})


def evidence_links(given: _Given, known: Mapping[str, Event],
                   config: MergeConfig) -> list[EvidenceLink]:
    """One link per evidence id (the observation itself when it names none): at the
    event's time when doxa holds the event, else at the observation's; weighted by the
    stated confidence when there is one."""
    ids = given.evidence or (given.id,)
    weight = (None if given.confidence is None
              else prior_weight(given.confidence, len(ids), config.confidence))
    return [EvidenceLink(event_id=eid, observed_at=known[eid].timestamp if eid in known
                         else given.at, basis="inferred", source=given.source,
                         weight=weight, batch_id=_batch_id(given))
            for eid in ids]


def _batch_id(given: _Given) -> str:
    return f"{OBSERVATION_TYPE}:{given.id}"


def _batch(user_id: str, given: _Given) -> Batch:
    return Batch(id=_batch_id(given), user_id=user_id, items=(), events={})


def apply_observation(model: UserModel, obs: Observation, known: Mapping[str, Event], *,
                      now: datetime, config: MergeConfig | None = None) -> MergeResult:
    """Merge the observed record into the model as an extracted one would be."""
    config = config or MergeConfig()
    if obs.related_record_id is not None and model.find(obs.related_record_id) is None:
        raise InvalidObservationError(f"the model has no record {obs.related_record_id}",
                                      field="related_record_id")
    if obs.relation != "new" and obs.related_record_id is None:
        raise InvalidObservationError(f"relation {obs.relation} needs the record it "
                                      "relates to", field="related_record_id")
    links = evidence_links(obs, known, config)
    proposal = ObservedProposal(
        kind=obs.kind, statement=obs.statement, context=obs.context or "general",
        evidence=[EvidenceQuote(event_id=link.event_id) for link in links],
        basis="inferred", relation=obs.relation, related_record_id=obs.related_record_id,
        status=obs.status, dimension=obs.dimension, value=obs.value)
    return merge_evidenced(model, [(proposal, links)], _batch(model.user_id, obs), now=now,
                           prompt_version=PROMPT_VERSION, config=config)


def record_named(model: UserModel, ref: str) -> Record | None:
    """The record with this id, or the one the observation with this id landed on (its
    evidence carries the observation's batch id): so a link can name the observations it
    joins, the way a hand-written file knows them."""
    found = model.find(ref)
    if found is not None:
        return found
    batch_id = f"{OBSERVATION_TYPE}:{ref}"
    return next((r for r in model.records if any(e.batch_id == batch_id for e in r.evidence)),
                None)


def apply_link(model: UserModel, obs: LinkObservation, known: Mapping[str, Event], *,
               now: datetime, config: MergeConfig | None = None) -> MergeResult:
    """Add the observed link (or give an existing one this evidence); a link the model
    cannot hold is refused naming why."""
    config = config or MergeConfig()
    goal, target = record_named(model, obs.goal_id), record_named(model, obs.target_id)
    problem = link_problem(goal, obs.relation, target)
    if problem is not None or goal is None or target is None:
        field = "goal_id" if problem and "goal" in problem and "points at" not in problem \
            else "target_id"
        raise InvalidObservationError(problem or "unknown record", field=field)
    links = ProposedLink(goal.id, obs.relation, target.id,
                         tuple(evidence_links(obs, known, config)))
    return merge_evidenced(model, [], _batch(model.user_id, obs), now=now,
                           prompt_version=PROMPT_VERSION, config=config, links=[links])
