"""What a user's profile events say: declared segment traits and the outcomes they reached.

The product sends `identify` events (traits such as plan and role, as Segment's identify
call does, flat or under `traits`) and outcome events (`converted`, `churned`); doxa keeps
them with the user (they are never extraction evidence, and `identify` never reaches an
LLM), and `doxa.engine` records more through `identify` and `record_user_outcome`. The
delivery outcomes of `record_outcome` (an `outcome` event naming engaged, converted, ...)
count as the user's outcomes too. Pure: events in, traits and outcomes out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from doxa.events.parse import Event
from doxa.model.records import UserModel

IDENTIFY = "identify"
USER_OUTCOME = "user_outcome"
OUTCOME_EVENT_TYPES = ("converted", "churned")
PROFILE_TYPES = (IDENTIFY, USER_OUTCOME, *OUTCOME_EVENT_TYPES)
"""Event types an ingest keeps whether or not a record cites them."""
RECORD_OUTCOME = "outcome"
"""The type of the event `Engine.record_outcome` stores."""


def is_profile_event(event: Event) -> bool:
    return event.type in PROFILE_TYPES


def traits_of(events: Iterable[Event]) -> dict[str, str]:
    """The user's traits: every identify event's scalar properties (or its `traits`), the
    latest value of each winning."""
    traits: dict[str, str] = {}
    for event in sorted((e for e in events if e.type == IDENTIFY),
                        key=lambda e: (e.timestamp, e.id)):
        props: Mapping[str, Any] = event.properties
        nested = props.get("traits")
        source = nested if isinstance(nested, Mapping) else props
        traits |= {str(k): str(v) for k, v in source.items()
                   if isinstance(v, str | int | float | bool)}
    return traits


def outcomes_of(events: Iterable[Event]) -> dict[str, datetime]:
    """Outcome name → when the user first reached it."""
    found: dict[str, datetime] = {}
    for event in events:
        if event.type in OUTCOME_EVENT_TYPES:
            name: object = event.type
        elif event.type in (USER_OUTCOME, RECORD_OUTCOME):
            name = event.properties.get("outcome")
        else:
            continue
        if isinstance(name, str) and name and (
                name not in found or event.timestamp < found[name]):
            found[name] = event.timestamp
    return found


@dataclass(frozen=True)
class UserProfile:
    """One user's model with the traits and outcomes their profile events declare."""

    model: UserModel
    traits: Mapping[str, str] = field(default_factory=dict)
    outcomes: Mapping[str, datetime] = field(default_factory=dict)

    @classmethod
    def of(cls, model: UserModel, events: Iterable[Event]) -> UserProfile:
        kept = list(events)
        return cls(model, traits_of(kept), outcomes_of(kept))
