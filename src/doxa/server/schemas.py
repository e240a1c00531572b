"""The HTTP API's request and response bodies, and its opaque page cursors."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from doxa.core.merge import Outcome
from doxa.events.fields import MAX_TEXT_CHARS, EventId, EventText, Label, Properties
from doxa.model.records import Change, Record, Relation


class EventIn(BaseModel):
    """One thing the user did or said. `user_id` may be left out (the path names the user).

    Checked by the same rules as doxa's own `Event` (doxa.events.fields), so a bad field is
    a 422 naming it before the model provider is called."""

    model_config = ConfigDict(extra="ignore")

    id: EventId = Field(description="unique per user; sending the same event again changes "
                        "nothing")
    type: Label = Field(examples=["chat_message"])
    timestamp: AwareDatetime = Field(description="with a time zone, e.g. 2026-03-02T10:00:00Z")
    text: EventText = Field(default=None, max_length=MAX_TEXT_CHARS,
                            description="no control characters but tab and line breaks")
    properties: Properties = Field(default_factory=dict)
    context: Label | None = Field(default=None)
    user_id: str | None = Field(default=None, description="if given, must equal the path's")


class EventBatch(BaseModel):
    """A batch of one user's events to ingest."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"events": [
        {"id": "e1", "type": "page_view", "timestamp": "2026-03-02T10:00:00Z",
         "properties": {"path": "/pricing"}},
        {"id": "e2", "type": "chat_message", "timestamp": "2026-03-02T10:31:00Z",
         "text": "I need to show my CFO this pays back within 6 months"}]}]})

    events: list[EventIn] = Field(min_length=1)


class OutcomeIn(BaseModel):
    """What happened when delivery acted on a record."""

    record_id: str = Field(min_length=1, max_length=128)
    outcome: Outcome
    event_id: EventId | None = Field(
        default=None,
        description="id of the delivery event; recording the same id twice changes nothing")
    at: AwareDatetime | None = Field(default=None, description="when it happened; default now")
    properties: Properties = Field(default_factory=dict)


class OutcomeResult(BaseModel):
    """How the outcome moved the record (empty when it was recorded before)."""

    user_id: str
    changes: list[Change]


class ObservationIn(BaseModel):
    """A record observed without an LLM (by hand or by a rule), merged as extracted ones."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "kind": "belief", "statement": "Is building an internal business case",
        "evidence": ["pricing_3x", "comparison_page"], "confidence": 0.78,
        "context": "purchase_intent", "source": "rule:pricing_visits", "id": "obs-17"}]})

    kind: str = Field(examples=["belief"], description="belief, goal, preference, motivation, "
                      "constraint, or a schema's kind")
    statement: str = Field(min_length=3, max_length=300)
    evidence: list[EventId] = Field(default_factory=list, max_length=50, description=(
        "event ids doxa holds or ids from your own systems; none: the observation itself"))
    confidence: float | None = Field(default=None, ge=0.0, le=1.0, description=(
        "your prior for this evidence; later evidence moves it as for any record"))
    context: Label | None = None
    source: str = Field(default="manual", description='"manual" or "rule:<name>"')
    id: EventId | None = Field(default=None, description=(
        "sending the same id again changes nothing (default: derived from the content)"))
    at: AwareDatetime | None = Field(default=None, description="when; default now")
    relation: Literal["new", "reinforces", "refines", "contradicts"] = "new"
    related_record_id: str | None = Field(default=None, max_length=128)
    dimension: str | None = Field(default=None, max_length=40)
    value: str | None = Field(default=None, max_length=200)
    status: Literal["active", "achieved", "abandoned"] = "active"


class LinkIn(BaseModel):
    """A causal link observed between a goal and the record that explains it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "goal_id": "r_1970c3ac1534", "relation": "because", "target_id": "r_5a0e2f9b77c1",
        "evidence": ["call-notes-3"], "confidence": 0.7}]})

    goal_id: str = Field(min_length=1, max_length=200, description=(
        "the goal's record id, or the id of the observation that made it"))
    relation: Relation = Field(description="because → a motivation; constrained_by → a "
                               "constraint; blocked_by → a belief; in_order_to → a goal")
    target_id: str = Field(min_length=1, max_length=200)
    evidence: list[EventId] = Field(default_factory=list, max_length=50)
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    source: str = "manual"
    id: EventId | None = None
    at: AwareDatetime | None = None


class ChangesResult(BaseModel):
    """What an observation or a link changed (empty when its id was recorded before)."""

    user_id: str
    changes: list[Change]


class RecordPage(BaseModel):
    """One page of records, surest first; pass `next_cursor` as `cursor` for the next."""

    user_id: str
    records: list[Record]
    next_cursor: str | None = None
    calibrated: bool = Field(default=False, description=(
        "true when every confidence is a calibrated probability (a calibration profile for "
        "the model and prompt version read it; `evidence_score` holds the arithmetic); "
        "false when confidences are uncalibrated evidence scores"))


class ModelPage(RecordPage):
    """One page of the user's model (all records, ordered by id) and how ready it is."""

    version: int
    readiness: float = Field(ge=0.0, le=1.0)
    is_cold: bool = Field(description="too little evidence to personalise on: use defaults")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


SortKey = tuple[float, str]


def encode_cursor(listing: str, key: SortKey) -> str:
    raw = json.dumps([listing, key[0], key[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(listing: str, cursor: str) -> SortKey | None:
    """The sort key a cursor resumes after, or None when it is not one of this listing's."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if (isinstance(data, list) and len(data) == 3 and data[0] == listing
            and isinstance(data[1], int | float) and isinstance(data[2], str)):
        return float(data[1]), data[2]
    return None
