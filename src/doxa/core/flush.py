"""When a user's buffered events are worth an LLM call: the flush policy.

Every extraction re-sends a static prompt of about 1.6k tokens, so a call for one page view
costs as much as a call for fifty events. Events that arrive one at a time (`Engine.add`,
the collection webhooks) therefore wait in a durable per-user buffer, and this policy says
when a buffer is due. It is a pure value: it reads a `BufferSummary` the store computed
(counts, tokens, the oldest arrival) and a time, and answers with the reason to flush or
None. The same policy object serves `doxa worker`, `Engine.run_worker` and `doxa buffers`.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FlushReason = Literal["events", "tokens", "high_signal", "wait", "forced"]

DEFAULT_HIGH_SIGNAL_TYPES: frozenset[str] = frozenset({
    # A delivery outcome: the model's own prediction being confirmed or contradicted.
    "outcome", "delivery_outcome",
    # An explicit statement: the user saying, on purpose, what they want or think.
    "survey_answer", "survey_response", "feedback", "review", "preference_set",
    "settings_change",
})
"""Event types that flush their buffer at once. Chat messages are not among them: a chat
product sends every message, and flushing on each would be one call per event again."""


class FlushPolicy(BaseModel):
    """When a user's buffer is flushed: the first of these that holds.

    The defaults favour cost over freshness for ordinary activity and freshness for the
    events that matter most: a full batch of events or of text is flushed at once, an
    explicit statement or a delivery outcome is flushed at once, and anything else waits at
    most an hour, so a quiet user's model is never more than an hour (plus the worker's
    poll interval) behind.
    """

    model_config = ConfigDict(frozen=True)

    max_events: int = Field(default=50, ge=1)
    """Pending events that make a call worth it: one full batch (`RelevanceConfig.max_events`),
    past which waiting cannot make the call cheaper per event."""
    max_tokens: int = Field(default=1_500, ge=1)
    """Relevant text tokens that make a call worth it: about the static prompt's own size,
    so the user's words are at least half of what is paid for."""
    max_wait_s: float = Field(default=3_600.0, gt=0)
    """The longest the oldest pending event waits, in seconds, whatever else holds."""
    high_signal_types: frozenset[str] = DEFAULT_HIGH_SIGNAL_TYPES
    """Event types that flush their buffer as soon as the worker sees them."""

    def due(self, summary: BufferSummary, now: datetime) -> FlushReason | None:
        """Why the buffer should be flushed now, or None when it should keep waiting."""
        if summary.events == 0:
            return None
        if summary.high_signal:
            return "high_signal"
        if summary.events >= self.max_events:
            return "events"
        if summary.tokens >= self.max_tokens:
            return "tokens"
        if summary.oldest is not None and now - summary.oldest >= timedelta(
                seconds=self.max_wait_s):
            return "wait"
        return None

    def due_at(self, summary: BufferSummary) -> datetime | None:
        """When the buffer becomes due by waiting alone (None: nothing is pending)."""
        if summary.events == 0 or summary.oldest is None:
            return None
        return summary.oldest + timedelta(seconds=self.max_wait_s)


@dataclass(frozen=True)
class BufferSummary:
    """What one user's buffer holds, as the store counts it.

    `events`, `tokens`, `high_signal` and `oldest` cover the rows free to be flushed (not
    held by a worker's live claim); `claimed` counts the rows a worker holds now."""

    user_id: str
    events: int
    tokens: int
    high_signal: int
    oldest: datetime | None
    newest: datetime | None
    claimed: int = 0

    @classmethod
    def of_rows(cls, user_id: str, rows: Iterable[tuple[str, int, datetime, bool]],
                high_signal_types: Set[str]) -> BufferSummary:
        """A summary from (type, tokens, added_at, claimed) rows: the in-memory store's,
        and the reference the SQL stores' aggregates are tested against."""
        rows = list(rows)
        free = [(t, n, at) for t, n, at, held in rows if not held]
        times = [at for _, _, at in free]
        return cls(user_id=user_id, events=len(free), tokens=sum(n for _, n, _ in free),
                   high_signal=sum(1 for t, _, _ in free if t in high_signal_types),
                   oldest=min(times, default=None), newest=max(times, default=None),
                   claimed=len(rows) - len(free))
