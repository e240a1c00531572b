"""Relevance: score events, drop low-signal ones, collapse repeats, cut into token-bounded batches.

Pure functions: the same events and settings always give the same batches, so batch ids are
stable across runs (which is what lets cassettes and response caches match).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from doxa.events.parse import Event

DEFAULT_WEIGHTS: dict[str, float] = {
    # Said in the user's own words: the strongest signal there is.
    "chat_message": 1.0,
    "message": 1.0,
    "support_ticket": 1.0,
    "survey_answer": 1.0,
    "survey_response": 1.0,
    "review": 1.0,
    "feedback": 1.0,
    "search": 0.8,
    "outcome": 0.9,
    "delivery_outcome": 0.9,
    "purchase": 0.9,
    "order": 0.9,
    "subscription_change": 0.9,
    "plan_change": 0.9,
    "cancel": 0.9,
    "signup": 0.7,
    "form_submit": 0.8,
    "download": 0.6,
    "click": 0.5,
    "page_view": 0.5,
    "screen_view": 0.5,
    "feature_used": 0.6,
    "video_watched": 0.5,
    "lesson_completed": 0.6,
    "add_to_cart": 0.7,
    "email_open": 0.2,
    # Machine noise: dropped by default.
    "heartbeat": 0.0,
    "scroll": 0.0,
    "scroll_ping": 0.0,
    "mouse_move": 0.0,
    "session_ping": 0.0,
    "app_foreground": 0.0,
    "app_background": 0.0,
    "identify": 0.0,
    "page_leave": 0.0,
}


class RelevanceConfig(BaseModel):
    """Which events reach the LLM, and how batches are cut."""

    model_config = ConfigDict(frozen=True)

    weights: Mapping[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    default_weight: float = 0.4
    drop_below: float = 0.1
    min_batch_signal: float = 0.3
    """A batch whose strongest item scores below this makes no LLM call."""
    max_events: int = 50
    max_tokens: int = 3_000
    max_item_chars: int = 1_500
    """Longer event text is cut (with a marker) before rendering, never sent whole."""


class BatchItem(BaseModel):
    """One rendered line of a batch; collapsed repeats keep every event id as evidence."""

    model_config = ConfigDict(frozen=True)

    event_ids: tuple[str, ...]
    type: str
    first_at: datetime
    last_at: datetime
    text: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    context: str | None = None
    count: int = 1
    score: float = 0.0

    @property
    def ref(self) -> str:
        return self.event_ids[0]

    def describe(self) -> str:
        """A short, deterministic line for non-text events ("page_view /pricing ×3")."""
        props = ", ".join(f"{k}={_compact(v)}" for k, v in sorted(self.properties.items()))
        line = self.type + (f" {props}" if props else "")
        return line + (f" ×{self.count}" if self.count > 1 else "")


class Batch(BaseModel):
    """An ordered, bounded slice of one user's relevant events: the unit of one LLM call."""

    model_config = ConfigDict(frozen=True)

    id: str
    user_id: str
    items: tuple[BatchItem, ...]
    events: Mapping[str, Event]
    dropped: int = 0
    collapsed: int = 0

    @property
    def event_ids(self) -> list[str]:
        return list(self.events)

    @property
    def rendered_ids(self) -> set[str]:
        """Ids the LLM was shown: the only ones it may cite as evidence."""
        return {eid for item in self.items for eid in item.event_ids}

    @property
    def has_signal(self) -> bool:
        return bool(self.items)

    def event(self, event_id: str) -> Event | None:
        return self.events.get(event_id)

    @property
    def first_at(self) -> datetime:
        return min(e.timestamp for e in self.events.values())

    @property
    def last_at(self) -> datetime:
        return max(e.timestamp for e in self.events.values())


def _compact(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def estimate_tokens(text: str) -> int:
    """A cheap, provider-neutral token estimate (about four characters a token)."""
    return max(1, (len(text) + 3) // 4)


def score(event: Event, config: RelevanceConfig) -> float:
    """How much one event could tell about the user, 0..1, from its type and content."""
    weight = config.weights.get(event.type, config.default_weight)
    if weight <= 0.0:
        return 0.0
    if event.text and event.text.strip():
        weight = max(weight, 0.8)
    return min(1.0, weight)


def _collapse_key(event: Event) -> str | None:
    if event.text and event.text.strip():
        return None  # what a user writes is never collapsed: each message is its own evidence
    return json.dumps([event.type, event.properties, event.context], sort_keys=True, default=str)


def _item_tokens(item: BatchItem) -> int:
    return estimate_tokens((item.text or item.describe()) + " " * 24)


def relevant_items(
    events: Iterable[Event], config: RelevanceConfig
) -> tuple[list[tuple[BatchItem, list[Event]]], int]:
    """Order by time, drop low-signal events and collapse identical non-text repeats."""
    ordered = sorted(events, key=lambda e: (e.timestamp, e.id))
    items: list[tuple[BatchItem, list[Event]]] = []
    index: dict[str, int] = {}
    dropped = 0
    for event in ordered:
        s = score(event, config)
        if s < config.drop_below:
            dropped += 1
            continue
        key = _collapse_key(event)
        if key is not None and key in index:
            pos = index[key]
            item, members = items[pos]
            items[pos] = (
                item.model_copy(update={
                    "event_ids": (*item.event_ids, event.id), "count": item.count + 1,
                    "last_at": event.timestamp,
                }),
                [*members, event],
            )
            continue
        text = event.text
        if text is not None and len(text) > config.max_item_chars:
            text = text[: config.max_item_chars] + " [...truncated]"
        item = BatchItem(
            event_ids=(event.id,), type=event.type, first_at=event.timestamp,
            last_at=event.timestamp, text=text, properties=dict(event.properties),
            context=event.context, score=s,
        )
        if key is not None:
            index[key] = len(items)
        items.append((item, [event]))
    return items, dropped


def batch_id(user_id: str, event_ids: Sequence[str]) -> str:
    digest = hashlib.sha256(json.dumps([user_id, sorted(event_ids)]).encode()).hexdigest()
    return "b_" + digest[:16]


def make_batches(
    user_id: str, events: Iterable[Event], config: RelevanceConfig | None = None
) -> list[Batch]:
    """Cut one user's events into batches bounded by event count and estimated tokens.

    Batches with no item above `min_batch_signal` are returned with no items, so callers
    can record their events as processed without spending an LLM call.
    """
    config = config or RelevanceConfig()
    all_events = [e for e in events if e.user_id == user_id]
    items, dropped = relevant_items(all_events, config)
    kept_ids = {eid for item, _ in items for eid in item.event_ids}
    noise = [e for e in all_events if e.id not in kept_ids]

    groups: list[list[tuple[BatchItem, list[Event]]]] = []
    current: list[tuple[BatchItem, list[Event]]] = []
    tokens = count = 0
    for item, members in items:
        t = _item_tokens(item)
        if current and (count + len(members) > config.max_events or tokens + t > config.max_tokens):
            groups.append(current)
            current, tokens, count = [], 0, 0
        current.append((item, members))
        tokens += t
        count += len(members)
    if current:
        groups.append(current)

    batches: list[Batch] = []
    for n, group in enumerate(groups):
        members = [e for _, ms in group for e in ms]
        if n == len(groups) - 1:
            members += noise  # dropped events are processed with the last batch, never sent
        signal = max(item.score for item, _ in group)
        kept = tuple(item for item, _ in group) if signal >= config.min_batch_signal else ()
        ids = [e.id for e in members]
        batches.append(Batch(
            id=batch_id(user_id, ids), user_id=user_id, items=kept,
            events={e.id: e for e in members},
            dropped=(dropped if n == len(groups) - 1 else 0) + (0 if kept else len(group)),
            collapsed=sum(item.count - 1 for item, _ in group),
        ))
    if not groups and noise:
        ids = [e.id for e in noise]
        batches.append(Batch(
            id=batch_id(user_id, ids), user_id=user_id, items=(),
            events={e.id: e for e in noise}, dropped=dropped,
        ))
    return batches


def relevant_text_tokens(event: Event, config: RelevanceConfig) -> int:
    """The tokens of an event's text that a batch would send (0 when relevance drops the
    event or it has no text): what a buffer weighs to decide a call is worth making."""
    if not (event.text and event.text.strip()) or score(event, config) < config.drop_below:
        return 0
    return estimate_tokens(event.text[: config.max_item_chars])
